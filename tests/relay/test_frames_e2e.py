"""Frame durations 20/40/60 end to end on loopback: real ``loa speaker`` processes in three
communes set (in the config) to 20, 40 (with RFC 2198 redundancy) and 60 ms packets play a
tone continuously, switch to an emergency at once and back after it; ffmpeg plays a static
RTP endpoint of a 40 ms commune from its SDP."""

from __future__ import annotations

import asyncio
import itertools
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency
from loa.config import ZoneSpec
from loa.config import with_changes as replace
from loa.relay.core.variants import Variant
from tests.conftest import need_binary, tree_config
from tests.relay.fleet import wait_for
from tests.relay.relayfix import AUTH, free_port, on_transport, tone, tone_into
from tests.web.test_clients import loa_speaker, stop

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(90)]
FRAME_MS = {"c0": 20, "c1": 40, "c2": 60}
WINDOW = 480  # 10 ms


def zones_at(config: Any) -> Any:
    """The config's communes with their packet durations (the province keeps the default);
    the 40 ms one also sends RFC 2198 redundancy (RED around 2-frame packets)."""
    zones = tuple(
        ZoneSpec(
            z.id, z.name, z.parent, frame_ms=FRAME_MS.get(z.id), redundancy=z.id == "c1" or None
        )
        for z in config.zones
    )
    return replace(config, zones=zones)


def notes(pcm: np.ndarray) -> list[float | None]:
    """The dominant frequency of each 10 ms window of ``pcm`` (None: silent)."""
    out: list[float | None] = []
    for i in range(0, pcm.size - WINDOW + 1, WINDOW):
        window = pcm[i : i + WINDOW]
        loud = float(np.sqrt(np.mean(window.astype(np.float64) ** 2))) > 300
        out.append(round(dominant_frequency(window), -2) if loud else None)
    return out


async def test_speakers_at_20_40_and_60_ms_play_continuously_and_switch_at_once(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = zones_at(tree_config(tmp_path, communes=3, per_commune=1))
    relay = await relay_factory(config)
    ids = [f"c{c}-e0" for c in range(3)]
    poles = {i: await loa_speaker(relay, f"tok-{i}", tmp_path / f"{i}.wav") for i in ids}
    try:
        await wait_for(lambda: on_transport(relay.node, ids), 20, "speakers on UDP")
        variants = {i: relay.node.endpoints[i].variant for i in ids}
        assert variants == {
            "c0-e0": Variant(1),
            "c1-e0": Variant(2, redundancy=True),  # loa speaker takes RED
            "c2-e0": Variant(3),
        }
        body = tone(500, ["p"], "scheduled")
        body["source"]["duration_s"] = 3.0
        await relay.api("POST", "/broadcasts", body, 201)
        await asyncio.sleep(2.0)
        alarm = tone(1500, ["p"], "emergency")
        alarm["source"]["duration_s"] = 1.0
        await relay.api("POST", "/broadcasts", alarm, 201)
        await wait_for(lambda: not relay.node.broadcasts, 10, "both broadcasts to end")
        await asyncio.sleep(0.6)  # the last packets through the speakers' buffers
        for proc in poles.values():
            await stop(proc)
        for pole in ids:
            status = relay.node.endpoints[pole].status
            with wave.open(str(tmp_path / f"{pole}.wav")) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            heard = [n for n in notes(pcm) if n is not None]
            # the tone, the alarm over it, the tone again (paused, not lost): each whole,
            # switched within a window or two (those hold both), nothing else heard
            clean = [n for n in heard if n in (500, 1500)]
            runs = [n for k, n in enumerate(clean) if k == 0 or clean[k - 1] != n]
            lengths = [(n, len(list(g))) for n, g in itertools.groupby(heard)]
            assert runs == [500, 1500, 500], (pole, lengths)
            assert len(heard) - len(clean) <= 4, (pole, heard)
            # all 3 s of it, but for what the pole's packer held at the preemption: up to
            # frames - 1 frames of the tone, dropped by design (2 windows of 10 ms each)
            held = 2 * (variants[pole].frames - 1)
            assert 300 - 8 - held <= clean.count(500) <= 300 + 8, (pole, lengths)
            assert clean.count(1500) == pytest.approx(100, abs=6), pole  # all 1 s of it
            assert (status["lost"], status["concealed"]) == (0, 0), (pole, status)
    finally:
        for proc in poles.values():
            await stop(proc)


async def test_ffmpeg_plays_a_40_ms_zones_static_endpoint(
    relay_factory: Any, tmp_path: Path
) -> None:
    ffmpeg = need_binary("ffmpeg")
    rtp_port = free_port()
    config = tree_config(tmp_path, communes=1, per_commune=0, rtp=(f"127.0.0.1:{rtp_port}",))
    config = replace(config, zones=(config.zones[0], ZoneSpec("c0", "Xã 0", "p", frame_ms=40)))
    relay = await relay_factory(config)
    async with relay.http.get(relay.url + "/api/v1/endpoints/rtp0/sdp", headers=AUTH) as resp:
        sdp = await resp.text()
    assert "a=ptime:40\r\n" in sdp
    (tmp_path / "rtp0.sdp").write_text(sdp)
    out = tmp_path / "out.raw"
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-nostdin", "-loglevel", "error", "-protocol_whitelist", "file,udp,rtp",
        "-i", str(tmp_path / "rtp0.sdp"), "-t", "1.5", "-f", "s16le", "-ac", "1", "-ar", "48000",
        "-y", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # ffmpeg binds its port before the first packet
    await tone_into(relay, proc, asyncio.sleep(0.5), 20)
    pcm = np.frombuffer(out.read_bytes(), dtype=np.int16)
    assert pcm.size == 72000  # the 1.5 s asked for, decoded from 40 ms packets
    played = [n for n in notes(pcm[4800:]) if n is not None]
    assert played and set(played) == {1000}  # the tone, every 10 ms of it after the start
    assert len(played) == len(notes(pcm[4800:]))  # and no silent window: continuous
