"""`retouch batch --ray`: a local Ray runtime with 2 CPUs gives the same pixels as the daemon's batch, reports
per-file errors, and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from retouch.imageio import read_image, write_image

pytest.importorskip("ray", reason="Ray is the optional extra retouch[cluster] (dev installs it)")

DATA = Path(__file__).parent / "data" / "heldout"


def batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retouch", "batch", *args], capture_output=True, text=True,
                          check=False, env=dict(os.environ), timeout=900)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    crops = sorted(DATA.glob("*.png"))[:3]
    for i, path in enumerate(crops):
        rgb = np.asarray(Image.open(path).convert("RGB"))[: 96 + 8 * i, : 120 - 8 * i]
        write_image(folder / f"photo-{i}.png", rgb)
    rgb16 = (np.asarray(Image.open(crops[0]).convert("RGB"))[:64, :80].astype(np.uint16) * 257)
    write_image(folder / "deep-16bit.tif", rgb16)
    rgba = np.dstack([rgb16[:, :, :3] // 257, np.full((64, 80), 200)]).astype(np.uint8)
    write_image(folder / "with-alpha.png", rgba)
    (folder / "broken.png").write_bytes(b"not an image at all")
    return folder


def test_ray_batch_equals_local_batch_and_reports_errors(inputs: Path, tmp_path: Path, client) -> None:
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    proc = batch(str(inputs), "-o", str(local), "--task", "upscale", "--scale", "2", "-q")
    assert proc.returncode == 1 and "broken.png" in proc.stderr  # one bad file, the rest done
    proc = batch(str(inputs), "-o", str(ray_out), "--task", "upscale", "--scale", "2", "--ray", "--workers", "2",
                 "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert (summary["done"], summary["failed"], summary["skipped"], summary["workers"]) == (5, 1, 0, 2)
    errors = {Path(r["input"]).name: r["error"] for r in summary["files"] if r.get("error")}
    assert list(errors) == ["broken.png"] and "broken.png" in errors["broken.png"]
    report = json.loads((ray_out / "retouch-batch-report.json").read_text())
    assert report["failed"] == 1
    names = sorted(p.name for p in local.iterdir())
    assert names == sorted(p.name for p in ray_out.iterdir() if not p.name.startswith((".", "retouch-batch")))
    assert len(names) == 5
    for name in names:
        a, b = read_image(local / name), read_image(ray_out / name)
        assert a.pixels.dtype == b.pixels.dtype and a.pixels.shape == b.pixels.shape
        assert np.array_equal(a.pixels, b.pixels), f"{name}: Ray and the daemon disagree"


def test_ray_batch_resumes(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = batch(str(inputs), "-o", str(out), "--scale", "2", "--ray", "--workers", "1", "--json")
    assert json.loads(first.stdout.splitlines()[-1])["done"] == 5
    (out / "photo-1.png").unlink()  # as if the run had been killed before this file
    again = json.loads(batch(str(inputs), "-o", str(out), "--scale", "2", "--ray", "--workers", "1",
                             "--json").stdout.splitlines()[-1])
    assert (again["done"], again["skipped"]) == (1, 4)
    assert (out / "photo-1.png").exists()


def test_ray_batch_refuses_bad_parameters_before_starting(inputs: Path, tmp_path: Path) -> None:
    proc = batch(str(inputs), "-o", str(tmp_path / "o"), "--scale", "3", "--ray")
    assert proc.returncode == 1 and "scale" in proc.stderr


def test_ray_batch_joins_an_existing_cluster(inputs: Path, tmp_path: Path) -> None:
    """`--ray auto` joins a running cluster (here one started with `ray start --head` on this machine)."""
    ray_bin = Path(sys.executable).with_name("ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    start = subprocess.run([str(ray_bin), "start", "--head", "--num-cpus", "2", "--disable-usage-stats",
                            "--include-dashboard", "false"], capture_output=True, text=True, env=env, check=False,
                           timeout=300)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        proc = batch(str(inputs), "-o", str(tmp_path / "o"), "--scale", "2", "--ray", "auto", "--json")
        summary = json.loads(proc.stdout.splitlines()[-1])
        assert (summary["done"], summary["failed"], summary["workers"]) == (5, 1, 2)
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, check=False, timeout=120)
