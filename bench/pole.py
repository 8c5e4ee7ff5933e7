"""The pole under test in ``bench.links``: a real speaker whose every playout slot is
recorded, run in the bench's own event loop (``LocalPole``) or as its own process inside a
network namespace (``NetnsPole``, ``--netns``), so its packets cross a veth pair and a
bridge like a pole's cross its modem, not the loopback the relay listens on.

The process is ``python -m bench.pole URL TOKEN [--no-nack]``, started with ``ip netns exec``.
It prints ``udp`` once its audio is on UDP, ``heard <t>`` at the first frame it plays (t on
the monotonic clock, which every process and namespace of the machine shares), and, once
its standard input closes, one JSON line: every slot it played since, and its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from bench.netns import Member
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

TOKEN = "tok-pole"


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


@dataclass
class Played:
    """What a pole played from its first frame on, and its buffer's counters then."""

    frames: list[tuple[float, str]]
    skipped: int  # frames the buffer skipped to get shallower, from the first frame on
    nacked: int
    late: int
    target_ms: float


def speaker(url: str, token: str, *, nack: bool) -> Speaker:
    return Speaker(
        url, token, NullOutput(), status_interval_s=1.0, backoff_min_s=0.2, backoff_max_s=1.0,
        nack=nack,
    )  # fmt: skip


async def until(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class LocalPole:
    """The speaker in this event loop; owned by one scenario run."""

    def __init__(self, *, nack: bool, token: str = TOKEN) -> None:
        self.nack = nack
        self.token = token
        self.heard = Heard()
        self._speaker: Speaker | None = None
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0

    async def start(self, url: str) -> None:
        self._speaker = speaker(url, self.token, nack=self.nack)
        self.heard.watch(self._speaker.jitter)
        self._task = asyncio.create_task(self._speaker.run())

    async def on_udp(self, timeout: float) -> None:
        s = self._speaker
        assert s is not None
        await until(lambda: s.state.value == "udp", timeout, "the speaker on UDP")

    async def first_heard(self, timeout: float) -> float:
        await until(lambda: bool(self.heard.frames), timeout, "the first frame heard")
        assert self._speaker is not None
        self._dropped = self._speaker.jitter.dropped
        return self.heard.frames[0][0]

    async def stop(self) -> Played:
        s, task = self._speaker, self._task
        assert s is not None and task is not None
        s.stop()
        await asyncio.wait_for(task, 10)
        jb = s.jitter
        return Played(
            self.heard.frames, jb.dropped - self._dropped, jb.nacked, jb.late, jb.target_ms
        )


class NetnsPole:
    """``python -m bench.pole`` in ``member``'s namespace; owned by one scenario run."""

    def __init__(self, member: Member, *, nack: bool) -> None:
        self.member = member
        self.nack = nack
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, url: str) -> None:
        args = [
            sys.executable,
            "-m",
            "bench.pole",
            url,
            TOKEN,
            *(() if self.nack else ("--no-nack",)),
        ]
        self._proc = await asyncio.create_subprocess_exec(
            *self.member.exec_prefix(), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def _line(self, timeout: float, what: str) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out waiting for {what}") from None
        if not line:
            raise RuntimeError(f"the pole process ended before {what} ({self._proc.returncode})")
        return line.decode().strip()

    async def on_udp(self, timeout: float) -> None:
        if (got := await self._line(timeout, "the speaker on UDP")) != "udp":
            raise RuntimeError(f"the pole process said {got!r}, expected 'udp'")

    async def first_heard(self, timeout: float) -> float:
        word, _, at = (await self._line(timeout, "the first frame heard")).partition(" ")
        if word != "heard":
            raise RuntimeError(f"the pole process said {word!r}, expected 'heard <t>'")
        return float(at)

    async def stop(self) -> Played:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.close()
        try:
            result = json.loads(await self._line(15, "its report"))
            await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        frames = [(t, kind) for t, kind in result.pop("frames")]
        return Played(frames, **result)


async def _serve(url: str, token: str, nack: bool) -> None:
    """The process side: play until stdin closes, saying when on UDP and first heard."""
    pole = LocalPole(nack=nack, token=token)
    await pole.start(url)
    await pole.on_udp(15)
    print("udp", flush=True)
    at = await pole.first_heard(30)
    print(f"heard {at!r}", flush=True)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(Exception):
        await loop.run_in_executor(None, sys.stdin.read)
    played = await pole.stop()
    frames = [(t, kind) for t, kind in played.frames if t >= at]
    report = {
        "frames": frames, "skipped": played.skipped, "nacked": played.nacked,
        "late": played.late, "target_ms": played.target_ms,
    }  # fmt: skip
    print(json.dumps(report), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pole", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--no-nack", action="store_true", help="ask for nothing again")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.url, args.token, not args.no_nack))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
