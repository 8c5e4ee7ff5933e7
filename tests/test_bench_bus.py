"""`python -m bench.bus` runs end to end on a redis-server of its own (tiny sizes; the numbers
themselves are recorded in docs/BENCHMARKS.md, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.e2e
def test_bench_bus_counts_one_message_per_tick_per_node(tmp_path: Path) -> None:
    out = tmp_path / "bus.json"
    argv = [sys.executable, "-m", "bench.bus", "--nodes", "2", "--broadcasts", "3"]
    argv += ["--ticks", "40", "--paced-s", "0.4", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert json.loads(done.stdout.splitlines()[-1]) == doc
    runs = {(r["mode"], r["paced"]): r for r in doc["results"]}
    assert sorted(runs) == [
        ("bundled", False), ("bundled", True), ("per-packet", False), ("per-packet", True),
    ]  # fmt: skip
    for (mode, paced), r in runs.items():
        ticks = 20 if paced else 40
        assert r["ticks"] == ticks
        assert r["messages"] == ticks * 2 * (1 if mode == "bundled" else 3)
        assert r["received_packets"] == r["packets"] == ticks * 2 * 3
        assert r["latency_ms"]["n"] == r["messages"]
