"""Soak: 3 concurrent clients x 200 small jobs on one daemon; nothing lost, duplicated, misrouted or wrong.

The work is benchmarks/soak.py's `run_soak` (every result compared byte for byte with the same job computed in this
process). The daemon runs with one torch thread by default (RETOUCH_SOAK_DAEMON_THREADS overrides it, 0 = torch's
own choice): on a small machine that is busy with other work, two OpenMP threads fighting for the cores make these
tiny jobs ~15x slower (about 3 instead of 50 jobs/s here) without changing a single output bit, and what this test
is about (routing, duplicates, memory) does not depend on it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("retouch_benchmarks_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_soak_3_clients_200_jobs(tmp_path: Path) -> None:
    soak = load_soak()
    threads = int(os.environ.get("RETOUCH_SOAK_DAEMON_THREADS", "1")) or None
    r = soak.run_soak(3, 200, tmp_path / "soak-runtime", daemon_threads=threads)
    print(
        f"soak figures: jobs={r['jobs']} lost={r['lost']} duplicated={r['duplicated']} misrouted={r['misrouted']} "
        f"wrong={r['wrong']} p50={r['p50_ms']:.0f} ms p99={r['p99_ms']:.0f} ms RSS before="
        f"{r['rss_before_kb'] / 1024:.1f} MiB after={r['rss_after_kb'] / 1024:.1f} MiB "
        f"growth={r['rss_growth_pct']:+.1f}% (run {r['run_seconds']:.1f} s, total {r['total_seconds']:.1f} s)"
    )
    notes = "\n".join(r["notes"])
    assert r["daemon_alive"], "the daemon died during the soak"
    assert r["jobs"] == 600
    assert r["lost"] == 0, notes
    assert r["duplicated"] == 0, notes
    assert r["misrouted"] == 0, notes
    assert r["wrong"] == 0, notes
    assert r["completed"] == 600
    assert r["daemon_completed"] == 600 + 2  # and the two warm-up jobs
