"""`python -m bench --nodes N` (bench.cluster): its node configs, and one short real run of
three `loa serve` nodes with their own redis-server and PostgreSQL (tiny sizes; the numbers
themselves are recorded in docs/BENCHMARKS.md, only checked here to be real)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench.cluster import node_config
from bench.relay import generate_config
from loa import config as cfg

ROOT = Path(__file__).resolve().parent.parent


def test_a_node_config_is_the_generated_province_in_cluster_mode(tmp_path: Path) -> None:
    text, layout = generate_config(45, web_port=0, data_dir=tmp_path)
    toml = node_config(text, name="n1", port=18081, data=tmp_path / "n1",
                       redis="redis://127.0.0.1:6390/0", store="postgresql://loa@/postgres",
                       capacity=45)  # fmt: skip
    raw = tomllib.loads(toml)
    assert raw["web"]["port"] == 18081 and raw["data_dir"] == str(tmp_path / "n1")
    assert raw["cluster"] == {
        "redis_url": "redis://127.0.0.1:6390/0", "node_id": "n1",
        "public_url": "http://127.0.0.1:18081", "capacity": 45,
    }  # fmt: skip
    config = cfg.from_mapping(raw)
    assert config.relay.stamp_frames is True
    assert [e.token for e in config.endpoints] == [s.token for s in layout.speakers]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_three_node_cluster_run_measures_real_numbers(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    argv = [sys.executable, "-m", "bench", "--nodes", "3", "--speakers", "60"]
    argv += ["--duration", "2", "--failover-timeout", "10", "--json", str(out)]
    # its own process group: on a timeout the nodes and servers it started go with it
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=55)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the cluster bench took over 55 s:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    r = json.loads(out.read_text())
    assert json.loads(stdout.splitlines()[-1]) == r
    assert r["connected"] == 60 and r["redirects"] > 0  # dealt round-robin, sent home
    # the leader placed communes on every node, and every node had speakers
    assert all(n > 0 for n in r["assignment_at_start"].values())
    assert [node["speakers"] > 0 for node in r["per_node"].values()] == [True] * 3
    assert r["per_node"]["n0"]["encoding"] and not r["per_node"]["n0"]["relaying"]
    for name in ("n1", "n2"):
        assert r["per_node"][name]["relaying"] == r["per_node"]["n0"]["encoding"]
        assert r["per_node"][name]["cpu_pct"] > 0 and r["per_node"][name]["rss_mb"] > 0
    # every speaker heard the tone, stamped, on its own node and through the Redis hop
    assert r["delivery"]["silent"] == 0 and r["delivery"]["unstamped"] == 0
    lat = r["latency_ms"]
    assert lat["encoding_node"]["packets"] > 0 and lat["other_nodes"]["packets"] > 0
    assert lat["added_p50"] is not None and lat["added_p99"] is not None
    # one bundle per 20 ms tick per relaying node, at least: Redis carried real messages
    assert r["redis"]["publish_per_s"] >= 2 * 40
    fo = r["failover"]
    assert fo["killed"] in ("n1", "n2") and fo["moved"] > 0 and fo["back"] == fo["moved"]
    assert fo["not_back"] == 0 and 0 < fo["all_back_s"] <= 10
    assert fo["killed"] not in fo["landed_on"]
