"""The training loop our scripts share: L1 loss, Adam, warm-up and cosine learning rate over a wall-clock budget,
bf16 autocast where the device has it, a JSON-lines log, and a checkpoint every two minutes that a rerun resumes."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from retouch.engine.device import cpu_has_bf16

Batch = tuple[torch.Tensor, torch.Tensor]


def add_common_args(parser: argparse.ArgumentParser, *, minutes: float, batch: int, lr: float) -> None:
    """The options every training script of ours takes (budget, crops, optimiser, device, data, output)."""
    parser.add_argument("--minutes", type=float, default=minutes, help="training time budget (wall clock)")
    parser.add_argument("--size", type=int, default=128, help="crop size")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, required=True, help="final weights (.safetensors, stored as fp16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, default=None,
                        help="start from these weights (a .safetensors of this net), for a fine-tune")
    add_ema_arg(parser)
    add_start_after_arg(parser)


def add_start_after_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start-after", type=Path,
                        help="load the data, then wait for this file to exist before training (runs sharing a GPU "
                             "start together, after its benchmark)")


def wait_for_start(flag: Path | None) -> None:
    """Block until `flag` exists (no flag: return at once)."""
    while flag is not None and not flag.exists():
        time.sleep(1)


def add_ema_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ema", type=float, default=0.0,
                        help="keep an exponential moving average of the weights with this decay per step (e.g. "
                             "0.999) and export it instead of the last step's weights: it averages out the noise of "
                             "small batches, which otherwise drags a fine-tuned net off its optimum; 0 = off")


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Weights of the same architecture from a .safetensors file (ours are stored as fp16) into `model`, as fp32."""
    from safetensors.torch import load_file

    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})


def export_weights(model: torch.nn.Module, out: Path, meta: dict[str, str]) -> None:
    """The weights as fp16 safetensors with the recipe in the metadata, written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(out)


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, elapsed: float,
                    average: WeightAverage | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed}
    if average is not None:
        state["ema"] = average.shadow
    torch.save(state, tmp)
    tmp.replace(path)


class WeightAverage:
    """An exponential moving average of a model's floating-point weights and buffers (Polyak averaging)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        state = model.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [state[k].detach() for k in keys], 1.0 - self.decay)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(own, strict=False)


def train(model: torch.nn.Module, make_batch: Callable[[], Batch], *, lr: float, minutes: float, run_dir: Path,
          device: torch.device, warmup: int = 0, ema: float = 0.0,
          on_resume: Callable[[int], None] | None = None,
          on_checkpoint: Callable[[int, float, bool], None] | None = None,
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> tuple[int, float, bool]:
    """Train until `minutes` of wall clock have passed (counting earlier runs in `run_dir`).

    The loss (`loss_fn(output, target)`, by default L1) compares the model's first C output channels with the
    C-channel target. Returns (steps, seconds,
    whether bf16 autocast was on). `on_checkpoint(step, seconds, bf16)` runs after each periodic checkpoint (to
    export the weights so far). With `ema` > 0 the model holds the moving average of its weights while
    `on_checkpoint` runs and when this returns."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    step, elapsed, ckpt = 0, 0.0, {}
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step, elapsed = ckpt["step"], ckpt["elapsed"]
        if on_resume:
            on_resume(step)
        print(f"resumed at step {step}, {elapsed / 60:.1f} min")
    average = WeightAverage(model, ema) if ema else None  # from the resumed weights, or the saved average
    if average is not None and "ema" in ckpt:
        average.shadow = ckpt["ema"]
    budget = minutes * 60
    use_bf16 = device.type == "cuda" or cpu_has_bf16()
    last_ckpt = time.monotonic()
    start = time.monotonic() - elapsed
    running = torch.zeros((), device=device)  # read every 100 steps: a GPU is not made to wait each step
    with (run_dir / "log.jsonl").open("a") as log:
        while elapsed < budget:
            warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
            for group in opt.param_groups:
                group["lr"] = warm * (1e-6 + 0.5 * (lr - 1e-6) * (1 + math.cos(math.pi * elapsed / budget)))
            x, target = make_batch()
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            target = target.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(x)
            out = out.float()
            loss = loss_fn(out, target) if loss_fn else F.l1_loss(out[:, : target.shape[1]], target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if average is not None:
                average.update(model)
            step += 1
            running = 0.98 * running + 0.02 * loss.detach() if step > 1 else loss.detach()
            elapsed = time.monotonic() - start
            if step % 100 == 0:
                rec = {"step": step, "minutes": round(elapsed / 60, 2), "loss": round(running.item(), 5),
                       "lr": opt.param_groups[0]["lr"]}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(rec, flush=True)
            if time.monotonic() - last_ckpt > 120:
                save_checkpoint(ckpt_path, model, opt, step, elapsed, average)
                if on_checkpoint:
                    with average.applied(model) if average is not None else nullcontext():
                        on_checkpoint(step, elapsed, use_bf16)
                last_ckpt = time.monotonic()
    save_checkpoint(ckpt_path, model, opt, step, elapsed, average)
    if average is not None:
        model.load_state_dict(average.shadow, strict=False)
    return step, elapsed, use_bf16
