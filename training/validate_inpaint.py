"""Compare inpainter weights on validation crops of the *training* photos (`validation.py`), never the held-out
ones: damaged by `damage.py` with a seed training never draws, each filled where the true damage is (grown by the
task's default 2 px, then feathered back, as `--task restore` does with a hand-marked mask) by OpenCV's Telea and by
each inpainter (which refines Telea's fill, as the task runs it). Prints the mean PSNR against the undamaged crop,
so a fine-tune can be kept or dropped before the held-out figures are measured once.

    python training/validate_inpaint.py /tmp/rt/inpaint-v2.safetensors [more.safetensors ...] [--crops 24]
"""

from __future__ import annotations

import numpy as np
from damage import damaged_set
from retouch.ops.inpaint import feather, grow, telea
from retouch.tasks.restore import INPAINTER
from validation import LINES, psnr, start, validation_crops

SEED = 3000  # the training script seeds its damage from small numbers: far below this
GROW = 2  # px: the restore task's default


def main() -> None:
    args, specs, engine = start(__doc__, "inpainter", INPAINTER, "true damage mask")
    for factors, detailed, label in LINES:
        crops = validation_crops(args.photos, args.photo_set, args.crops, args.size, factors, detailed, SEED)
        cases = damaged_set([c.permute(1, 2, 0).numpy().astype(np.float32) for c in crops], seed=SEED + sum(factors))
        holes = [grow(mask, GROW) for _, _, mask in cases]
        fills = {"damaged input": [damaged for damaged, _, _ in cases],
                 "OpenCV Telea": [telea(damaged, hole) for (damaged, _, _), hole in zip(cases, holes, strict=True)]}
        for spec in specs:
            model = engine.get(spec)
            fills[f"{spec.name} ({model.dtype})"] = [
                engine.run(model, np.concatenate([telea_fill, hole[:, :, None].astype(np.float32)], 2))[0]
                for telea_fill, hole in zip(fills["OpenCV Telea"], holes, strict=True)]
        print(f"  {label} (damaged pixels {np.mean([m.mean() for _, _, m in cases]):.2%}):")
        for name, filled in fills.items():
            scores = [psnr(damaged + feather(hole)[:, :, None] * (fill - damaged), base)
                      for (damaged, base, _), hole, fill in zip(cases, holes, filled, strict=True)]
            print(f"    {name:36} PSNR {np.mean(scores):6.2f} dB")


if __name__ == "__main__":
    main()
