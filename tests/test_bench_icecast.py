"""`--against icecast`: the real icecast2 (where installed) with real HTTP listeners."""

from __future__ import annotations

import pytest

from bench import icecast


def test_the_comparison_puts_loa_beside_icecast_per_listener_second() -> None:
    loa = {
        "speakers": 1000,
        "duration_s": 20.0,
        "relay_cpu_pct": 40.0,
        "cpu_us_per_packet": 8.0,
        "relay_rss_mb": 120.0,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 9.0},
    }
    theirs = {
        "server": "icecast2",
        "page_ms": 20,
        "listeners": 1000,
        "cpu_pct": 50.0,
        "cpu_us_per_listener_s": 500.0,
        "rss_mb": 20.0,
        "latency_ms": {"p50": 2.0, "p95": 4.0, "p99": 8.0, "max": 20.0},
    }
    table = icecast.compare(loa, [theirs, {"error": "not installed"}])
    assert table["rows"][0]["cpu_us_per_listener_s"] == 400.0  # 8 µs × 50 packets a second
    assert table["rows"][0]["ratio_to_icecast_20ms"] == 0.8
    text = icecast.table(table)
    assert "icecast2: not installed" in text and "loa" in text
    at_40 = icecast.compare({**loa, "frame_ms": 40}, [theirs, {**theirs, "page_ms": 40}])
    assert at_40["rows"][0]["page_ms"] == 40
    assert at_40["rows"][0]["cpu_us_per_listener_s"] == 200.0  # 8 µs × 25 packets a second
    assert at_40["rows"][0]["ratio_to_icecast_40ms"] == 0.4  # against icecast's 40 ms pages
    assert "ratio_to_icecast_20ms" not in at_40["rows"][0]


@pytest.mark.e2e
@pytest.mark.skipif(not icecast.available(), reason="icecast2 is not installed")
@pytest.mark.parametrize("page_ms", [20, 40])
def test_icecast_serves_paced_pages_to_every_listener(page_ms: int) -> None:
    result = icecast.run(20, 2.0, page_ms, warmup_s=2.0)
    assert result["listeners"] == 20 and result["connect_errors"] == 0
    expected = 20 * 2.0 * 1000 / page_ms
    assert expected * 0.9 <= result["pages"] <= expected * 1.1
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] < 1000
    assert result["rss_mb"] > 1  # (its CPU over 2 s is a few clock ticks: not asserted)
