"""`python -m bench` / `loa bench`: N simulated speakers against a real relay, one JSON line.

One run: start `loa serve` on a generated province (or attach to a running relay), connect the
speakers from a few worker processes, start a live tone to the whole province, measure for
``--duration`` seconds (at ``--emergency-at`` an emergency tone to a quarter of the communes),
then a reconnect storm. The run's JSON is the last line of stdout (and ``--json``); with
``--sweep`` one run per N, then a summary JSON line and a picture in ``--out``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import icecast, report
from bench.relay import (
    Layout,
    RelayApi,
    RelayProcess,
    client_session,
    generate_config,
    layout_from_config,
    sample,
)
from bench.speakers import SpeakerProcesses, WorkerConfig
from loa.localservers import free_port

LIVE_HZ = 1000.0
EMERGENCY_HZ = 2000.0
WARMUP_S = 1.0
SPEAKERS_PER_WORKER = 1000
FLOOR_BITRATE_BPS = 32_000  # the generated config's Opus bitrate (loa's default)


def speaker_processes(layout: Layout, url: str, args: argparse.Namespace) -> SpeakerProcesses:
    """The speaker processes for ``layout``, started by a ``with`` block."""
    n = len(layout.speakers)
    count = args.workers or max(1, min(os.cpu_count() or 1, math.ceil(n / SPEAKERS_PER_WORKER)))
    configs = [
        WorkerConfig(
            url=url,
            transport=args.transport,
            speakers=tuple((s.endpoint, s.zone, s.token) for s in layout.speakers[i::count]),
            decode_every=max(1, round(100 / args.decode_pct)),
            tone_hz={"live": LIVE_HZ, "emergency": EMERGENCY_HZ},
            seed=i,
        )
        for i in range(count)
    ]
    return SpeakerProcesses(configs, connect_timeout=30.0 + n / 50)


def _cpu_s(pids: Sequence[int], field: str = "cpu_s") -> tuple[float, float] | None:
    """(now, the sum of ``field`` over ``pids``): CPU seconds, or run-queue wait seconds."""
    samples = [sample(pid) for pid in pids]
    if not samples or any(s is None for s in samples):
        return None
    return time.monotonic(), sum(getattr(s, field) for s in samples if s is not None)


def _pct(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    if a is None or b is None or b[0] <= a[0]:
        return None
    return round((b[1] - a[1]) / (b[0] - a[0]) * 100, 1)


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def measure(
    api: RelayApi,
    layout: Layout,
    workers: SpeakerProcesses,
    relay_pid: int | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Live to all, measure, emergency to some at ``emergency_at``, storm; the raw numbers."""
    ready = await workers.ask(None, workers.connect_timeout + 10)
    live = await api.start_broadcast("live", layout.roots, LIVE_HZ)
    await asyncio.sleep(WARMUP_S)
    await workers.ask(("measure",), 10)
    relay_pids = [relay_pid] if relay_pid else []
    sent0 = await api.packets_sent()
    r0, w0 = _cpu_s(relay_pids), _cpu_s(workers.pids)
    q0 = _cpu_s(relay_pids, "wait_s")
    u0, k0 = _cpu_s(relay_pids, "user_s"), _cpu_s(relay_pids, "sys_s")
    await asyncio.sleep(args.emergency_at)
    targets = layout.emergency_communes(args.emergency_fraction)
    request_us = time.time_ns() // 1000  # just before the POST: the switch time starts here
    emergency = await api.start_broadcast("emergency", targets, EMERGENCY_HZ)
    await asyncio.sleep(max(0.0, args.duration - args.emergency_at))
    r1, w1 = _cpu_s(relay_pids), _cpu_s(workers.pids)
    q1 = _cpu_s(relay_pids, "wait_s")
    u1, k1 = _cpu_s(relay_pids, "user_s"), _cpu_s(relay_pids, "sys_s")
    load = _loadavg()
    sent1 = await api.packets_sent()
    rss = sample(relay_pid) if relay_pid else None
    stopped = await workers.ask(("stop", request_us, targets), 30)
    await api.stop_broadcast(emergency["id"])
    s0 = _cpu_s(relay_pids)
    stormed = await workers.ask(("storm", args.storm_timeout), args.storm_timeout + 30)
    s1 = _cpu_s(relay_pids)
    await api.stop_broadcast(live["id"])
    return {
        "ready": ready,
        "stopped": stopped,
        "stormed": stormed,
        "targets": targets,
        "relay_cpu_pct": _pct(r0, r1),
        "relay_cpu_s": None if r0 is None or r1 is None else r1[1] - r0[1],
        "relay_user_cpu_pct": _pct(u0, u1),
        "relay_sys_cpu_pct": _pct(k0, k1),
        "bench_cpu_pct": _pct(w0, w1),
        "relay_storm_cpu_pct": _pct(s0, s1),
        "relay_rss_mb": None if rss is None else round(rss.rss_mb, 1),
        "relay_wait_pct": _pct(q0, q1),
        "loadavg_1m": load,
        "relay_sent": None if sent0 is None or sent1 is None else sent1 - sent0,
    }


def build_result(
    raw: dict[str, Any], layout: Layout, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    stopped, stormed = raw["stopped"], raw["stormed"]
    hist = report.merge_hists(w["hist"] for w in stopped)
    max_ms = max(w["max_latency_us"] for w in stopped) / 1000
    received = sum(w["received"] for w in stopped)
    lost = sum(w["lost"] for w in stopped)
    stamped = sum(hist.values())
    jitters = [j for w in stopped for j in w["jitter_ms"]]
    back = sorted(b for w in stormed for b in w["back"])
    not_back = sum(w["not_back"] for w in stormed)
    decode = {k: sum(w["decode"][k] for w in stopped) for k in ("speakers", "windows", "ok")}
    decode["bad_examples"] = [b for w in stopped for b in w["decode"]["bad_examples"]][:5]
    targeted = sum(1 for s in layout.speakers if s.zone in raw["targets"])
    # packets each speaker should get: one per frame_ms (its zones' packet duration)
    expected = len(layout.speakers) * args.duration / (args.frame_ms / 1000)
    latency = {
        q: report.hist_percentile(hist, v, max_ms) if stamped else None
        for q, v in (("p50", 50), ("p95", 95), ("p99", 99))
    }
    latency["max"] = round(max_ms, 3) if stamped else None
    lag = report.merge_hists(w["lag_hist"] for w in stopped)
    lag_max = max(w["max_lag_us"] for w in stopped) / 1000
    cpu_us = (
        round(raw["relay_cpu_s"] * 1e6 / received, 2)
        if raw["relay_cpu_s"] is not None and received
        else None
    )
    floor = raw.get("floor", {}).get("us_per_packet")
    floor_read = raw.get("floor_read", {}).get("us_per_packet")
    return {
        "speakers": len(layout.speakers),
        "frame_ms": args.frame_ms,
        "transport": args.transport,
        "sendmmsg": not args.no_sendmmsg if not args.relay else None,
        "steady_groups": not args.no_steady_groups if not args.relay else None,
        "workers": workers,
        "duration_s": args.duration,
        "emergency_at_s": args.emergency_at,
        "latency_ms": latency,
        "loss_pct": round(100 * lost / (received + lost), 4) if received + lost else None,
        "jitter_ms": round(sum(jitters) / len(jitters), 3) if jitters else None,
        "preempt_ms": report.spread([p for w in stopped for p in w["preempt_ms"]]),
        "preempt_ctl_ms": report.spread([p for w in stopped for p in w["preempt_ctl_ms"]]),
        "relay_cpu_pct": raw["relay_cpu_pct"],
        "relay_user_cpu_pct": raw["relay_user_cpu_pct"],
        "relay_sys_cpu_pct": raw["relay_sys_cpu_pct"],
        "cpu_us_per_packet": cpu_us,
        # The floor: a bare sendto loop to as many loopback sockets, same size and rate
        # (bench.floor, run after the relay stopped); the relay's CPU per packet over it.
        "floor_us_per_packet": floor,
        "ratio_to_floor": round(cpu_us / floor, 2) if cpu_us and floor else None,
        # The same loop to sockets another process reads, as the bench's speakers read the
        # relay's: on loopback the sender's system call also queues each datagram and wakes
        # its reader, work the floor above skips (its full receivers drop).
        "floor_read_us_per_packet": floor_read,
        "ratio_to_floor_read": round(cpu_us / floor_read, 2) if cpu_us and floor_read else None,
        "relay_rss_mb": raw["relay_rss_mb"],
        "reconnect_s": round(back[-1], 3) if back and not not_back else None,
        "reconnect": {
            "p50": report.percentile(back, 50),
            "p99": report.percentile(back, 99),
            "max": round(back[-1], 3) if back else None,
            "not_back": not_back,
            "relay_cpu_pct": raw["relay_storm_cpu_pct"],
        },
        "bench_cpu_pct": raw["bench_cpu_pct"],
        # Time the relay was ready to run but had no CPU (other processes, the bench): a
        # high number means the latencies above measure this machine's load, not the relay.
        "relay_wait_pct": raw["relay_wait_pct"],
        "loadavg_1m": raw["loadavg_1m"],
        # How late the bench's handlers saw packets the kernel had already received: the
        # latency above uses the kernel's receive time, so this is the bench's own load.
        "bench_lag_ms": {
            "p50": report.hist_percentile(lag, 50, lag_max),
            "p99": report.hist_percentile(lag, 99, lag_max),
            "max": round(lag_max, 3) if lag else None,
        },
        "connect_s": round(max(w["connect_s"] for w in raw["ready"]), 3),
        "connected": sum(w["up"] for w in raw["ready"]),
        "packets": {
            "received": received,
            "lost": lost,
            "stamped": stamped,
            "relay_sent": raw["relay_sent"],
            "per_speaker_per_s": round(received / len(layout.speakers) / args.duration, 2),
        },
        # Real time: each speaker should get 1000 / frame_ms packets/s. A relay short of
        # CPU falls behind its pacer and sends fewer (sequence numbers stay continuous, so
        # loss_pct cannot see it; listeners hear underruns). The share of real time sent
        # and received:
        "realtime_pct": {
            "relay_sent": None
            if raw["relay_sent"] is None
            else round(100 * raw["relay_sent"] / expected, 2),
            "received": round(100 * received / expected, 2),
        },
        "connect_errors": dict(
            sum((Counter(w["errors"]) for w in [*raw["ready"], *stormed]), Counter())
        ),
        "silent_speakers": sum(w["silent"] for w in stopped),
        "unexpected_drops": sum(w["unexpected_drops"] for w in stopped),
        "emergency": {
            "communes": len(raw["targets"]),
            "targeted": targeted,
            "missing": sum(w["emergency_missing"] for w in stopped),
            "leaks": sum(w["emergency_leaks"] for w in stopped),
        },
        "decode_check": decode,
        "latency_histogram": {
            "bucket_ms": 0.1,
            "counts": {str(k): v for k, v in sorted(hist.items())},
        },
        "machine": report.machine_info(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


async def run_once(n: int, args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        relay: RelayProcess | None = None
        if args.relay:
            layout = layout_from_config(args.config, n, args.token)
            url, relay_pid = args.relay, args.relay_pid
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loa-bench-")))
            port = free_port()
            text, layout = generate_config(
                n,
                web_port=port,
                data_dir=tmp / "data",
                sendmmsg=not args.no_sendmmsg,
                frame_ms=args.frame_ms,
                steady_groups=not args.no_steady_groups,
            )
            (tmp / "loa.toml").write_text(text, encoding="utf-8")
            log_path = (args.out or tmp) / f"relay-{n}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            relay = stack.enter_context(RelayProcess(tmp / "loa.toml", log_path))
            url, relay_pid = f"http://127.0.0.1:{port}", relay.pid
        async with client_session() as http:
            api = RelayApi(http, url, layout.admin_token)
            await api.wait_healthy(30, relay)
            workers = stack.enter_context(speaker_processes(layout, url, args))
            raw = await measure(api, layout, workers, relay_pid, args)
        if relay is not None:
            relay.check_alive()
    raw["floor"] = await run_floor(n, args)
    raw["floor_read"] = await run_floor(n, args, receivers="read")
    result = build_result(raw, layout, len(workers.procs), args)
    result["sync_skew_ms"] = await run_sync(args)
    return result


async def run_sync(args: argparse.Namespace) -> dict[str, Any] | None:
    """``bench.sync`` in its own process, after the relay and the speakers are gone: poles of
    one village on clocks seconds off, ±100 ppm, behind 0–50 ms of random delay each way;
    the spread of the instants they play each frame (p50, p95, max in ms)."""
    if args.sync_seconds <= 0:
        return None
    # Imported here: bench.sync runs the server in-process, and `loa bench --help` must work
    # on a speaker-only install (tests/test_packaging.py).
    from bench import sync

    options = sync.options(speakers=args.sync_speakers, seconds=args.sync_seconds)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sync",
        "--speakers", str(options.speakers), "--seconds", str(options.seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    budget = sync.CONNECT_TIMEOUT_S + options.converge_s + options.seconds + 90
    out, _ = await asyncio.wait_for(proc.communicate(), budget)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.sync failed with exit code {proc.returncode}")
    skew: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])["sync_skew_ms"]
    return skew


async def run_floor(n: int, args: argparse.Namespace, receivers: str = "full") -> dict[str, Any]:
    """``bench.floor`` in its own process, after the relay and the speakers are gone: the
    same number of destinations, the relay's packet size (RTP header, the bench's 12-byte
    stamp extension, the Opus payload at the configured bitrate) and frame rate;
    ``receivers``: its ``--receivers``."""
    if args.floor_s <= 0:
        return {}
    packet_s = args.frame_ms / 1000
    packet_bytes = 12 + 12 + round(FLOOR_BITRATE_BPS * packet_s / 8)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.floor",
        "--speakers",
        str(n),
        "--packet-bytes",
        str(packet_bytes),
        "--frame-ms",
        str(args.frame_ms),
        "--duration",
        str(args.floor_s),
        "--receivers",
        receivers,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), args.floor_s + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.floor failed with exit code {proc.returncode}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    args = p.parse_args(argv)
    return check_args(p, args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speakers", type=int, default=100, help="simulated speakers (default 100)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    p.add_argument("--emergency-at", type=float, help="seconds into the measurement (default half)")
    p.add_argument(
        "--emergency-fraction",
        type=float,
        default=0.25,
        help="share of communes the emergency targets (default 0.25)",
    )
    p.add_argument("--transport", choices=("udp", "ws"), default="udp")
    p.add_argument(
        "--frame-ms",
        type=int,
        choices=(20, 40, 60),
        default=20,
        help="packet duration of every zone (opus.frame_ms; default 20)",
    )
    p.add_argument("--sweep", help="comma-separated speaker counts, e.g. 100,500,1000,2000")
    p.add_argument(
        "--workers",
        type=int,
        help=f"speaker processes (default one per {SPEAKERS_PER_WORKER}, at most one per core)",
    )
    p.add_argument(
        "--decode-pct",
        type=float,
        default=1.0,
        help="percent of speakers that decode and check the tone (default 1)",
    )
    p.add_argument(
        "--storm-timeout",
        type=float,
        default=60.0,
        help="give up on the reconnect storm after this many seconds",
    )
    p.add_argument(
        "--against",
        choices=("icecast",),
        help="then run Debian's icecast2 (if installed) with as many listeners, 20 and 40 ms pages",
    )
    p.add_argument(
        "--no-sendmmsg",
        action="store_true",
        help="run the relay with relay.sendmmsg = false (one sendto a packet), to compare",
    )
    p.add_argument(
        "--no-steady-groups",
        action="store_true",
        help="run the relay with relay.steady_groups = false (every header one by one), to compare",
    )
    p.add_argument(
        "--floor-s",
        type=float,
        default=5.0,
        help="seconds of the bare sendto floor run after each relay run (0: skip)",
    )
    p.add_argument(
        "--nodes",
        type=int,
        help="run a cluster of this many `loa serve` nodes with their own redis-server and "
        "PostgreSQL (bench.cluster): per-node CPU and RSS, the Redis hop's latency, "
        "Redis messages/s, failover time",
    )
    p.add_argument(
        "--failover-timeout",
        type=float,
        default=30.0,
        help="with --nodes: give up waiting for a killed node's speakers after this many seconds",
    )
    p.add_argument(
        "--sync-speakers",
        type=int,
        default=6,
        help="poles of one village in the synchronised playout run (bench.sync; default 6)",
    )
    p.add_argument(
        "--sync-seconds",
        type=float,
        default=20.0,
        help="seconds that run measures after 10 s of convergence (0: skip it)",
    )
    p.add_argument("--json", type=Path, help="write the run's (or sweep's) JSON here")
    p.add_argument("--out", type=Path, help="directory for per-run JSON, relay logs and a PNG")
    p.add_argument("--relay", help="attach to a running relay at this URL instead of starting one")
    p.add_argument("--config", type=Path, help="with --relay: the relay's TOML (tokens, zones)")
    p.add_argument("--token", help="with --relay: admin token (default: the config's)")
    p.add_argument("--relay-pid", type=int, help="with --relay: its pid, for CPU and RSS")


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if args.relay and not args.config:
        p.error("--relay needs --config (the relay's TOML, for the speakers' tokens)")
    args.counts = [int(x) for x in args.sweep.split(",")] if args.sweep else [args.speakers]
    if any(n < 1 for n in args.counts) or args.duration <= 0:
        p.error("speaker counts and --duration must be positive")
    if args.nodes is not None and (args.nodes < 2 or args.sweep or args.relay or args.against):
        p.error("--nodes needs at least 2 and goes without --sweep, --relay and --against")
    if args.emergency_at is None:
        args.emergency_at = args.duration / 2
    if not 0 <= args.emergency_at < args.duration:
        p.error("--emergency-at must fall inside the measurement [0, duration)")
    if not 0 < args.emergency_fraction <= 1 or not 0 < args.decode_pct <= 100:
        p.error("--emergency-fraction must be in (0, 1], --decode-pct in (0, 100]")
    return args


def run(args: argparse.Namespace) -> int:
    if args.nodes:
        from bench import cluster  # its own run: N nodes, Redis, PostgreSQL

        result = cluster.run(args)
        if args.json:
            report.write_json(result, args.json)
        print(json.dumps(result), flush=True)
        return 0
    runs = []
    for n in args.counts:
        result = asyncio.run(run_once(n, args))
        if args.against == "icecast":
            theirs = [icecast.run(n, args.duration, page_ms) for page_ms in (20, 40)]
            result["against_icecast"] = icecast.compare(result, theirs)
            print(icecast.table(result["against_icecast"]), flush=True)
        print(report.summary(result), flush=True)
        if args.out:
            report.write_json(result, args.out / f"run-{args.transport}-{n}.json")
        runs.append(result)
    final = report.sweep_summary(runs) if args.sweep else runs[0]
    if args.out:
        report.plot_runs(runs, args.out / f"bench-{args.transport}.png")
    if args.json:
        report.write_json(final, args.json)
    print(json.dumps(final), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
