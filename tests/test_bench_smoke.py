"""The load generator: its pieces (config, percentiles, RTP payload) and one short real run."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench import report
from bench.relay import COMMUNE_SIZE, generate_config
from bench.speakers import BUCKET_US
from loa import config as cfg

ROOT = Path(__file__).resolve().parent.parent


def test_generated_config_is_a_valid_relay_config(tmp_path: Path) -> None:
    text, layout = generate_config(45, web_port=18080, data_dir=tmp_path)
    config = cfg.from_mapping(tomllib.loads(text))
    assert config.relay.stamp_frames is True
    assert config.relay.udp_port == 0
    assert len(config.endpoints) == 45
    assert [e.token for e in config.endpoints] == [s.token for s in layout.speakers]
    assert len(layout.communes) == 3  # 20 + 20 + 5
    assert sum(1 for s in layout.speakers if s.zone == layout.communes[0]) == COMMUNE_SIZE
    assert config.admin_token == layout.admin_token
    assert layout.emergency_communes(0.25) == (layout.communes[0],)
    assert len(set(layout.emergency_communes(1.0))) == 3


def test_histogram_percentiles() -> None:
    # 90 packets in bucket 0 (0-0.1 ms), 9 in bucket 49 (4.9-5 ms), 1 far beyond.
    hist = {0: 90, 49: 9, 20_000: 1}
    assert report.hist_percentile(hist, 50, max_ms=3000.0) == pytest.approx(0.1)
    assert report.hist_percentile(hist, 95, max_ms=3000.0) == pytest.approx(5.0)
    assert report.hist_percentile(hist, 100, max_ms=3000.0) == pytest.approx(3000.0)
    assert report.hist_percentile({}, 50, max_ms=0.0) is None
    xs, ys = report.cdf(hist)
    assert ys[-1] == 1.0
    assert xs[0] == BUCKET_US / 1000
    assert report.percentile([5.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert report.spread([]) == {"p50": None, "p99": None, "max": None, "n": 0}


def test_loa_bench_subcommand_parses_the_bench_flags() -> None:
    from loa.cli import bench as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--sweep", "10,20", "--duration", "4", "--transport", "ws"])
    from bench.__main__ import check_args

    args = check_args(args.bench_parser, args)
    assert args.counts == [10, 20]
    assert args.emergency_at == 2.0
    assert args.transport == "ws"


@pytest.mark.e2e
@pytest.mark.timeout(140)
def test_short_run_against_a_real_relay(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--speakers",
            "40",
            "--duration",
            "3",
            "--emergency-fraction",
            "0.5",
            "--storm-timeout",
            "20",
            "--floor-s",
            "1",
            "--sync-speakers",
            "2",
            "--sync-seconds",
            "2",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == json.loads(out.read_text())
    for key in report.REQUIRED_KEYS:
        assert key in last, key
    assert last["speakers"] == 40
    assert last["connected"] == 40
    assert last["packets"]["received"] > 40 * 50  # 3 s at 50 packets/s, with room for load
    assert last["packets"]["stamped"] == last["packets"]["received"]
    assert last["realtime_pct"]["received"] > 50
    assert isinstance(last["loss_pct"], float)
    assert 0.0 <= last["loss_pct"] <= 100.0
    lat = last["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert isinstance(last["jitter_ms"], float)
    # Two communes of 20, the emergency to one: each of its 20 speakers saw the switch,
    # none of the other 20 was told of it.
    assert last["emergency"] == {"communes": 1, "targeted": 20, "missing": 0, "leaks": 0}
    assert last["preempt_ms"]["n"] == 20
    assert 0 < last["preempt_ms"]["p50"] <= last["preempt_ms"]["max"]
    assert last["relay_cpu_pct"] > 0
    assert last["cpu_us_per_packet"] > 0
    assert last["relay_user_cpu_pct"] + last["relay_sys_cpu_pct"] == pytest.approx(
        last["relay_cpu_pct"], abs=0.2
    )
    assert last["floor_us_per_packet"] > 0
    assert last["ratio_to_floor"] == pytest.approx(
        last["cpu_us_per_packet"] / last["floor_us_per_packet"], abs=0.01
    )
    assert last["floor_read_us_per_packet"] > 0
    assert last["ratio_to_floor_read"] == pytest.approx(
        last["cpu_us_per_packet"] / last["floor_read_us_per_packet"], abs=0.01
    )
    assert last["relay_rss_mb"] > 10
    assert last["reconnect"]["not_back"] == 0
    assert 0 < last["reconnect_s"] < 20
    skew = last["sync_skew_ms"]  # two poles seconds apart, 2 s after 10 s of convergence
    assert 0 <= skew["p50"] <= skew["p95"] <= skew["max"] < 50
    decode = last["decode_check"]
    assert decode["windows"] > 0
    assert decode["ok"] == decode["windows"], decode["bad_examples"]


async def test_the_api_client_lets_idle_connections_go_before_the_relay_closes_them() -> None:
    """The relay closes a keep-alive connection idle for ``web.header_timeout_s``; aiohttp's
    client keeps one 15 s. A request sent on a connection the server is closing that instant
    fails (ServerDisconnectedError, the bench's emergency once in 4 runs). The bench's client
    lets go after ``CLIENT_KEEPALIVE_S``: past it a request opens a new connection."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from bench.relay import CLIENT_KEEPALIVE_S, client_session

    peers: list[object] = []

    async def hello(request: web.Request) -> web.Response:
        peers.append(request.transport)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    server = TestServer(app)
    await server.start_server()
    try:
        async with client_session() as http:
            for pause in (0.0, 0.1, CLIENT_KEEPALIVE_S + 0.5):
                await asyncio.sleep(pause)
                async with http.get(str(server.make_url("/"))) as resp:
                    assert resp.status == 200
    finally:
        await server.close()
    first, reused, after_idle = peers
    assert reused is first  # a connection in use is kept
    assert after_idle is not first  # an idle one was let go
