"""Quality of every task against the classical baselines, on held-out photos only, measured side by side.

- denoise: Gaussian noise sigma = 25 (0..255 scale), clipped; ours (sigma given, and auto) vs CBM3D (`bm3d`, given
  the true sigma) and OpenCV fastNlMeansDenoisingColored (its best h of a sweep on this very set, which favours it).
- sharpen: Gaussian blur sigma = 1.6 and random camera-shake kernels of 5-15 px, each plus noise sigma = 2; ours
  (blind and with the blur hint) vs an unsharp mask and a Wiener deconvolution that knows the kernel (both with the
  best setting of a sweep on this very set); and our deconvolution given the true kernel (`--blur-trace`'s core:
  plug-and-play with our denoiser, `retouch/ops/deconvolve.py`), what a perfect trace would give.
- tone: white balance angular error (degrees) of each estimator on photos with synthetic colour casts; exposure
  error (EV) after auto exposure on photos shifted by -2..+1 EV, and the pixels it newly clips.
- post: colour drift (mean CIELAB Delta E against the source) with colour fix none / wavelet / adain.
- restore: synthetic old-photo damage (training/damage.py: scratches, dust, hairs, blotches, water-stain rings on
  colour, grayscale and sepia photos, seed 5); detection IoU (pooled over the crops: all intersections / all unions)
  of our detector against a classical one (median-filter residual, its best threshold on this very set), and PSNR of
  the repaired photo against the undamaged one: ours (detect + learned inpainter) vs OpenCV Telea given the same
  detected mask, and both given the true mask.
- colorize: the crops reduced to their CIELAB L*, colorized; mean a*b* error (Euclidean, per pixel) against the
  true colours, vs the grayscale answer (a* = b* = 0), colourfulness (Hasler-Suesstrunk; the originals' beside it)
  and the largest L* change.
- face: scikit-image's two portraits (the astronaut at full and half size, the cameraman: public domain), each
  blurred and made noisy four ways (Gaussian blur sigma 1.2-2, noise sigma 5-12, one also JPEG q 50); PSNR and
  SSIM over the face's box (MTCNN's, on the clean picture) of `--task face` (our denoiser then sharpener on the face)
  vs OpenCV non-local means followed by an unsharp mask, and an unsharp mask alone (each its best of a sweep on
  this very set), and seconds per picture.
- upscale: the figures of `quality_upscale.py` (its own crops, at full size: see there).
Crops: 256 px, 6 per held-out photo at half size (seeded). PSNR on RGB with a 10 px border cropped, SSIM from
scikit-image; seconds per megapixel on this CPU with `torch.get_num_threads()` threads.

    pip install -e ".[bench]" && python benchmarks/quality.py [--only upscale,denoise,...,restore,face] [--crops 6]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from damage import damaged_set  # noqa: E402
from degradations import blur, gaussian_kernel, motion_kernel  # noqa: E402
from photos import ensure_photos, held_out_paths  # noqa: E402
from retouch.engine import Engine  # noqa: E402
from retouch.engine.registry import resolve  # noqa: E402
from retouch.ops import tone  # noqa: E402
from retouch.ops.colorfix import color_fix  # noqa: E402
from retouch.ops.deconvolve import deconvolve  # noqa: E402
from retouch.ops.noise import estimate_sigma  # noqa: E402
from retouch.pipeline import run_pipeline  # noqa: E402
from retouch.pixels import WorkImage, linear_to_srgb, srgb_to_linear  # noqa: E402
from retouch.tasks import TaskContext, get_task  # noqa: E402
from retouch.tasks.restore import find_damage  # noqa: E402

BORDER = 10
PHOTO_NAMES = ("Dune", "LadyBird", "EveningGlow", "Path")  # training/photos.py HELD_OUT, in order


def held_out_images(factor: int = 2) -> list[np.ndarray]:
    out = []
    for path in held_out_paths(ensure_photos()):
        img = Image.open(path).convert("RGB")
        img = img.resize((img.width // factor, img.height // factor), Image.Resampling.LANCZOS)
        out.append(np.asarray(img).astype(np.float32) / 255.0)
    return out


def crops(images: list[np.ndarray], size: int, per_photo: int, seed: int) -> list[np.ndarray]:
    rng = random.Random(seed)
    out = []
    for img in images:
        for _ in range(per_photo):
            y, x = rng.randrange(img.shape[0] - size), rng.randrange(img.shape[1] - size)
            out.append(np.ascontiguousarray(img[y : y + size, x : x + size]))
    return out


def _inner(a: np.ndarray, border: int) -> np.ndarray:
    return a[border : a.shape[0] - border, border : a.shape[1] - border]


def psnr(a: np.ndarray, b: np.ndarray, border: int = BORDER) -> float:
    a, b = _inner(a, border), _inner(b, border)
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - b) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def ssim(a: np.ndarray, b: np.ndarray, border: int = BORDER) -> float:
    from skimage.metrics import structural_similarity

    a, b = _inner(a, border), _inner(b, border)
    return float(structural_similarity(np.clip(a, 0, 1), b, channel_axis=2, data_range=1.0))


class Table:
    """Rows of (method, mean PSNR, mean SSIM, seconds per MP), printed together."""

    def __init__(self, title: str, clean: list[np.ndarray]) -> None:
        self.title, self.clean, self.rows = title, clean, []
        self.mp = sum(c.shape[0] * c.shape[1] for c in clean) / 1e6

    def _run(self, fn: Callable[[int], np.ndarray]) -> tuple[list[np.ndarray], float]:
        outs, seconds = [], 0.0
        for i in range(len(self.clean)):
            t = time.perf_counter()
            outs.append(fn(i))
            seconds += time.perf_counter() - t
        return outs, seconds

    def _psnr(self, outs: list[np.ndarray]) -> float:
        return float(np.mean([psnr(o, c) for o, c in zip(outs, self.clean, strict=True)]))

    def _row(self, name: str, outs: list[np.ndarray], seconds: float) -> float:
        p = self._psnr(outs)
        s = float(np.mean([ssim(o, c) for o, c in zip(outs, self.clean, strict=True)]))
        self.rows.append((name, p, s, seconds / self.mp))
        return p

    def add(self, name: str, fn: Callable[[int], np.ndarray]) -> float:
        return self._row(name, *self._run(fn))

    def best_of(self, name: str, settings: dict[str, Callable[[int], np.ndarray]]) -> None:
        """Add the setting with the best PSNR on this set (a generous baseline), named with its setting; each
        setting runs once, and the row keeps the best one's outputs and time."""
        runs = {label: self._run(fn) for label, fn in settings.items()}
        label = max(runs, key=lambda k: self._psnr(runs[k][0]))
        self._row(f"{name} ({label})", *runs[label])

    def print(self) -> None:
        print(f"\n{self.title}  [{len(self.clean)} crops, {self.mp:.2f} MP]")
        print(f"  {'method':44} {'PSNR dB':>8} {'SSIM':>7} {'s/MP':>9}")
        for name, p, s, spm in self.rows:
            print(f"  {name:44} {p:8.2f} {s:7.4f} {spm:9.2f}")


def task_fn(engine: Engine, task: str, inputs: list[np.ndarray], masks: list[np.ndarray] | None = None,
            **params: object) -> Callable[[int], np.ndarray]:
    """The task as the daemon runs it (parameters parsed, model conditioning, pre/post), without the wire; `masks`,
    one per input, are the job's masks (the editors' selection, the CLI's --mask)."""
    t = get_task(task)
    ctx = TaskContext(engine, lambda fraction, stage: None, lambda: None)
    parsed = t.parse_params(params)
    return lambda i: run_pipeline(t, ctx, WorkImage(inputs[i], None, False),
                                  None if masks is None else masks[i].astype(np.float32), parsed).image.color


# ---- denoise ------------------------------------------------------------------------------------------------------
def bench_denoise(clean: list[np.ndarray], engines: dict[str, Engine]) -> None:
    import bm3d

    sigma = 25 / 255
    gen = np.random.default_rng(25)
    noisy = [np.clip(c + gen.normal(0, sigma, c.shape), 0, 1).astype(np.float32) for c in clean]
    table = Table("denoise: Gaussian noise sigma = 25, clipped", clean)
    table.add("noisy input", lambda i: noisy[i])
    noisy8 = [np.rint(n * 255).astype(np.uint8) for n in noisy]

    def nlm(h: int) -> Callable[[int], np.ndarray]:
        return lambda i: cv2.fastNlMeansDenoisingColored(noisy8[i], None, h, h, 7, 21).astype(np.float32) / 255

    table.best_of("OpenCV fastNlMeansDenoisingColored", {f"h={h}": nlm(h) for h in (10, 15, 20, 25)})
    table.add("CBM3D (bm3d_rgb, true sigma)", lambda i: np.asarray(bm3d.bm3d_rgb(noisy[i], sigma), np.float32))
    for prec, engine in engines.items():
        table.add(f"retouch-denoise {prec}, --noise-level 25", task_fn(engine, "denoise", noisy, noise_level=25))
    for prec, engine in engines.items():
        table.add(f"retouch-denoise {prec}, auto", task_fn(engine, "denoise", noisy))
        table.add(f"retouch-denoise {prec}, auto --ensemble", task_fn(engine, "denoise", noisy, ensemble=True))
    est = [estimate_sigma(n) for n in noisy]
    table.print()
    print(f"  noise estimate on these crops: mean {np.mean(est) * 255:.2f}, min {min(est) * 255:.2f}, "
          f"max {max(est) * 255:.2f} (true 25)")
    cbm3d = next(r for r in table.rows if r[0].startswith("CBM3D"))
    for ours in table.rows:
        if ours[0].startswith("retouch-denoise"):
            print(f"  {ours[0]} vs CBM3D: {ours[1] - cbm3d[1]:+.2f} dB in {ours[3] / cbm3d[3]:.3f}x of its time")


# ---- face ---------------------------------------------------------------------------------------------------------
FACE_DEGRADATIONS = ((1.2, 5, None), (2.0, 5, None), (1.2, 12, None), (1.6, 8, 50))  # blur sigma, noise /255, JPEG q


def face_cases() -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, int, int, int]]]:
    """(name, clean, degraded, face box) for each portrait and degradation, seeded."""
    from retouch.ops.faces import detect_faces
    from skimage import data

    astronaut = data.astronaut().astype(np.float32) / 255
    portraits = {"astronaut": astronaut,
                 "astronaut 1/2": cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA),
                 "cameraman": np.repeat(data.camera()[:, :, None], 3, axis=2).astype(np.float32) / 255}
    gen, cases = np.random.default_rng(9), []
    for name, clean in portraits.items():
        (face,) = detect_faces(clean)
        for sigma, noise, quality in FACE_DEGRADATIONS:
            bad = cv2.GaussianBlur(clean, (0, 0), sigma) + gen.normal(0, noise / 255, clean.shape)
            bad = np.clip(np.rint(bad * 255), 0, 255).astype(np.uint8)
            if quality:
                _, jpeg = cv2.imencode(".jpg", bad[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
                bad = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]
            label = f"{name}, blur {sigma} + noise {noise}" + (f" + JPEG {quality}" if quality else "")
            cases.append((label, clean, bad.astype(np.float32) / 255, face.box))
    return cases


def bench_face(engines: dict[str, Engine]) -> None:
    cases = face_cases()
    degraded = [c[2] for c in cases]

    def region(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        return np.clip(img[box[1]:box[3], box[0]:box[2]], 0, 1)

    Scores = tuple[list[float], list[float], float]

    def scores(fn: Callable[[int], np.ndarray]) -> Scores:
        p, q, seconds = [], [], 0.0
        for i, (_, clean, _, box) in enumerate(cases):
            t = time.perf_counter()
            out = fn(i)
            seconds += time.perf_counter() - t
            a, b = region(out, box), region(clean, box)
            p.append(psnr(a, b, border=0))
            q.append(ssim(a, b, border=0))
        return p, q, seconds / len(cases)

    def best(settings: dict[str, Callable[[int], np.ndarray]]) -> tuple[str, Scores]:
        """The setting with the best mean PSNR on this set, and its scores (each setting runs once)."""
        scored = {label: scores(fn) for label, fn in settings.items()}
        label = max(scored, key=lambda k: np.mean(scored[k][0]))
        return label, scored[label]

    def nlm_unsharp(h: int, amount: float) -> Callable[[int], np.ndarray]:
        def run(i: int) -> np.ndarray:
            u8 = np.rint(degraded[i] * 255).astype(np.uint8)
            return unsharp(cv2.fastNlMeansDenoisingColored(u8, None, h, h, 7, 21).astype(np.float32) / 255, 1.5,
                           amount)
        return run

    nlm_label, nlm_scores = best({f"h={h}, a={a}": nlm_unsharp(h, a) for h in (5, 10, 15) for a in (0.5, 1.0, 2.0)})
    um_label, um_scores = best({f"r={r}, a={a}": (lambda i, r=r, a=a: unsharp(degraded[i], r, a))
                            for r in (1.0, 2.0) for a in (0.5, 1.0, 2.0)})
    rows = [("degraded input", scores(lambda i: degraded[i])),
            (f"OpenCV NL-means + unsharp mask ({nlm_label})", nlm_scores),
            (f"unsharp mask ({um_label})", um_scores)]
    for prec, engine in engines.items():
        rows.append((f"retouch face {prec}", scores(task_fn(engine, "face", degraded))))
    print(f"\nface: {len(cases)} degraded portraits, scored over the face's box")
    print(f"  {'method':44} {'PSNR dB':>8} {'SSIM':>7} {'s/image':>9}")
    for name, (p, q, sec) in rows:
        print(f"  {name:44} {np.mean(p):8.2f} {np.mean(q):7.4f} {sec:9.2f}")
    base, ours = rows[0][1][0], rows[3][1][0]
    for i, (label, *_rest) in enumerate(cases):
        print(f"  {label:44} input {base[i]:6.2f} dB, ours fp32 {ours[i]:6.2f} dB ({ours[i] - base[i]:+.2f})")


# ---- sharpen ------------------------------------------------------------------------------------------------------
def wiener(y: np.ndarray, kernel: np.ndarray, nsr: float) -> np.ndarray:
    """Wiener deconvolution with a known kernel (FFT, reflect-padded so the borders do not wrap)."""
    r = kernel.shape[0]
    yp = np.pad(y, ((r, r), (r, r), (0, 0)), mode="reflect")
    h, w = yp.shape[:2]
    k = np.zeros((h, w), np.float64)
    k[: kernel.shape[0], : kernel.shape[1]] = kernel
    k = np.roll(k, (-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), axis=(0, 1))
    kf = np.fft.rfft2(k)
    g = np.conj(kf) / (np.abs(kf) ** 2 + nsr)
    out = np.stack([np.fft.irfft2(np.fft.rfft2(yp[:, :, c]) * g, s=(h, w)) for c in range(3)], axis=2)
    return out[r:-r, r:-r].astype(np.float32)


def unsharp(y: np.ndarray, radius: float, amount: float) -> np.ndarray:
    return y + amount * (y - cv2.GaussianBlur(y, (0, 0), radius))


def bench_sharpen(clean: list[np.ndarray], engines: dict[str, Engine]) -> None:
    rng = random.Random(16)
    gen = np.random.default_rng(2)
    for kind in ("defocus", "motion"):
        if kind == "defocus":
            kernels = [gaussian_kernel(1.6)] * len(clean)
            title = "sharpen: Gaussian blur sigma = 1.6 + noise sigma = 2"
        else:
            kernels = [motion_kernel(rng.uniform(5, 15), rng) for _ in clean]
            title = "sharpen: camera shake 5-15 px + noise sigma = 2"
        blurred = []
        for c, k in zip(clean, kernels, strict=True):
            b = blur(torch.from_numpy(c).permute(2, 0, 1)[None], k)[0].permute(1, 2, 0).numpy()
            blurred.append(np.clip(b + gen.normal(0, 2 / 255, b.shape), 0, 1).astype(np.float32))
        sharpen_table(title, kind, clean, blurred, kernels, engines)


def true_kernel_deconvolution(engine: Engine, blurred: list[np.ndarray],
                              kernels: list[np.ndarray]) -> Callable[[int], np.ndarray]:
    """`--blur-trace`'s deconvolution (our denoiser as the prior), given the true kernel instead of a trace."""
    spec = resolve("retouch-denoise")
    model = engine.get(spec)

    def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
        return engine.run(model, x, condition=sigma * spec.condition_scale)[0]

    return lambda i: deconvolve(blurred[i], kernels[i].astype(np.float64), estimate_sigma(blurred[i]), denoise)


def sharpen_table(title: str, kind: str, clean: list[np.ndarray], blurred: list[np.ndarray],
                  kernels: list[np.ndarray], engines: dict[str, Engine]) -> None:
    table = Table(title, clean)
    table.add("blurred input", lambda i: blurred[i])
    table.best_of("unsharp mask", {f"r={r}, a={a}": (lambda i, r=r, a=a: unsharp(blurred[i], r, a))
                                   for r in (1.0, 2.0, 3.0) for a in (0.5, 1.0, 1.5, 2.5)})
    table.best_of("Wiener, true kernel", {f"nsr={n}": (lambda i, n=n: wiener(blurred[i], kernels[i], n))
                                          for n in (1e-3, 3e-3, 1e-2, 3e-2)})
    for prec, engine in engines.items():
        table.add(f"retouch-sharpen {prec}, blind", task_fn(engine, "sharpen", blurred))
    table.add(f"retouch-sharpen fp32, --blur {kind}", task_fn(engines["fp32"], "sharpen", blurred, blur=kind))
    table.add(f"retouch-sharpen fp32, --blur {kind} --ensemble",
              task_fn(engines["fp32"], "sharpen", blurred, blur=kind, ensemble=True))
    prec = "bf16" if "bf16" in engines else "fp32"
    table.add(f"deconvolution {prec}, true kernel", true_kernel_deconvolution(engines[prec], blurred, kernels))
    table.print()
    base = table.rows[0][1]
    ours = next(r for r in table.rows if r[0] == "retouch-sharpen fp32, blind")
    hinted = next(r for r in table.rows if r[0] == f"retouch-sharpen fp32, --blur {kind}")
    print(f"  ours blind fp32 gain over the blurred input: {ours[1] - base:+.2f} dB; --blur {kind}: "
          f"{hinted[1] - base:+.2f} dB")
    print(f"  deconvolution given the true kernel: {table.rows[-1][1] - base:+.2f} dB (what --blur-trace gives from a "
          "perfect trace)")


# ---- tone ---------------------------------------------------------------------------------------------------------
def bench_tone(photos: list[np.ndarray]) -> None:
    small = [cv2.resize(p, (p.shape[1] // 2, p.shape[0] // 2), interpolation=cv2.INTER_AREA) for p in photos]
    rng = np.random.default_rng(7)
    errors: dict[str, list[float]] = {"no correction": [], **{m: [] for m in tone.WB_METHODS}}
    for p in small:
        lin = srgb_to_linear(p)
        for _ in range(6):
            cast = np.exp(rng.uniform(np.log(0.6), np.log(1.6), 3))
            cast /= np.linalg.norm(cast)
            casted = linear_to_srgb(np.clip(lin * cast / cast.max(), 0, 1))
            errors["no correction"].append(tone.angular_error(cast, np.ones(3)))
            for m in tone.WB_METHODS:
                errors[m].append(tone.angular_error(tone.estimate_illuminant(casted, m), cast))
    print(f"\ntone: white balance, {len(errors['no correction'])} synthetic casts on {len(small)} held-out photos")
    print(f"  {'estimator':20} {'mean deg':>9} {'median':>7} {'worst':>7}")
    for name, e in errors.items():
        print(f"  {name:20} {np.mean(e):9.2f} {np.median(e):7.2f} {np.max(e):7.2f}")
    print("  on the originals (their own light, not necessarily neutral), shades of grey moves them by "
          + ", ".join(f"{tone.angular_error(tone.estimate_illuminant(p), np.ones(3)):.1f}" for p in small) + " deg")

    print("\ntone: auto exposure (EV error = log2 of median luminance after / original; new clipping in %)")
    lum = tone.LUMA
    for shift in (-2.0, -1.0, 1.0):
        errs, clipped = [], []
        for p in small:
            lin = srgb_to_linear(p)
            shifted = linear_to_srgb(np.clip(lin * 2.0**shift, 0, 1))
            out, _ = tone.auto_tone(shifted, exposure=True, white_balance=False)
            errs.append(np.log2(np.median(srgb_to_linear(out) @ lum) / np.median(lin @ lum)))
            was = shifted.max(axis=2) >= 254.5 / 255
            clipped.append(100 * float(np.mean((out.max(axis=2) >= 254.5 / 255) & ~was)))
        print(f"  shift {shift:+.0f} EV: error after auto exposure mean {np.mean(np.abs(errs)):.2f} EV "
              f"(worst {np.max(np.abs(errs)):.2f}), newly clipped {np.mean(clipped):.3f} %")
    own = [tone.exposure_ev(p) for p in small]
    print("  correction it applies to the untouched originals: " + ", ".join(f"{e:+.2f}" for e in own) + " EV")


# ---- post ---------------------------------------------------------------------------------------------------------
def mean_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    la = cv2.cvtColor(np.clip(a, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(0)
    lb = cv2.cvtColor(np.clip(b, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(0)
    return float(np.linalg.norm(la - lb))


def bench_post(clean: list[np.ndarray], engines: dict[str, Engine]) -> None:
    engine = engines["fp32"]
    model = engine.get(resolve("retouch-upscale-x4"))
    print("\npost: colour fix on x4 upscales of the crops (drift = mean CIELAB Delta E vs the bicubic source)")
    for method in ("none", "wavelet", "adain"):
        drift, gains = [], []
        for c in clean:
            lr = cv2.resize(c, (c.shape[1] // 4, c.shape[0] // 4), interpolation=cv2.INTER_AREA)
            ref = cv2.resize(lr, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_CUBIC)
            out = color_fix(engine.run(model, lr)[0], ref, method)
            drift.append(mean_delta_e(out, ref))
            gains.append(psnr(out, c) - psnr(ref, c))
        print(f"  {method:8} drift mean {np.mean(drift):.3f} worst {np.max(drift):.3f} | "
              f"PSNR gain over bicubic {np.mean(gains):+.2f} dB")


# ---- restore ------------------------------------------------------------------------------------------------------
def pooled_iou(found: list[np.ndarray], truth: list[np.ndarray]) -> tuple[float, float, float]:
    """(IoU, precision, recall) over all pixels of all crops together."""
    inter = sum(int((f & t).sum()) for f, t in zip(found, truth, strict=True))
    union = sum(int((f | t).sum()) for f, t in zip(found, truth, strict=True))
    n_found, n_true = sum(int(f.sum()) for f in found), sum(int(t.sum()) for t in truth)
    return inter / max(union, 1), inter / max(n_found, 1), inter / max(n_true, 1)


def median_residual(img: np.ndarray, threshold: float) -> np.ndarray:
    """The classical dust-and-scratch finder: pixels far from their 5 x 5 median."""
    u8 = np.rint(img * 255).astype(np.uint8)
    return np.abs(img - cv2.medianBlur(u8, 5).astype(np.float32) / 255).max(2) > threshold


def bench_restore(clean: list[np.ndarray], engines: dict[str, Engine]) -> None:
    cases = damaged_set(clean, seed=5)
    damaged, base, truth = ([c[i] for c in cases] for i in range(3))
    share = np.mean([t.mean() for t in truth])
    print(f"\nrestore: synthetic damage on {len(cases)} crops (damaged pixels: {share:.2%})")
    found_at: dict[tuple[str, float], list[np.ndarray]] = {}  # (precision + option, sensitivity) -> masks found
    settings = [(sensitivity, False) for sensitivity in (0.3, 0.5, 0.7)] + [(0.5, True)]
    for prec, engine in engines.items():
        ctx = TaskContext(engine, lambda fraction, stage: None, lambda: None)
        for sensitivity, ensemble in settings:
            name = prec + (" --ensemble" if ensemble else "")
            found = found_at[name, sensitivity] = [find_damage(ctx, d, sensitivity, ensemble)[0] for d in damaged]
            iou, precision, recall = pooled_iou(found, truth)
            print(f"  detection, retouch-damage {name}, sensitivity {sensitivity}: IoU {iou:.3f} "
                  f"(precision {precision:.3f}, recall {recall:.3f})")
    scored = [(pooled_iou([median_residual(d, t) for d in damaged], truth), t) for t in (0.04, 0.06, 0.08, 0.12)]
    (iou, precision, recall), t = max(scored, key=lambda s: s[0][0])
    print(f"  detection, 5x5 median residual > {t} (best of 4): IoU {iou:.3f} (precision {precision:.3f}, "
          f"recall {recall:.3f})")
    table = Table("restore: the repaired photo against the undamaged one", base)
    table.add("damaged input", lambda i: damaged[i])
    restored: dict[str, dict[int, np.ndarray]] = {"": {}, " --ensemble": {}}  # bf16 results, for the per-photo lines

    def kept(fn: Callable[[int], np.ndarray], into: dict[int, np.ndarray]) -> Callable[[int], np.ndarray]:
        def run(i: int) -> np.ndarray:
            into[i] = fn(i)
            return into[i]
        return run

    for prec, engine in engines.items():
        fn = task_fn(engine, "restore", damaged)
        table.add(f"retouch restore {prec} (detect + retouch-inpaint)", kept(fn, restored[""]) if prec == "bf16"
                  else fn)
    table.add("retouch restore bf16 --ensemble", kept(task_fn(engines["bf16"], "restore", damaged, ensemble=True),
                                                      restored[" --ensemble"]))
    table.add("detect + OpenCV Telea (same detected mask)", task_fn(engines["fp32"], "restore", damaged,
                                                                   inpainter="telea"))
    # the true damage as a hand-marked mask (mask_is damage, detection off): the task grows and feathers it as usual
    given = {"masks": truth, "detect": False, "mask_is": "damage"}
    table.add("retouch-inpaint given the true mask", task_fn(engines["fp32"], "restore", damaged, **given))
    table.add("OpenCV Telea given the true mask", task_fn(engines["fp32"], "restore", damaged, inpainter="telea",
                                                          **given))
    table.print()
    rows = {r[0]: r for r in table.rows}
    ours = rows["retouch restore fp32 (detect + retouch-inpaint)"]
    tel = rows["detect + OpenCV Telea (same detected mask)"]
    print(f"  gain over the damaged input: {ours[1] - rows['damaged input'][1]:+.2f} dB; over Telea with the same "
          f"mask: {ours[1] - tel[1]:+.2f} dB")
    per = len(cases) // len(PHOTO_NAMES)
    for option, kept_results in restored.items():
        found = found_at["bf16" + option, 0.5]
        print(f"  per held-out photo (bf16{option or ', defaults'}):")
        for k, name in enumerate(PHOTO_NAMES):
            part = range(k * per, (k + 1) * per)
            iou = pooled_iou([found[i] for i in part], [truth[i] for i in part])[0]
            gain = np.mean([psnr(kept_results[i], base[i]) - psnr(damaged[i], base[i]) for i in part])
            print(f"    {name:12} detection IoU {iou:.3f}, PSNR gain {gain:+.2f} dB")


# ---- colorize -----------------------------------------------------------------------------------------------------
def bench_colorize(clean: list[np.ndarray], engines: dict[str, Engine]) -> None:
    from retouch.ops.lab import colourfulness, gray_of, lightness, rgb_to_lab
    from retouch.quality import ab_error

    grays = [gray_of(lightness(c)) for c in clean]
    true_ab = [rgb_to_lab(c)[..., 1:] for c in clean]

    def mean_ab_error(out: list[np.ndarray]) -> float:
        return float(np.mean([ab_error(o, t) for o, t in zip(out, true_ab, strict=True)]))

    base = mean_ab_error(grays)
    print(f"\ncolorize: {len(clean)} crops reduced to L*; originals' colourfulness "
          f"{np.mean([colourfulness(c) for c in clean]):.1f}")
    print(f"  {'method':44} {'ab error':>8} {'vs gray':>8} {'colourful':>9} {'max dL*':>8} {'s/MP':>7}")
    print(f"  {'grayscale (a* = b* = 0)':44} {base:8.2f} {0:+7.1%} {np.mean([colourfulness(g) for g in grays]):9.1f}")
    mp = sum(c.shape[0] * c.shape[1] for c in clean) / 1e6
    runs = [(prec, vividness, False) for prec in engines for vividness in (0.5, 1.0, 1.5)]
    for prec, vividness, ensemble in runs + [("bf16", vividness, True) for vividness in (0.5, 1.0, 1.5)]:
        fn = task_fn(engines[prec], "colorize", grays, vividness=vividness, ensemble=ensemble)
        start = time.perf_counter()
        out = [fn(i) for i in range(len(grays))]
        seconds = time.perf_counter() - start
        err = mean_ab_error(out)
        shift = max(float(np.abs(lightness(o) - lightness(g)).max()) for o, g in zip(out, grays, strict=True))
        name = f"retouch-colorize {prec}, vividness {vividness}{' --ensemble' if ensemble else ''}"
        print(f"  {name:44} {err:8.2f} {err / base - 1:+7.1%} {np.mean([colourfulness(o) for o in out]):9.1f} "
              f"{shift:8.3f} {seconds / mp:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="upscale,denoise,sharpen,tone,post,restore,colorize,face")
    parser.add_argument("--crops", type=int, default=6, help="crops per held-out photo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    only = set(args.only.split(","))
    photos = held_out_images()
    clean = crops(photos, args.size, args.crops, args.seed)
    engines = {"fp32": Engine(device="cpu", precision="fp32"), "bf16": Engine(device="cpu", precision="bf16")}
    print(f"held-out photos: {len(photos)}, crops: {len(clean)} x {args.size} px, torch threads "
          f"{torch.get_num_threads()}")
    if "upscale" in only:
        import quality_upscale

        print("\nupscale (quality_upscale.py: 8 full-size crops per held-out photo, seed 1)")
        quality_upscale.bench_upscale(quality_upscale.crops(args.size, 8, 1), args.size)
    if "denoise" in only:
        bench_denoise(clean, engines)
    if "sharpen" in only:
        bench_sharpen(clean, engines)
    if "tone" in only:
        bench_tone(photos)
    if "post" in only:
        bench_post(clean, engines)
    if "restore" in only:
        bench_restore(clean, engines)
    if "colorize" in only:
        bench_colorize(clean, engines)
    if "face" in only:
        bench_face(engines)


if __name__ == "__main__":
    main()
