"""`python -m bench --nodes N`: simulated speakers against a cluster of N `loa serve` nodes on
this machine (issue 12 item 6), one JSON line.

One run: start a redis-server and a PostgreSQL of its own (``loa.localservers``, free
loopback ports, temp dirs), then N nodes in cluster mode sharing one generated province
(communes of 20 speakers, ``capacity`` = all speakers, so two survivors can take a dead
node's communes), wait until they agree on one commune assignment, and connect the speakers,
dealt over the nodes round-robin: a speaker that reaches a node not serving its commune is
redirected, as ``loa.speaker.client`` would be. A live tone to the whole province starts on
the first node, which encodes it; the others relay its bundles from Redis. For
``--duration`` seconds it measures:

- per-node CPU % and RSS (and redis-server's), from /proc;
- delivery latency per node: from the stamp in each packet (``relay.stamp_frames``) to the
  kernel's receive time at the speaker. On the encoding node the stamp is when the frame
  was encoded; a relaying node stamps the packet with the time its bundle left the encoding
  node (``Bundle.sent_us``), so the "added" figure (other nodes minus the encoding node) is
  the Redis hop and the relaying node's fan-out. Not in it: the wait of a frame in the
  encoding node's bundler for the next 20 ms tick (0–20 ms, fixed while the two clocks
  keep their phase), which the design accepts to send one message per tick;
- Redis commands and PUBLISHes per second (INFO stats and commandstats deltas).

Then failover: SIGKILL one node that does not encode, and time until every speaker that was
on it has had a packet through another node (the kernel's receive time of that packet minus
the kill).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench import report
from bench.relay import (
    Layout,
    RelayApi,
    RelayProcess,
    client_session,
    generate_config,
    sample,
)
from bench.speakers import SpeakerProcesses, WorkerConfig
from loa.localservers import PostgresServer, RedisServer, free_port

LIVE_HZ = 1000.0
WARMUP_S = 1.0
SPEAKERS_PER_WORKER = 1000
CONVERGE_S = 45.0
SPREAD_S = 15.0


def node_config(text: str, *, name: str, port: int, data: Path, redis: str, store: str,
                capacity: int) -> str:  # fmt: skip
    """The generated single-node config made a cluster node's: its own port and data dir,
    then the [store] and [cluster] tables."""
    lines = []
    for line in text.splitlines():
        if line.startswith("port = "):
            line = f"port = {port}"
        elif line.startswith("data_dir = "):
            line = f'data_dir = "{data}"'
        lines.append(line)
    lines += ["", "[store]", f'url = "{store}"', "", "[cluster]", f'redis_url = "{redis}"']
    lines += [f'node_id = "{name}"', f'public_url = "http://127.0.0.1:{port}"']
    lines += [f"capacity = {capacity}"]
    return "\n".join(lines) + "\n"


def speaker_processes(
    layout: Layout, urls: tuple[str, ...], workers: int | None
) -> SpeakerProcesses:
    """The speaker processes for ``layout``, knowing every node's URL (they follow redirects
    and move on to the next server as ``loa speaker`` does)."""
    n = len(layout.speakers)
    count = workers or max(1, min(os.cpu_count() or 1, math.ceil(n / SPEAKERS_PER_WORKER)))
    configs = [
        WorkerConfig(
            url=urls[0],
            transport="udp",
            speakers=tuple((s.endpoint, s.zone, s.token) for s in layout.speakers[i::count]),
            decode_every=100,
            tone_hz={"live": LIVE_HZ},
            seed=i,
            urls=urls,
        )
        for i in range(count)
    ]
    return SpeakerProcesses(configs, connect_timeout=30.0 + n / 50)


async def _health(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with http.get(url + "/healthz") as resp:
            if resp.status == 200:
                return dict(await resp.json())
    return None


async def converge(
    http: aiohttp.ClientSession, urls: list[str], nodes: list[RelayProcess], names: list[str]
) -> dict[str, dict[str, Any]]:
    """Until every node sees all of them, one leader, and one assignment: their views."""
    deadline = time.monotonic() + CONVERGE_S
    spread_by = time.monotonic() + SPREAD_S
    views: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for node in nodes:
            node.check_alive()
        healths = [await _health(http, u) for u in urls]
        views = {n: h["cluster"] for n, h in zip(names, healths, strict=True) if h}
        if (
            len(views) == len(names)
            and all(v["nodes"] == sorted(names) for v in views.values())
            and len({v["assignment"] for v in views.values()}) == 1
            and next(iter(views.values()))["assignment"] > 0
            and sum(1 for v in views.values() if v["leader"]) == 1
            # a node that joined after the first assignment may get no commune (the leader
            # does not move communes off nodes under capacity): wait a little for one
            and (all(v["communes"] for v in views.values()) or time.monotonic() > spread_by)
        ):
            return views
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the cluster did not converge in {CONVERGE_S:g} s: {views}")


async def redis_counts(client: aioredis.Redis) -> tuple[float, int, int]:
    """(now, commands processed, PUBLISH + SPUBLISH calls)."""
    stats = await client.info("stats")
    commands = await client.info("commandstats")
    publishes = sum(
        int(commands.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("publish", "spublish")
    )
    return time.monotonic(), int(stats["total_commands_processed"]), publishes


def _latency(hists: list[dict[Any, int]], max_us: int) -> dict[str, Any]:
    hist = report.merge_hists(hists)
    return {
        "p50": report.hist_percentile(hist, 50, max_us / 1000),
        "p99": report.hist_percentile(hist, 99, max_us / 1000),
        "packets": sum(hist.values()),
    }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


async def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    n, count = args.speakers, args.nodes
    names = [f"n{i}" for i in range(count)]
    text, layout = generate_config(n, web_port=0, data_dir=root)
    redis_srv = RedisServer()  # each in a temp dir of its own, removed by close()
    pg = PostgresServer()
    try:
        redis_srv.start()
        pg.start()
        ports = [free_port() for _ in names]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        nodes = []
        for name, port in zip(names, ports, strict=True):
            cfg = root / f"{name}.toml"
            cfg.write_text(node_config(text, name=name, port=port, data=root / name,
                                       redis=redis_srv.url, store=pg.url(), capacity=n),
                           encoding="utf-8")  # fmt: skip
            nodes.append(RelayProcess(cfg, root / f"{name}.log"))
        with contextlib.ExitStack() as stack:
            # all at once, so the leader's first assignment places communes on every node
            for node in nodes:
                stack.enter_context(node)
            async with client_session() as http:
                views = await converge(http, urls, nodes, names)
                client = aioredis.Redis.from_url(redis_srv.url)
                try:
                    with speaker_processes(layout, tuple(urls), args.workers) as speakers:
                        return await _run(args, http, client, speakers, nodes, names, urls,
                                          views, layout, redis_srv)  # fmt: skip
                finally:
                    await client.aclose()
    finally:
        redis_srv.close()
        pg.close()


async def _run(
    args: argparse.Namespace, http: aiohttp.ClientSession, client: aioredis.Redis,
    speakers: SpeakerProcesses, nodes: list[RelayProcess], names: list[str], urls: list[str],
    views: dict[str, dict[str, Any]], layout: Layout, redis_srv: RedisServer,
) -> dict[str, Any]:  # fmt: skip
    t_connect = time.monotonic()
    ready = await speakers.ask(None, speakers.connect_timeout + 10)
    connect_s = round(time.monotonic() - t_connect, 2)
    api = RelayApi(http, urls[0], layout.admin_token)
    live = await api.start_broadcast("live", layout.roots, LIVE_HZ)
    await asyncio.sleep(WARMUP_S)
    await speakers.ask(("measure",), 10)
    pids = [node.pid for node in nodes]
    redis_pid = redis_srv.proc.pid if redis_srv.proc is not None else None
    before = {p: sample(p) for p in [*pids, *([redis_pid] if redis_pid else [])]}
    r0 = await redis_counts(client)
    await asyncio.sleep(args.duration)
    r1 = await redis_counts(client)
    after = {p: sample(p) for p in before}
    healths = [await _health(http, u) for u in urls]
    stopped = await speakers.ask(("stop", None, ()), 30)
    for node in nodes:
        node.check_alive()

    def proc_stats(pid: int) -> dict[str, Any]:
        a, b = before[pid], after[pid]
        if a is None or b is None:
            return {"cpu_pct": None, "rss_mb": None}
        cpu = (b.cpu_s - a.cpu_s) / (b.at - a.at) * 100
        return {"cpu_pct": round(cpu, 1), "rss_mb": round(b.rss_mb, 1)}

    per_node: dict[str, Any] = {}
    for name, url, pid, health in zip(names, urls, pids, healths, strict=True):
        hists = [s["node_hist"].get(url, {}) for s in stopped]
        view = (health or {}).get("cluster", {})
        per_node[name] = {
            **proc_stats(pid),
            "speakers": sum(s["on"].get(url, 0) for s in stopped),
            "communes": len(view.get("communes", [])),
            "leader": view.get("leader"),
            "encoding": view.get("encoding"),
            "relaying": view.get("relaying"),
            "latency_ms": _latency(hists, max(s["max_latency_us"] for s in stopped)),
        }
    max_us = max(s["max_latency_us"] for s in stopped)
    encoder = names[0]
    enc = per_node[encoder]["latency_ms"]
    others = _latency([s["node_hist"].get(u, {}) for s in stopped for u in urls[1:]], max_us)
    dt = r1[0] - r0[0]

    # failover: kill the node (not the encoding one) with the most speakers; they must hear
    # audio again through the others
    victim = max(range(1, len(nodes)), key=lambda i: (per_node[names[i]]["speakers"], i))
    watched = sum(await speakers.ask(("watch", urls[victim]), 10))
    proc = nodes[victim].proc
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    killed_us = time.time_ns() // 1000
    back = await speakers.ask(("recovered", args.failover_timeout), args.failover_timeout + 10)
    back_s = sorted((us - killed_us) / 1e6 for b in back for us in b["back_us"])
    landed: dict[str, int] = {}
    for b in back:
        for url, k in b["on"].items():
            landed[names[urls.index(url)] if url in urls else url] = (
                landed.get(names[urls.index(url)] if url in urls else url, 0) + k
            )
    await api.stop_broadcast(live["id"])
    return {
        "bench": "cluster",
        "nodes": len(nodes),
        "speakers": len(layout.speakers),
        "communes": len(layout.communes),
        "duration_s": args.duration,
        "connect_s": connect_s,
        "connected": sum(r["up"] for r in ready),
        "redirects": sum(s["redirects"] for s in stopped),
        "assignment_at_start": {n: len(v["communes"]) for n, v in views.items()},
        "per_node": per_node,
        "redis": {
            **(proc_stats(redis_pid) if redis_pid else {}),
            "commands_per_s": round((r1[1] - r0[1]) / dt, 1),
            "publish_per_s": round((r1[2] - r0[2]) / dt, 1),
        },
        "latency_ms": {
            "encoding_node": enc,
            "other_nodes": others,
            "added_p50": _diff(others["p50"], enc["p50"]),
            "added_p99": _diff(others["p99"], enc["p99"]),
        },
        # the speakers' own delay, kernel receive → handler: high means the bench starved
        "bench_lag_ms": _latency(
            [s["lag_hist"] for s in stopped], max(s["max_lag_us"] for s in stopped)
        ),
        "delivery": {
            "received": sum(s["received"] for s in stopped),
            "lost": sum(s["lost"] for s in stopped),
            "silent": sum(s["silent"] for s in stopped),
            "unstamped": sum(s["unstamped"] for s in stopped),
            "unexpected_drops": sum(s["unexpected_drops"] for s in stopped),
        },
        "failover": {
            "killed": names[victim],
            "moved": watched,
            "back": len(back_s),
            "not_back": sum(b["not_back"] for b in back),
            "landed_on": landed,
            "p50_s": report.percentile(back_s, 50),
            "all_back_s": round(back_s[-1], 3) if back_s else None,
        },
        "loadavg_1m": _loadavg(),
        "machine": report.machine_info(),
    }


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def summary(r: dict[str, Any]) -> str:
    lines = [
        f"cluster: {r['nodes']} nodes, {r['speakers']} speakers ({r['connected']} connected "
        f"in {r['connect_s']} s, {r['redirects']} redirects)"
    ]
    for name, node in r["per_node"].items():
        lat = node["latency_ms"]
        lines.append(
            f"  {name}: {node['speakers']} speakers, CPU {node['cpu_pct']} %, "
            f"RSS {node['rss_mb']} MB, latency p50 {lat['p50']} ms p99 {lat['p99']} ms"
            + (" (encodes)" if node["encoding"] else "")
        )
    lat, red, fo = r["latency_ms"], r["redis"], r["failover"]
    lines.append(f"  Redis hop adds p50 {lat['added_p50']} ms, p99 {lat['added_p99']} ms "
                 f"(the bench's own lag p99 {r['bench_lag_ms']['p99']} ms)")  # fmt: skip
    lines.append(f"  Redis: {red['commands_per_s']} commands/s, {red['publish_per_s']} "
                 f"PUBLISH/s, CPU {red.get('cpu_pct')} %")  # fmt: skip
    lines.append(f"  failover ({fo['killed']} killed): {fo['back']}/{fo['moved']} speakers "
                 f"back, all within {fo['all_back_s']} s (p50 {fo['p50_s']} s)")  # fmt: skip
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One cluster run; the nodes' logs and configs in ``args.out`` (or a temp dir, removed)."""
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(measure(args, args.out))
    else:
        with tempfile.TemporaryDirectory(prefix="loa-bench-cluster-") as tmp:
            result = asyncio.run(measure(args, Path(tmp)))
    print(summary(result), flush=True)
    return result
