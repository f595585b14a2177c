"""Which conditioning level serves a true noise level best? Measured on crops of the *training* images (the held-out
photos stay untouched): a third each from the photos at half size, at full size, and scikit-image's bundled images
(textures), with Gaussian noise of several sigmas: the PSNR of the denoiser fed sigma * k for a few k.

A net fed exactly the true sigma is not always at its best (an under-trained one over-smooths a little); the
`condition_scale` of `retouch-denoise` in builtin.json is the k this prints, and the denoise task multiplies every
level, given or estimated, by it.

    python training/calibrate_denoise.py [--model retouch-denoise]
"""

from __future__ import annotations

import argparse
import random

import numpy as np
from photos import ensure_photos, skimage_paths, train_paths
from PIL import Image
from retouch.engine import Engine
from retouch.engine.registry import ModelSpec, resolve

SCALES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1)
SIGMAS = (5, 15, 25, 40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="retouch-denoise")
    parser.add_argument("--crops", type=int, default=8, help="crops of each of the three kinds")
    args = parser.parse_args()
    rng = random.Random(11)
    paths = train_paths(ensure_photos(), "v1")  # the photos the shipped denoiser was trained on
    sources = [(p, 2) for p in rng.sample(paths, args.crops)] + [(p, 1) for p in rng.sample(paths, args.crops)]
    sources += [(p, 1) for p in rng.sample(skimage_paths(), min(args.crops, len(skimage_paths())))]
    crops = []
    for path, factor in sources:
        img = Image.open(path).convert("RGB")
        img = img.resize((img.width // factor, img.height // factor), Image.Resampling.LANCZOS)
        x, y = rng.randrange(img.width - 256 + 1), rng.randrange(img.height - 256 + 1)
        crops.append(np.asarray(img.crop((x, y, x + 256, y + 256))).astype(np.float32) / 255)
    engine = Engine(device="cpu", precision="fp32")
    spec = resolve(args.model)
    model = engine.get(ModelSpec(spec.name, spec.path, False, condition="noise_sigma"))
    gen = np.random.default_rng(0)
    best = []
    for sigma in SIGMAS:
        noisy = [np.clip(c + gen.normal(0, sigma / 255, c.shape), 0, 1).astype(np.float32) for c in crops]
        scores = {}
        for k in SCALES:
            outs = [engine.run(model, n, condition=k * sigma / 255)[0] for n in noisy]
            scores[k] = float(np.mean([10 * np.log10(1 / np.mean((o - c) ** 2)) for o, c in zip(outs, crops,
                                                                                               strict=True)]))
        k_best = max(scores, key=lambda k: scores[k])
        best.append(k_best)
        print(f"sigma {sigma:2d}: " + ", ".join(f"k={k}: {v:.2f}" for k, v in scores.items()) + f" -> best {k_best}")
    print(f"median best k: {float(np.median(best)):.2f}")


if __name__ == "__main__":
    main()
