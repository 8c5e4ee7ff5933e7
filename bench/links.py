"""`python -m bench.links`: one pole on a bad link, per scenario, and what it heard.

Each scenario starts a real relay (the web app and its node, on loopback), one real
`loa speaker` (``loa.speaker.client.Speaker``, in the same event loop, playing to nowhere)
whose UDP goes through an impairing link (``bench.impair``: loss, Gilbert–Elliott bursts,
delay with jitter, reordering, a dead path, a NAT rebinding), plays a 1 kHz tone to it for
``--seconds`` and classifies every 20 ms slot of playout from the first frame heard:

- ``sent``: played as sent; ``retx``: played after a NACK got it sent again; ``red``:
  played from the next packet's redundant copy (RFC 2198); ``fec``: rebuilt from the next
  packet's in-band FEC; ``concealed``: PLC for a lost frame (or the fade after an
  underrun); ``inserted``: PLC inserted to deepen the buffer (no frame lost); ``silent``:
  nothing played; ``skipped`` (not a slot): frames the buffer skipped to get shallower;
- a *dropout* is a run of slots that are neither sent, retx, red nor fec; ``longest_ms`` is
  the longest; ``recovery_s``, for the scenarios that break the path mid-stream, is the time
  from the break to the first frame heard again;
- ``mb_month``: what the pole's link carries both ways (IP and UDP headers included,
  retransmissions, redundancy, NACKs, reports and keepalives too) for a month of such play.

Each scenario runs in one or more *modes*: ``none`` (no NACK, no redundancy: the code
before issue 15), ``nack`` (RFC 4585 retransmission), ``red`` (the pole's zone sends RFC
2198 redundancy, no NACK), ``nack+red`` (both). Prints a table (Markdown) and, last, one
JSON line. Every run is bounded by timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bench.impair import ImpairingLink, Impairment
from bench.netns import Bridge, Member, skip_reason
from bench.pole import TOKEN, LocalPole, NetnsPole, Played
from loa.config import Config, EndpointSpec, RelayConfig, WebConfig, ZoneSpec
from loa.web.app import create_app
from loa.web.keys import NODE

ADMIN = "bench-links-admin"
MONTH_S = 30 * 86400
AUDIBLE = ("sent", "retx", "red", "fec")
KINDS = ("sent", "retx", "red", "fec", "concealed", "inserted", "silent")
MODES = ("none", "nack", "red", "nack+red")


@dataclass
class Scenario:
    name: str
    down: Callable[[], Impairment] = Impairment
    up: Callable[[], Impairment] = Impairment
    # (seconds into the broadcast, what to do to the link) for path failures
    event: tuple[float, str] | None = None


def _jitter(delay: float, jitter: float, loss: float = 0.0, reorder: float = 0.0) -> Impairment:
    return Impairment(loss=loss, delay_ms=delay, jitter_ms=jitter, reorder=reorder)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clean"),
    Scenario("2 % loss", lambda: Impairment(loss=0.02), lambda: Impairment(loss=0.02)),
    Scenario("5 % loss", lambda: Impairment(loss=0.05), lambda: Impairment(loss=0.05)),
    Scenario("10 % loss", lambda: Impairment(loss=0.10), lambda: Impairment(loss=0.10)),
    Scenario(
        "Gilbert–Elliott bursts",  # ~1.7 % of packets in bursts of mean 3 (60 ms), at most ~5
        lambda: Impairment(burst=(0.006, 0.33, 1.0)),
        lambda: Impairment(loss=0.01),
    ),
    Scenario("60 ± 40 ms jitter", lambda: _jitter(60, 40), lambda: _jitter(60, 40)),
    Scenario(
        "4G: 40 ± 20 ms, 5 % loss, 2 % reorder",
        lambda: _jitter(40, 20, 0.05, 0.02),
        lambda: _jitter(40, 20, 0.05, 0.02),
    ),
    Scenario("UDP dies mid-stream", event=(0.4, "blackhole")),
    Scenario("NAT rebinding", event=(0.4, "rebind")),
)


def classify(frames: list[tuple[float, str]], start: float, end: float) -> list[str]:
    """The slots' kinds from ``start`` to ``end``."""
    return [kind for t, kind in frames if start <= t <= end]


def recovery_s(frames: list[tuple[float, str]], broke_at: float) -> float | None:
    """From the break to the first slot heard after the longest run not heard that began
    after it (the audio buffered before the break plays on first); None if never back."""
    best = back = 0.0
    run = 0
    for t, kind in frames:
        if t < broke_at:
            continue
        if kind not in AUDIBLE:
            run += 1
        elif run:
            if run > best:
                best, back = run, t - broke_at
            run = 0
    if run:
        return None if run > best else round(back, 2)
    return round(back, 2)


def dropouts(slots: list[str]) -> list[int]:
    """Lengths (in slots) of the runs of slots not heard as sent, resent or rebuilt."""
    runs, run = [], 0
    for kind in slots:
        if kind in AUDIBLE:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    if run:
        runs.append(run)
    return runs


def _config(data_dir: Path, host: str, link_port: int, *, redundancy: bool = False) -> Config:
    return Config(
        web=WebConfig(host=host, port=0),
        relay=RelayConfig(
            udp_host=host,
            udp_port=0,
            public_udp_port=link_port,
            keepalive_s=10.0,  # the defaults: a rebinding is not followed by luck
            session_timeout_s=35.0,
            chime=False,
        ),
        data_dir=data_dir,
        admin_token=ADMIN,
        zones=(ZoneSpec("p", "Tỉnh"), ZoneSpec("x", "Xã", parent="p", redundancy=redundancy)),
        endpoints=(EndpointSpec("pole", "Loa", "x", token=TOKEN),),
    )


async def broadcast_tone(server: TestServer, admin: str = ADMIN) -> None:
    """A live 1 kHz tone, no chime, to zone ``x`` of ``server``; raises if refused."""
    body = {
        "source": {"type": "tone", "freq_hz": 1000},
        "targets": {"zones": ["x"]},
        "class": "live",
        "chime": False,
    }
    headers = {"Authorization": f"Bearer {admin}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(str(server.make_url("/api/v1/broadcasts")), json=body, headers=headers) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(f"broadcast refused: {resp.status} {await resp.text()}")


async def run_scenario(
    sc: Scenario, seconds: float, *, mode: str = "nack", netns: Member | None = None
) -> dict[str, Any]:
    """One scenario: a relay, the impairing link and one pole, in this process or (given
    ``netns``, a namespace on the bridge whose address the relay listens on) its own."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    nack, red = "nack" in mode, "red" in mode
    host = "127.0.0.1" if netns is None else netns.gateway
    link = ImpairingLink(down=sc.down(), up=sc.up(), seed=15, host=host)
    pole = LocalPole(nack=nack) if netns is None else NetnsPole(netns, nack=nack)
    loop = asyncio.get_running_loop()
    played: Played | None = None
    with tempfile.TemporaryDirectory(prefix="loa-links-") as tmp:
        config = _config(Path(tmp), host, link.bind(), redundancy=red)
        server = TestServer(create_app(config), host=host)
        await server.start_server()
        link.start((host, server.app[NODE].udp_port))
        try:
            await pole.start(str(server.make_url("")))
            await pole.on_udp(15)
            await broadcast_tone(server)
            start = await pole.first_heard(10)
            before = sum(c.bytes for c in link.counts.values())
            broke_at = None
            if sc.event is not None:
                at, what = sc.event
                await asyncio.sleep(max(0.0, start + at * seconds - loop.time()))
                broke_at = loop.time()
                if what == "blackhole":
                    link.blackhole = True
                else:
                    link.rebind()
            await asyncio.sleep(max(0.0, start + seconds - loop.time()))
            end = loop.time()
            moved = sum(c.bytes for c in link.counts.values()) - before
        finally:
            try:
                played = await pole.stop()
            finally:
                link.close()
                await server.close()
    slots = classify(played.frames, start, end)
    runs = dropouts(slots)
    counts = {k: slots.count(k) for k in KINDS}
    n = max(1, len(slots))
    recovery = None if broke_at is None else recovery_s(played.frames, broke_at)
    return {
        "scenario": sc.name,
        "mode": mode,
        "netns": netns is not None,
        "slots": len(slots),
        **counts,
        "heard_pct": round(100.0 * sum(counts[k] for k in AUDIBLE) / n, 2),
        "dropouts": len(runs),
        "longest_ms": max(runs, default=0) * 20,
        "recovery_s": recovery,
        "mb_month": round(moved / (end - start) * MONTH_S / 1e6),
        "skipped": played.skipped,
        "nacked": played.nacked,
        "late": played.late,
        "target_ms": round(played.target_ms),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| link | repair | heard % | as sent | retransmitted | redundancy | FEC | concealed "
        "| inserted | silent | skipped | dropouts | longest | recovery | MB/pole/month |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        rec = "—" if r["recovery_s"] is None else f"{r['recovery_s']} s"
        lines.append(
            f"| {r['scenario']} | {r['mode']} | {r['heard_pct']} "
            f"| {r['sent']} | {r['retx']} | {r['red']} | {r['fec']} | {r['concealed']} "
            f"| {r['inserted']} | {r['silent']} | {r['skipped']} "
            f"| {r['dropouts']} | {r['longest_ms']} ms | {rec} | {r['mb_month']} |"
        )
    return "\n".join(lines)


async def run(
    names: Sequence[str], seconds: float, modes: Sequence[str], *, netns: bool = False
) -> list[dict[str, Any]]:
    """The scenarios whose names start with one of ``names`` (all if none), in each mode;
    with ``netns`` the pole runs in a network namespace, removed whatever happens."""
    bridge = Bridge() if netns else None
    try:
        member = bridge.start().add("pole") if bridge is not None else None
        rows = []
        for sc in SCENARIOS:
            if names and not any(sc.name.lower().startswith(n.lower()) for n in names):
                continue
            for mode in modes:
                run = run_scenario(sc, seconds, mode=mode, netns=member)
                rows.append(await asyncio.wait_for(run, seconds + 60))
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        return rows
    finally:
        if bridge is not None:
            bridge.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.links", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario (20)")
    parser.add_argument("--only", nargs="*", default=[], help="scenarios whose name starts so")
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=["nack"], help="repairs to try (nack)"
    )
    parser.add_argument("--compare", action="store_true", help="every mode, for each scenario")
    parser.add_argument(
        "--netns", action="store_true", help="the pole in a network namespace (root, iproute2)"
    )
    args = parser.parse_args(argv)
    if args.netns and (why := skip_reason()) is not None:
        parser.error(f"--netns: {why}")
    # SIGTERM ends the run like Ctrl+C: the finally clauses remove the namespace and bridge
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    modes = MODES if args.compare else args.modes
    rows = asyncio.run(run(args.only, args.seconds, modes, netns=args.netns))
    print(table(rows))
    print(json.dumps(rows, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
