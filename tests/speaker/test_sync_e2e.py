"""Synchronised playout end to end: real relay, real speakers, one on a clock seconds off.

In process (the injectable clock): each speaker reports when every frame's first sample is
heard on its own clock; mapped back to the host's clock, two speakers agree, and both play
each frame at its capture time + D. Then the same with two ``loa speaker`` processes writing
WAV files and their timestamps (``--timestamps``), one started with ``--clock-offset-s``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency
from loa.speaker.client import Speaker
from loa.speaker.clock import HostClock, SkewedClock
from loa.speaker.output import NullOutput
from loa.speaker.playout import Played
from tests.conftest import tree_config
from tests.relay.fleet import wait_for
from tests.relay.relayfix import AUTH, on_transport, tone

pytestmark = pytest.mark.e2e


async def test_two_speakers_one_on_a_wrong_clock_play_each_frame_together_at_capture_plus_d(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=1, per_commune=2)
    relay = await relay_factory(config)
    loop = asyncio.get_running_loop()
    clocks = [HostClock(loop.time), SkewedClock(loop.time, offset_s=2.5, drift_ppm=100.0)]
    played = [Played(c.to_host) for c in clocks]
    speakers = [
        Speaker(
            relay.url,
            e.token,
            NullOutput(),
            clock=c,
            on_audio=lambda _pcm, meta, p=p: p.add(meta.captured_at, meta.heard_at),
            status_interval_s=0.5,
        )
        for e, c, p in zip(config.endpoints, clocks, played, strict=True)
    ]
    tasks = [asyncio.create_task(s.run()) for s in speakers]
    try:
        ids = [e.id for e in config.endpoints]
        await wait_for(lambda: on_transport(relay.node, ids), 15, "2 speakers on UDP")
        await wait_for(lambda: all(len(s.estimator) >= 16 for s in speakers), 10, "probes")
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        await asyncio.sleep(4.0)
        status = relay.node.endpoints[ids[1]].status
        async with relay.http.get(relay.url + "/metrics", headers=AUTH) as resp:
            metrics = await resp.text()
    finally:
        for s in speakers:
            s.stop()
        await asyncio.gather(*tasks)
    for ep_id in ids:  # each pole's playout error from its status, in seconds
        line = next(
            x
            for x in metrics.splitlines()
            if x.startswith(f'loa_pole_playout_error_seconds{{endpoint="{ep_id}"}}')
        )
        assert abs(float(line.split()[-1])) < 0.01
    wall_minus_host = time.time() - loop.time()
    common = sorted(set(played[0].frames) & set(played[1].frames))
    assert len(common) > 100, len(common)
    skew = [abs(played[0].frames[c] - played[1].frames[c]) for c in common]
    assert max(skew) < 0.005, max(skew)
    d = relay.node.config.relay.playout_delay_ms / 1000
    for p in played:
        late = [p.frames[c] + wall_minus_host - (c + d) for c in common]
        assert abs(float(np.median(late))) < 0.005, np.median(late)
    # each estimated the server's clock against its own: the skewed one is 2.5 s + 100 ppm ahead
    right, wrong = (s.estimator.estimate for s in speakers)
    assert right is not None and wrong is not None
    host = loop.time()
    ahead = clocks[1].now() - host
    assert wrong.to_server(clocks[1].now()) - right.to_server(host) == pytest.approx(0, abs=0.005)
    assert right.offset - wrong.offset == pytest.approx(ahead, abs=0.005)
    assert status["synced"] is True and abs(status["playout_error_ms"]) < 10
    assert status["clock_rtt_ms"] < 50


async def pole(url: str, token: str, out: Path, *clock: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loa", "speaker", "--server", url, "--token", token,
        "--wav", str(out.with_suffix(".wav")), "--timestamps", str(out.with_suffix(".jsonl")),
        "--status-interval", "0.5", *clock,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def heard(path: Path) -> dict[float, float]:
    lines = path.read_text().splitlines()
    return {round(r["captured"], 4): r["heard"] for r in map(json.loads, lines)}


async def test_two_loa_speaker_processes_one_seconds_off_play_in_step(
    relay_factory: Any, tmp_path: Path
) -> None:
    """Two poles as processes: one on the host's clock, one 3.75 s ahead running 90 ppm
    fast. Every frame both played is heard within 5 ms on both (the host's monotonic clock,
    shared by the processes), and at its capture time + D."""
    config = tree_config(tmp_path, communes=1, per_commune=2)
    relay = await relay_factory(config)
    a, b = config.endpoints
    procs = [
        await pole(relay.url, a.token or "", tmp_path / "a"),
        await pole(
            relay.url,
            b.token or "",
            tmp_path / "b",
            "--clock-offset-s",
            "3.75",
            "--clock-drift-ppm",
            "90",
        ),
    ]
    try:
        await wait_for(lambda: on_transport(relay.node, [a.id, b.id]), 20, "2 poles on UDP")
        await asyncio.sleep(2.0)  # the probes' burst
        await relay.api("POST", "/broadcasts", tone(700, ["c0"], "live"), 201)
        await asyncio.sleep(4.0)
        status = relay.node.endpoints[b.id].status
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        outcomes = [await asyncio.wait_for(p.communicate(), 20) for p in procs]
    for proc, (_, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    wall_minus_host = time.time() - time.monotonic()
    first, second = heard(tmp_path / "a.jsonl"), heard(tmp_path / "b.jsonl")
    common = sorted(set(first) & set(second))
    assert len(common) > 100, (len(first), len(second))
    skew = np.array([first[c] - second[c] for c in common])
    assert np.max(np.abs(skew)) < 0.005, (np.median(skew), np.max(np.abs(skew)))
    d = relay.node.config.relay.playout_delay_ms / 1000
    late = np.array([first[c] + wall_minus_host - (c + d) for c in common])
    assert abs(float(np.median(late))) < 0.005
    assert status["synced"] is True and abs(status["playout_error_ms"]) < 10
    for name in ("a", "b"):
        with wave.open(str(tmp_path / f"{name}.wav")) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert dominant_frequency(pcm[-24000:]) == pytest.approx(700, rel=0.01)
