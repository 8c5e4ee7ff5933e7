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
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bench.impair import ImpairingLink, Impairment
from loa.config import Config, EndpointSpec, RelayConfig, WebConfig, ZoneSpec
from loa.speaker.client import Speaker
from loa.speaker.jitter import (
    Conceal,
    JitterBuffer,
    Play,
    PlayoutItem,
    Recover,
    Stretch,
)
from loa.speaker.output import NullOutput
from loa.web.app import NODE, create_app

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


def kind_of(item: PlayoutItem) -> str:
    match item:
        case Play(retransmitted=again, redundant=copy):
            return "retx" if again else "red" if copy else "sent"
        case Recover():
            return "fec"
        case Conceal():
            return "concealed"
        case Stretch():
            return "inserted"
    return "silent"


@dataclass
class Heard:
    """Every playout slot of the speaker: (loop time, kind), from its jitter buffer's answers
    (one a slot, so a stalled event loop does not read as silence)."""

    frames: list[tuple[float, str]] = field(default_factory=list)

    def watch(self, jitter: JitterBuffer) -> None:
        pop = jitter.pop

        def recorded(now: float) -> PlayoutItem:
            item = pop(now)
            kind = kind_of(item)
            if kind != "silent" or self.frames:
                self.frames.append((now, kind))
            return item

        jitter.pop = recorded  # type: ignore[method-assign]


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


def _config(data_dir: Path, link_port: int, *, redundancy: bool = False) -> Config:
    return Config(
        web=WebConfig(host="127.0.0.1", port=0),
        relay=RelayConfig(
            udp_host="127.0.0.1",
            udp_port=0,
            public_udp_port=link_port,
            keepalive_s=10.0,  # the defaults: a rebinding is not followed by luck
            session_timeout_s=35.0,
            chime=False,
        ),
        data_dir=data_dir,
        admin_token=ADMIN,
        zones=(ZoneSpec("p", "Tỉnh"), ZoneSpec("x", "Xã", parent="p", redundancy=redundancy)),
        endpoints=(EndpointSpec("pole", "Loa", "x", token="tok-pole"),),
    )


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def run_scenario(sc: Scenario, seconds: float, *, mode: str = "nack") -> dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    nack, red = "nack" in mode, "red" in mode
    link = ImpairingLink(down=sc.down(), up=sc.up(), seed=15)
    with tempfile.TemporaryDirectory(prefix="loa-links-") as tmp:
        config = _config(Path(tmp), link.bind(), redundancy=red)
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        node = server.app[NODE]
        link.start(("127.0.0.1", node.udp_port))
        heard = Heard()
        speaker = Speaker(
            str(server.make_url("")),
            "tok-pole",
            NullOutput(),
            status_interval_s=1.0,
            backoff_min_s=0.2,
            backoff_max_s=1.0,
            nack=nack,
        )
        heard.watch(speaker.jitter)
        task = asyncio.create_task(speaker.run())
        loop = asyncio.get_running_loop()
        try:
            await _until(lambda: speaker.state.value == "udp", 15, "the speaker on UDP")
            async with aiohttp.ClientSession() as http:
                body = {
                    "source": {"type": "tone", "freq_hz": 1000},
                    "targets": {"zones": ["x"]},
                    "class": "live",
                    "chime": False,
                }
                headers = {"Authorization": f"Bearer {ADMIN}"}
                url = str(server.make_url("/api/v1/broadcasts"))
                async with http.post(url, json=body, headers=headers) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"broadcast refused: {resp.status} {await resp.text()}")
            await _until(lambda: bool(heard.frames), 10, "the first frame heard")
            start = heard.frames[0][0]
            before = {w: (c.bytes, c.forwarded) for w, c in link.counts.items()}
            dropped_before = speaker.jitter.dropped
            broke_at = None
            if sc.event is not None:
                at, what = sc.event
                await asyncio.sleep(at * seconds)
                broke_at = loop.time()
                if what == "blackhole":
                    link.blackhole = True
                else:
                    link.rebind()
            await asyncio.sleep(max(0.0, start + seconds - loop.time()))
            end = loop.time()
        finally:
            speaker.stop()
            try:
                await asyncio.wait_for(task, 10)
            finally:
                link.close()
                await server.close()
    slots = classify(heard.frames, start, end)
    runs = dropouts(slots)
    counts = {k: slots.count(k) for k in KINDS}
    n = max(1, len(slots))
    moved = sum(c.bytes - before[w][0] for w, c in link.counts.items())
    recovery = None if broke_at is None else recovery_s(heard.frames, broke_at)
    return {
        "scenario": sc.name,
        "mode": mode,
        "slots": len(slots),
        **counts,
        "heard_pct": round(100.0 * sum(counts[k] for k in AUDIBLE) / n, 2),
        "dropouts": len(runs),
        "longest_ms": max(runs, default=0) * 20,
        "recovery_s": recovery,
        "mb_month": round(moved / (end - start) * MONTH_S / 1e6),
        "skipped": speaker.jitter.dropped - dropped_before,
        "nacked": speaker.jitter.nacked,
        "late": speaker.jitter.late,
        "target_ms": round(speaker.jitter.target_ms),
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


async def run(names: Sequence[str], seconds: float, modes: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for sc in SCENARIOS:
        if names and not any(sc.name.lower().startswith(n.lower()) for n in names):
            continue
        for mode in modes:
            rows.append(await asyncio.wait_for(run_scenario(sc, seconds, mode=mode), seconds + 60))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.links", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario (20)")
    parser.add_argument("--only", nargs="*", default=[], help="scenarios whose name starts so")
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=["nack"], help="repairs to try (nack)"
    )
    parser.add_argument("--compare", action="store_true", help="every mode, for each scenario")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.only, args.seconds, MODES if args.compare else args.modes))
    print(table(rows))
    print(json.dumps(rows, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
