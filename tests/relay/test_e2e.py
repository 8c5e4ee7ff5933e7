"""End to end on loopback: a real server, 50 real speakers, programmes and an emergency."""

from __future__ import annotations

import asyncio
import math
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import AUTH, on_transport, tone

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def write_steps(path: Path, freqs: list[float], step_s: float) -> None:
    """A WAV whose frequency changes every ``step_s``: where it resumes tells where it paused."""
    parts = []
    for f in freqs:
        t = np.arange(int(48000 * step_s)) / 48000
        parts.append(np.sin(2 * math.pi * f * t) * 12000)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.concatenate(parts).astype(np.int16).tobytes())


async def test_fifty_speakers_programme_emergency_and_resume(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=5, per_commune=10)
    relay = await relay_factory(config)
    ids = [e.id for e in config.endpoints]
    fleet = Fleet(relay.url, [(e.id, e.token) for e in config.endpoints])
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ids), 15, "50 speakers on UDP")

        # A tone programme to the whole province reaches everyone.
        t0 = time.monotonic()
        prog = (await relay.api("POST", "/broadcasts", tone(1000, ["p"], "scheduled"), 201))["id"]
        await asyncio.sleep(1.2)
        for ep_id in ids:
            assert fleet.heard[ep_id].frequency(t0, prog) == pytest.approx(1000, rel=0.01), ep_id

        # A file programme to commune c2 only, at a class that takes c2 from the programme.
        media = tmp_path / "steps.wav"
        write_steps(media, [400, 600, 800, 1200, 1500, 1800], 1.0)
        async with relay.http.post(
            relay.url + "/api/v1/media?filename=steps.wav", data=media.read_bytes(), headers=AUTH
        ) as resp:
            media_id = (await resp.json())["id"]
        file_id = await relay.api(
            "POST",
            "/broadcasts",
            {
                "source": {"type": "media", "id": media_id},
                "targets": {"zones": ["c2"]},
                "class": "live",
            },
            201,
        )
        file_id = file_id["id"]
        c1 = [i for i in ids if i.startswith("c1-")]
        c2 = [i for i in ids if i.startswith("c2-")]
        await asyncio.sleep(1.15)  # into the second step (600 Hz), with room: see below

        # An emergency to communes c1 and c2 takes exactly their speakers.
        t_em = time.monotonic()
        em = await relay.api("POST", "/broadcasts", tone(700, ["c1", "c2"], "emergency"), 201)
        em_id = em["id"]
        assert em["listeners"] == sorted(c1 + c2)  # all at the next frame, by the router
        file_bc = relay.node.broadcasts[file_id]
        assert relay.node.router.listeners(file_id) == ()
        await asyncio.sleep(0.1)
        paused_frames = file_bc.frames
        await asyncio.sleep(1.2)
        assert file_bc.frames == paused_frames, "a paused file must not be read"
        for ep_id in ids:
            heard = fleet.heard[ep_id]
            if ep_id in c1 or ep_id in c2:
                assert heard.frequency(t_em, em_id) == pytest.approx(700, rel=0.01), ep_id
                assert heard.volumes(t_em + 0.3, em_id) == {100}, ep_id  # emergency volume
            else:
                assert heard.frequency(t_em, prog) == pytest.approx(1000, rel=0.01), ep_id

        # The emergency ends: c1 rejoins the programme and c2 the file, at the next frame.
        t_end = time.monotonic()
        await relay.api("DELETE", f"/broadcasts/{em_id}")
        router = relay.node.router
        assert all(router.holder(i) == prog for i in c1)
        assert all(router.holder(i) == file_id for i in c2)
        # the switch is on the wire at the next frame and heard D later, in step on every pole
        await asyncio.sleep(0.6 + relay.node.config.relay.playout_delay_ms / 1000)
        assert file_bc.frames > paused_frames
        for ep_id in c1:
            assert fleet.heard[ep_id].frequency(t_end, prog) == pytest.approx(1000, rel=0.01)
            assert fleet.heard[ep_id].volumes(t_end + 0.3, prog) == {80}  # volume restored
        for ep_id in c2:
            # It paused in the 600 Hz second and resumes there, not in a later step.
            heard = fleet.heard[ep_id].frequency(t_end, file_id, frames=10)
            assert heard == pytest.approx(600, rel=0.01), ep_id

        await relay.api("DELETE", f"/broadcasts/{file_id}")
        await relay.api("DELETE", f"/broadcasts/{prog}")
        log = {e["id"]: e for e in (await relay.api("GET", "/log"))["entries"]}
        assert log[em_id]["state"] == "stopped" and log[em_id]["class"] == "emergency"
        assert sorted(log[em_id]["heard_s"]) == sorted(c1 + c2)
        assert all(1.0 < s < 2.5 for s in log[em_id]["heard_s"].values())
        assert sorted(log[prog]["heard_s"]) == sorted(ids)
        assert log[prog]["preemptions"] == len(c1) + len(c2)
        assert sorted(log[file_id]["heard_s"]) == sorted(c2)
        assert log[file_id]["endpoints_heard"] == len(c2)
    finally:
        await fleet.close()
