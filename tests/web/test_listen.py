"""The HTTP Ogg/Opus listen mount: paging, queueing and silence in memory; auth, zones, ffmpeg
decoding a broadcast, and a slow reader that stalls nobody, against a real server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.opus import SILENCE_PACKET, OpusDecoder
from loa.codecs.pcm import dominant_frequency, rms_dbfs
from loa.codecs.rtp import RtpPacket
from loa.web.listen import Listener, listen_token
from loa.web.views import broadcast_json
from tests.conftest import ADMIN, need_binary, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport, tone
from tests.support.ogg import OggOpusReader

SILENCE = SILENCE_PACKET


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def listener_at(now: float, **kw: Any) -> tuple[Listener, Clock]:
    clock = Clock(now)
    return Listener("c0", now, clock, **kw), clock


def rtp(payload: bytes, seq: int = 0, **extra: Any) -> bytes:
    return bytes(RtpPacket(111, seq, seq * 960, 0x1234, payload, **extra))


def packets_of(data: bytes) -> tuple[OggOpusReader, list[bytes]]:
    reader = OggOpusReader()
    packets = reader.feed(data)
    return reader, packets


# -- the listener, in memory ----------------------------------------------------------------


def test_silence_packet_decodes_to_twenty_ms_of_digital_silence() -> None:
    pcm = OpusDecoder().decode(SILENCE)
    assert pcm.shape == (960,)
    assert not pcm.any()


def test_pages_carry_the_opus_payloads_in_one_ogg_opus_stream() -> None:
    listener, _ = listener_at(0.0)
    for i in range(4):
        listener.sink.push(rtp(bytes([0x78, i]), i))
    data = listener.writer.header_pages() + listener.pages(now=0.08)
    reader, packets = packets_of(data)
    assert packets == [bytes([0x78, i]) for i in range(4)]
    assert reader.head is not None and reader.head.channels == 1
    assert reader.tags is not None and reader.tags.comments == ("ZONE=c0",)
    assert reader.granule == 4 * 960 and reader.lost_pages == 0
    assert (listener.packets, listener.silence) == (4, 0)


def test_a_slow_listener_loses_the_oldest_audio_and_the_pages_stay_gapless() -> None:
    listener, clock = listener_at(0.0, max_age_s=0.11)
    for i in range(8):
        clock.now = 0.02 * i  # the listener's task does not run: its audio ages
        listener.sink.push(rtp(bytes([0x78, i]), i))
    clock.now = 0.16
    reader, packets = packets_of(listener.writer.header_pages() + listener.pages(now=clock.now))
    assert packets == [bytes([0x78, i]) for i in (3, 4, 5, 6, 7)]
    assert listener.sink.dropped == 3
    assert reader.lost_pages == 0 and reader.granule == 5 * 960


def test_silence_fills_to_real_time_only_when_behind() -> None:
    listener, _ = listener_at(10.0)
    assert listener.pages(now=10.06) == b""  # 3 frames behind: not yet
    reader, packets = packets_of(listener.writer.header_pages() + listener.pages(now=10.2))
    assert packets == [SILENCE] * 9  # 10 frames due, one left as slack
    # Live audio arriving on time adds no silence and comes out at once, in order.
    for i in range(20):
        listener.sink.push(rtp(bytes([0x78, i]), i))
        assert reader.feed(listener.pages(now=10.2 + 0.02 * (i + 1))) == [bytes([0x78, i])]
    assert (listener.silence, listener.packets) == (9, 20)
    assert reader.lost_pages == 0 and reader.granule == 29 * 960


def test_a_long_stall_restarts_the_clock_instead_of_flooding_silence() -> None:
    listener, _ = listener_at(0.0)
    assert listener.pages(now=5.0) == b""
    assert (listener.resyncs, listener.silence) == (1, 0)
    listener.pages(now=5.1)
    assert listener.silence == 4  # 5 frames since the resync, one left as slack


def test_listen_tokens_are_per_zone_and_not_the_admin_token() -> None:
    tokens = {listen_token(ADMIN, z) for z in ("p", "c0", "c1")}
    assert len(tokens) == 3 and ADMIN not in tokens
    assert listen_token(ADMIN, "c0") == listen_token(ADMIN, "c0")
    assert listen_token("other-admin", "c0") != listen_token(ADMIN, "c0")


# -- against a real server --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/listen/c0.ogg", {}, 401, "unauthorized"),
        ("/listen/c0.ogg?token=nope", {}, 401, "unauthorized"),
        (f"/listen/c0.ogg?token={listen_token(ADMIN, 'c1')}", {}, 401, "unauthorized"),
        ("/listen/c0.ogg", {"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ("/listen/atlantis.ogg", {"Authorization": f"Bearer {ADMIN}"}, 404, "not_found"),
        ("/listen/atlantis.ogg?token=x", {}, 401, "unauthorized"),  # zones are not revealed
    ],
)
async def test_refused_listeners_get_a_json_error(
    relay_factory: Any, tmp_path: Path, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    relay = await relay_factory(tree_config(tmp_path))
    async with relay.http.get(relay.url + path, headers=headers) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == code
        if status == 401:
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="loa"'
    assert not [e for e in relay.node.endpoints.values() if e.listener]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["admin-bearer", "zone-query"])
async def test_an_idle_zone_streams_ogg_silence_and_leaving_detaches(
    relay_factory: Any, tmp_path: Path, how: str
) -> None:
    relay = await relay_factory(tree_config(tmp_path))
    if how == "admin-bearer":
        url, headers = relay.url + "/listen/c1.ogg", {"Authorization": f"Bearer {ADMIN}"}
    else:
        url, headers = relay.url + f"/listen/c1.ogg?token={listen_token(ADMIN, 'c1')}", {}
    reader = OggOpusReader()
    packets: list[bytes] = []
    async with relay.http.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/ogg"
        assert resp.headers["Transfer-Encoding"] == "chunked"
        listeners = [e for e in relay.node.endpoints.values() if e.listener]
        assert [e.spec.zone for e in listeners] == ["c1"]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:
            packets += reader.feed(await resp.content.readany())
    assert reader.tags is not None and reader.tags.comments == ("ZONE=c1",)
    assert 20 <= len(packets) <= 36 and set(packets) == {SILENCE}  # ~30 frames in 0.6 s
    await wait_for(
        lambda: not [e for e in relay.node.endpoints.values() if e.listener], 2, "detach"
    )


async def ffmpeg_listen(url: str, seconds: float) -> np.ndarray:
    proc = await asyncio.create_subprocess_exec(
        need_binary("ffmpeg"), "-hide_banner", "-loglevel", "error", "-i", url,
        "-t", str(seconds), "-f", "s16le", "-ac", "1", "-ar", "48000", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return np.frombuffer(out, dtype=np.int16)


@pytest.mark.e2e
@pytest.mark.slow
async def test_ffmpeg_hears_its_zone_while_a_slow_reader_stalls_nobody(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=2, per_commune=1)
    relay = await relay_factory(config)
    fleet = Fleet(relay.url, [(e.id, e.token) for e in config.endpoints])
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ["c0-e0", "c1-e0"]), 15, "speakers")
        t_id = (await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201))["id"]
        # A reader that takes nothing for 2 s, on the same zone as ffmpeg and the pole.
        async with relay.http.get(
            relay.url + "/listen/c0.ogg", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as slow:
            assert slow.status == 200
            t0 = time.monotonic()
            c0, c1 = await asyncio.gather(
                ffmpeg_listen(relay.url + f"/listen/c0.ogg?token={ADMIN}", 2),
                ffmpeg_listen(relay.url + f"/listen/c1.ogg?token={listen_token(ADMIN, 'c1')}", 2),
            )
            assert time.monotonic() - t0 < 6  # ~real time: ffmpeg was never held up
            assert fleet.heard["c0-e0"].frequency(t0, t_id) == pytest.approx(1000, rel=0.01)
            # The slow reader's stream, read late, is still a clean Ogg stream of the tone.
            reader = OggOpusReader()
            got = reader.feed(await slow.content.read(20_000))
            assert reader.lost_pages == 0 and reader.garbage_bytes == 0 and len(got) > 50
        assert c0.size == pytest.approx(2 * 48000, rel=0.02)
        assert dominant_frequency(c0[4800:]) == pytest.approx(1000, rel=0.01)
        assert c1.size == pytest.approx(2 * 48000, rel=0.02)
        assert rms_dbfs(c1) < -80  # nothing on air in c1: silence, not the c0 tone
        bc = broadcast_json(relay.node, relay.node.broadcasts[t_id])
        assert bc["listeners"] == ["c0-e0"]  # the poles; listeners are counted apart
    finally:
        await fleet.close()
