"""Compare colorizer weights on validation crops of the *training* photos (`validation.py`), never the held-out
ones: each crop reduced to its CIELAB L*, colorized as the task colorizes it (the net on the gray image with the
chroma it is asked for, its a* b* under the input's L*, chroma fitted to sRGB; bf16 where the CPU has it). Prints
the mean a*b* error against the grayscale answer's (the bar of `benchmarks/quality.py`: at least 15 % lower) and the
colourfulness, for close-ups (photos at 1/2, as a selection or a detail is colorized) and scenes (at 1/5).

The crops come from photos the net was trained on: a net that remembers their colours scores better here than it
will on photos it has never seen, so this ranks candidates; it does not predict the held-out figures.

    python training/validate_colorize.py /tmp/rt/colorize-ms.safetensors [more.safetensors ...] [--crops 24]
"""

from __future__ import annotations

import numpy as np
from retouch.ops.lab import colourfulness, fit_chroma, gray_of, lightness, rgb_to_lab
from retouch.quality import ab_error
from retouch.tasks.colorize import TYPICAL_CHROMA
from validation import start, validation_crops

SEED = 3000  # the training script seeds its crops from small numbers: far below this
COLOR_LINES = (((2,), "close-ups: photos at 1/2"), ((5,), "scenes: photos at 1/5"))
VIVIDNESS = (0.5, 1.0)


def main() -> None:
    args, specs, engine = start(__doc__, "colorizer", "retouch-colorize")
    for factors, label in COLOR_LINES:
        crops = [c.permute(1, 2, 0).numpy().astype(np.float64) for c in
                 validation_crops(args.photos, args.photo_set, args.crops, args.size, factors, False, SEED)]
        light = [lightness(c) for c in crops]
        true_ab = [rgb_to_lab(c)[..., 1:] for c in crops]
        gray = np.mean([ab_error(gray_of(li), t) for li, t in zip(light, true_ab, strict=True)])
        print(f"  {label}: grayscale answer's a*b* error {gray:.2f}, originals' colourfulness "
              f"{np.mean([colourfulness(c) for c in crops]):.1f}")
        for spec in specs:
            model = engine.get(spec)
            for vividness in VIVIDNESS:
                out = []
                for li in light:
                    net, _ = engine.run(model, gray_of(li).astype(np.float32),
                                        condition=vividness * TYPICAL_CHROMA / 100)
                    out.append(fit_chroma(li, rgb_to_lab(np.clip(net, 0, 1))[..., 1:]))
                err = np.mean([ab_error(o, t) for o, t in zip(out, true_ab, strict=True)])
                print(f"    {spec.name:28} {model.dtype} vividness {vividness}: a*b* error {err:.2f} "
                      f"({err / gray - 1:+.1%} vs gray), colourfulness {np.mean([colourfulness(o) for o in out]):.1f}")


if __name__ == "__main__":
    main()
