"""The training loop's weight average (`--ema`): the averaged weights follow the formula, the model holds them
only while they are exported and after training, and a resumed run keeps averaging from where it stopped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

from loop import WeightAverage, train  # noqa: E402


def test_average_follows_the_exponential_formula_and_is_applied_only_inside_the_block() -> None:
    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, 0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)
    expected = start["weight"] * 0.9 + (start["weight"] + 1.0) * 0.1
    assert torch.allclose(average.shadow["weight"], expected)
    own = model.weight.detach().clone()
    with average.applied(model):
        assert torch.allclose(model.weight, expected)
    assert torch.equal(model.weight, own)


def test_decay_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="--ema"):
        WeightAverage(torch.nn.Linear(2, 2), 1.0)


def batches() -> tuple[torch.Tensor, torch.Tensor]:
    """y = 3 x plus noise: each step's weights jitter around 3 while the learning rate lasts."""
    x = torch.randn(16, 1, 4, 4)
    return x, 3.0 * x + 0.3 * torch.randn(16, 1, 4, 4)


def test_training_with_ema_exports_and_returns_the_averaged_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 1, bias=False)
    first = model.weight.item()
    # the run is timed, so its step count depends on the machine; the cosine rate ends at 0, and with a short memory
    # (decay 0.5) the average caught up with the frozen last weights on a fast run. A memory of ~1000 steps keeps
    # the jitter of the last ones in it, so the two differ whatever the step count.
    steps, _, _ = train(model, batches, lr=0.05, minutes=0.05, run_dir=tmp_path, device=torch.device("cpu"),
                        ema=0.999)
    assert steps > 10
    checkpoint = torch.load(tmp_path / "checkpoint.pt")
    # the model now holds the average, which lags the last step's weights (those are in the checkpoint)
    assert torch.equal(model.weight, checkpoint["ema"]["weight"])
    assert not torch.equal(model.weight, checkpoint["model"]["weight"])
    assert abs(model.weight.item() - 3.0) < abs(first - 3.0) - 0.1  # it learnt (y = 3 x)
    # a resumed run starts from the saved average, not from the resumed weights
    resumed = torch.nn.Conv2d(1, 1, 1, bias=False)
    train(resumed, batches, lr=0.0, minutes=0.0, run_dir=tmp_path, device=torch.device("cpu"), ema=0.999)
    assert torch.equal(resumed.weight, checkpoint["ema"]["weight"])
