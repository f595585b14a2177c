"""The training scripts' crop sampler: `--detail-share` takes the crops with the most fine detail, the rest follow
the usual rule (flat crops mostly skipped), and nothing else changes when it is 0."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

from train_restorer import fine_detail, sample_crops  # noqa: E402


def photo(kind: str, seed: int = 0) -> torch.Tensor:
    """A 3 x 200 x 200 uint8 picture: "flat", "soft" (a ramp, not flat by the sampler's rule, with mild noise) or
    "busy" (pixel noise over the whole range)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "flat":
        return torch.full((3, 200, 200), 120, dtype=torch.uint8)
    if kind == "soft":
        ramp = torch.linspace(0, 250, 200)[None, None, :].expand(3, 200, 200)
        return (ramp + 4 * torch.rand((3, 200, 200), generator=gen)).to(torch.uint8)
    return torch.randint(0, 256, (3, 200, 200), generator=gen, dtype=torch.uint8)


def pools_of(kinds: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The sampler's three pools (reduced photos, full size, bundled), each these pictures."""
    made = [photo(kind, seed) for seed, kind in enumerate(kinds)]
    return made, made, made


def test_fine_detail_orders_flat_soft_and_busy_crops() -> None:
    crops = torch.stack([photo(kind)[:, :64, :64] for kind in ("flat", "soft", "busy")]).float() / 255
    scores = fine_detail(crops).tolist()
    assert scores[0] < 1e-6
    assert scores[0] < scores[1] < scores[2]


def test_detail_share_fills_its_share_of_the_batch_with_the_most_detailed_candidates() -> None:
    pools = pools_of(["soft"] * 9 + ["busy"])  # busy crops are about 1 in 10 of the candidates
    busy_floor = 0.5 * float(fine_detail(pools[0][-1][:, :32, :32].float()[None] / 255))

    def busy_count(detail_share: float) -> float:
        rng = random.Random(3)
        total = 0
        for _ in range(60):
            crops = sample_crops(pools, 8, 32, rng, texture_share=0.0, detail_share=detail_share)
            assert crops.shape == (8, 3, 32, 32) and 0.0 <= float(crops.min()) and float(crops.max()) <= 1.0
            total += int((fine_detail(crops) > busy_floor).sum())
        return total / 60

    plain, half = busy_count(0.0), busy_count(0.5)
    assert plain < 1.3  # about one in ten of 8
    assert half > 1.4  # of 16 candidates, ~1.6 busy on average, all taken first
    assert half > plain + 0.5


def test_without_detail_share_the_sampler_is_unchanged_by_the_option() -> None:
    pools = pools_of(["flat", "soft", "busy"])
    a = sample_crops(pools, 6, 32, random.Random(5), texture_share=0.3)
    b = sample_crops(pools, 6, 32, random.Random(5), texture_share=0.3, detail_share=0.0)
    assert torch.equal(a, b)
