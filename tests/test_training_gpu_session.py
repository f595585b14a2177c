"""What `training/gpu_session.sh` asks of every training script it starts: `--start-after` (load the data, then
wait for a file, so runs sharing a GPU start together after its benchmark) and `--skimage-dir` (scikit-image's
images from a copy, as the GPU machine has no scikit-image)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))

from loop import wait_for_start  # noqa: E402
from photos import SKIMAGE_IMAGES, skimage_paths  # noqa: E402


def test_wait_for_start_returns_only_once_the_flag_exists(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    threading.Timer(0.5, flag.touch).start()
    start = time.perf_counter()
    wait_for_start(flag)
    assert flag.exists()
    assert time.perf_counter() - start >= 0.4
    start = time.perf_counter()
    wait_for_start(None)  # no flag: no wait
    assert time.perf_counter() - start < 0.1


def test_skimage_paths_come_from_the_given_copy(tmp_path: Path) -> None:
    assert skimage_paths(tmp_path) == [tmp_path / name for name in SKIMAGE_IMAGES]


SCRIPT_RUNS = [line for line in (ROOT / "training" / "gpu_session.sh").read_text().splitlines()
               if line.startswith("python3 train_")]


@pytest.mark.parametrize("script", sorted({line.split()[1] for line in SCRIPT_RUNS}))
def test_every_script_the_gpu_session_starts_takes_its_shared_options(script: str) -> None:
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT / "training", capture_output=True, text=True,
                         check=True).stdout
    for option in ("--photos", "--photo-set", "--skimage-dir", "--start-after", "--minutes", "--out", "--ema"):
        assert option in out, f"{script} lacks {option}"

