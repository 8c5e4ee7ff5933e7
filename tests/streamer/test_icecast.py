"""Icecast source ingest against a real server: ffmpeg pushing Ogg/Opus and MP3, a legacy
SOURCE client, refusals (auth, unknown mount, busy mount, not audio), garbage and stops."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency
from loa.config import Config, MountSpec, with_changes
from loa.errors import ConfigError, SourceError
from loa.streamer import icecast
from loa.streamer.icecast import IcecastSource
from loa.web.keys import MOUNTS
from tests.conftest import Relay, need_binary, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport

PASSWORD = "s3cret"
BASIC = "Basic " + base64.b64encode(f"source:{PASSWORD}".encode()).decode()


def mount_config(tmp_path: Path) -> Config:
    """Communes c0 and c1 with one pole each; mount 'studio' plays live to c0 only."""
    config = tree_config(tmp_path, communes=2, per_commune=1)
    return with_changes(config, mounts=(MountSpec("studio", PASSWORD, ("c0",)),))


async def run_ffmpeg(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        need_binary("ffmpeg"), "-hide_banner", "-loglevel", "error", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def log_entries(relay: Relay) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await relay.api("GET", "/log"))["entries"]
    return entries


def icecast_ids(relay: Relay) -> list[str]:
    return [b for b in relay.node.broadcasts if b.startswith("icecast-studio-")]


# -- ffmpeg pushes; real speakers listen ------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(
    "encode",
    [
        ["-c:a", "libopus", "-f", "ogg", "-content_type", "audio/ogg"],
        ["-c:a", "libmp3lame", "-f", "mp3", "-content_type", "audio/mpeg"],
    ],
    ids=["ogg-opus", "mp3"],
)
async def test_ffmpeg_push_plays_in_the_mount_zones_only(
    relay_factory: Any, tmp_path: Path, encode: list[str]
) -> None:
    config = mount_config(tmp_path)
    relay = await relay_factory(config)
    fleet = Fleet(relay.url, [(e.id, e.token) for e in config.endpoints])
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ["c0-e0", "c1-e0"]), 15, "speakers")
        t0 = time.monotonic()
        host = relay.url.removeprefix("http://")
        url = f"icecast://source:{PASSWORD}@{host}/studio"
        tone_in = ["-re", "-f", "lavfi", "-i", "sine=frequency=1000:duration=4"]
        push = asyncio.ensure_future(run_ffmpeg(*tone_in, *encode, "-ice_name", "Studio A", url))
        await wait_for(lambda: icecast_ids(relay) or push.done(), 10, "the push to start")
        (bc_id,) = icecast_ids(relay)
        assert relay.node.router.listeners(bc_id) == ("c0-e0",)
        rc, err = await push
        assert rc == 0, err
        await wait_for(lambda: bc_id not in relay.node.broadcasts, 10, "the broadcast to end")
        assert fleet.heard["c0-e0"].frequency(t0, bc_id) == pytest.approx(1000, rel=0.01)
        assert len(fleet.heard["c0-e0"].since(t0, bc_id)) > 100  # most of the 4 s
        assert fleet.heard["c1-e0"].since(t0, bc_id) == []
        (entry,) = await log_entries(relay)
        assert entry["id"] == bc_id
        assert (entry["source"], entry["created_by"], entry["class"]) == (
            "icecast",
            "icecast:studio",
            "live",
        )
        assert entry["what"] == "studio: Studio A"
        assert (entry["state"], entry["reason"]) == ("finished", "finished")
        assert list(entry["heard_s"]) == ["c0-e0"] and entry["heard_s"]["c0-e0"] > 2.5
    finally:
        await fleet.close()


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/studio", {"Authorization": "Basic " + base64.b64encode(b"source:nope").decode()},
         401, "unauthorized"),
        ("/studio", {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()},
         401, "unauthorized"),
        ("/studio", {}, 401, "unauthorized"),
        ("/studio", {"Authorization": "Basic !!!"}, 401, "unauthorized"),
        ("/elsewhere", {"Authorization": BASIC}, 404, "not_found"),
        ("/studio", {"Authorization": BASIC, "Content-Type": "text/html"},
         415, "unsupported_media_type"),
    ],
)  # fmt: skip
async def test_refused_sources_play_nothing(
    relay_factory: Any, tmp_path: Path, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    relay = await relay_factory(mount_config(tmp_path))
    headers = {"Content-Type": "audio/mpeg", **headers}
    async with relay.http.put(
        relay.url + path, data=b"\xff\xfb" * 100, headers=headers, expect100=True
    ) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == code
        if status == 401:
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="loa"'
    assert relay.node.broadcasts == {}
    assert await log_entries(relay) == []


async def legacy_source(relay: Relay, content_type: str, **headers: str) -> Any:
    """Connect as libshout does: SOURCE over HTTP/1.0, then wait for the server's answer."""
    host, port = relay.server.host, relay.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    lines = [
        "SOURCE /studio HTTP/1.0",
        f"Authorization: {BASIC}",
        f"Content-Type: {content_type}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


async def mp3_tone(tmp_path: Path, freq: int, seconds: float) -> bytes:
    path = tmp_path / f"tone{freq}.mp3"
    rc, err = await run_ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency={freq}:duration={seconds}",
        "-c:a", "libmp3lame", "-b:a", "64k", str(path),
    )  # fmt: skip
    assert rc == 0, err
    return path.read_bytes()


@pytest.mark.e2e
@pytest.mark.slow
async def test_legacy_source_plays_refuses_a_second_source_and_obeys_a_stop(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = mount_config(tmp_path)
    relay = await relay_factory(config)
    mp3 = await mp3_tone(tmp_path, 1000, 6)
    fleet = Fleet(relay.url, [(e.id, e.token) for e in config.endpoints])
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ["c0-e0"]), 15, "speakers")
        t0 = time.monotonic()
        reader, writer, head = await legacy_source(relay, "audio/mpeg", **{"ice-name": "Raw"})
        assert head.startswith(b"HTTP/1.0 200 OK\r\n")
        (bc_id,) = icecast_ids(relay)
        # A second source on the live mount is refused, naming the mount and its broadcast.
        async with relay.http.put(
            relay.url + "/studio", data=b"\xff\xfb", headers={"Authorization": BASIC}
        ) as resp:
            assert resp.status == 409
            error = (await resp.json())["error"]
            assert (error["mount"], error["broadcast"]) == ("studio", bc_id)
            assert "/studio is already live" in error["message"]
        # Stream at about real time (6 s of 64 kbit/s), 0.1 s at a time, for 2.5 s.
        step = len(mp3) // 60
        for i in range(25):
            writer.write(mp3[i * step : (i + 1) * step])
            await asyncio.sleep(0.1)
        assert fleet.heard["c0-e0"].frequency(t0, bc_id) == pytest.approx(1000, rel=0.01)
        # An operator's stop ends the broadcast and hangs up on the encoder.
        await relay.api("DELETE", f"/broadcasts/{bc_id}")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        (entry,) = await log_entries(relay)
        assert (entry["state"], entry["what"]) == ("stopped", "studio: Raw")
        # The mount is free again.
        await wait_for(lambda: "studio" not in relay.server.app[MOUNTS].live, 5, "free")
    finally:
        await fleet.close()


@pytest.mark.e2e
async def test_garbage_fails_the_broadcast_and_leaves_the_relay_fine(
    relay_factory: Any, tmp_path: Path
) -> None:
    relay = await relay_factory(mount_config(tmp_path))
    _, writer, head = await legacy_source(relay, "audio/ogg")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    (bc_id,) = icecast_ids(relay)
    writer.write(os.urandom(100_000))
    await writer.drain()
    writer.close()
    await wait_for(lambda: bc_id not in relay.node.broadcasts, 10, "the broadcast to fail")
    (entry,) = await log_entries(relay)
    assert entry["state"] == "failed"
    assert entry["reason"].startswith("cannot decode the stream: InvalidDataError"), entry
    async with relay.http.get(relay.url + "/healthz") as resp:
        assert resp.status == 200
    assert relay.server.app[MOUNTS].live == {}


@pytest.mark.e2e
async def test_shutdown_ends_a_connected_source(relay_factory: Any, tmp_path: Path) -> None:
    relay = await relay_factory(mount_config(tmp_path))
    mp3 = await mp3_tone(tmp_path, 500, 2)
    reader, writer, _ = await legacy_source(relay, "audio/mpeg")
    writer.write(mp3[:4000])
    await writer.drain()
    (bc_id,) = icecast_ids(relay)
    t0 = time.monotonic()
    await relay.server.close()
    assert time.monotonic() - t0 < 5
    assert relay.node.history[-1].id == bc_id
    assert relay.node.history[-1].reason == "shutdown"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
    writer.close()


# -- the source, without HTTP -----------------------------------------------------------------


class Chunks:
    """A ByteStream over fixed chunks, each after a delay: a push arriving in bursts."""

    def __init__(self, chunks: list[tuple[float, bytes]]) -> None:
        self._chunks = list(chunks)
        self._held = b""

    async def read(self, n: int = -1) -> bytes:
        if not self._held:
            if not self._chunks:
                return b""
            delay, self._held = self._chunks.pop(0)
            await asyncio.sleep(delay)
        out, self._held = self._held[:n], self._held[n:]
        return out


@pytest.mark.slow
async def test_source_bridges_bursts_with_silence_and_grows_its_buffer(tmp_path: Path) -> None:
    mp3 = await mp3_tone(tmp_path, 1000, 2)
    half = len(mp3) // 2
    source = IcecastSource(Chunks([(0, mp3[:half]), (1.5, mp3[half:])]), name="t", format="mp3")
    assert (source.live, source.resumable) == (True, False)
    frames = []
    t0 = time.monotonic()
    while (frame := await source.read()) is not None:
        frames.append(frame)
    await source.aclose()
    assert [f.pts for f in frames] == [i * 960 for i in range(len(frames))]
    real = [f for f in frames if not f.silent_fill]
    assert abs(len(real) - 100) <= 3  # 2 s of decoded audio, all of it played
    assert source.underruns >= 1 and source.silent_frames > 0
    assert source.target_frames > 20  # grew to cover the gap
    assert time.monotonic() - t0 == pytest.approx(len(frames) * 0.02, abs=0.3)  # its own clock


async def test_source_fails_on_a_body_without_audio() -> None:
    source = IcecastSource(Chunks([(0, b"not audio at all\n" * 500)]), name="t")
    with pytest.raises(SourceError, match=r"cannot decode the stream: InvalidDataError"):
        await source.read()
    await source.aclose()


async def test_source_times_out_when_the_encoder_goes_silent() -> None:
    source = IcecastSource(Chunks([(5, b"")]), name="t", idle_timeout_s=0.3)
    with pytest.raises(SourceError, match=r"no data from the source for 0.3 s"):
        await source.read()
    await source.aclose()


async def test_source_settings_are_checked() -> None:
    with pytest.raises(SourceError, match="buffer_s"):
        IcecastSource(Chunks([]), name="t", buffer_s=0.01)
    with pytest.raises(SourceError, match="idle_timeout_s must be positive"):
        IcecastSource(Chunks([]), name="t", idle_timeout_s=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content_type", "codec", "suffix"),
    [
        ("audio/ogg", "libvorbis", "ogg"),
        ("audio/aac", "aac", "aac"),
        ("audio/flac", "flac", "flac"),
        ("application/octet-stream", "libopus", "ogg"),  # probed
    ],
)
async def test_source_decodes_what_studios_push(
    tmp_path: Path, content_type: str, codec: str, suffix: str
) -> None:
    path = tmp_path / f"tone.{suffix}"
    rc, err = await run_ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=800:duration=1:sample_rate=44100",
        "-c:a", codec, str(path),
    )  # fmt: skip
    assert rc == 0, err
    fmt = icecast.FORMATS.get(content_type)
    source = IcecastSource(Chunks([(0, path.read_bytes())]), name="t", format=fmt)
    pcm = []
    while (frame := await source.read()) is not None:
        assert not frame.silent_fill
        pcm.append(frame.pcm)
    await source.aclose()
    assert abs(len(pcm) - 50) <= 3
    assert dominant_frequency(np.concatenate(pcm[5:-5])) == pytest.approx(800, rel=0.01)


# -- watchdog: silent and trickling sources -----------------------------------------------------


def watched_config(tmp_path: Path, **limits: float) -> Config:
    config = tree_config(tmp_path, communes=2, per_commune=1)
    return with_changes(config, mounts=(MountSpec("studio", PASSWORD, ("c0",), **limits),))


async def closed_after(reader: Any, t0: float, limit: float) -> float:
    """Seconds from ``t0`` until the server hangs up on the source."""
    assert await asyncio.wait_for(reader.read(), limit) == b""
    return time.monotonic() - t0


def test_mount_source_limits_default_to_icecast_and_are_checked() -> None:
    mount = MountSpec("m", "pw", ("c0",))
    assert (mount.source_timeout_s, mount.source_min_bytes_per_s) == (10.0, 500.0)
    assert mount.source_rate_window_s == 10.0
    with pytest.raises(ConfigError, match="mount m: source_timeout_s must be in"):
        MountSpec("m", "pw", ("c0",), source_timeout_s=0)
    with pytest.raises(ConfigError, match="source_min_bytes_per_s must be in"):
        MountSpec("m", "pw", ("c0",), source_min_bytes_per_s=-1)


@pytest.mark.e2e
async def test_a_source_that_goes_silent_is_closed_on_time(
    relay_factory: Any, tmp_path: Path
) -> None:
    """Audio for a second, then nothing on an open connection: closed source_timeout_s
    later (not 30 s), its broadcast ended and logged with the reason."""
    relay = await relay_factory(watched_config(tmp_path, source_timeout_s=1.5))
    mp3 = await mp3_tone(tmp_path, 700, 1)
    reader, writer, head = await legacy_source(relay, "audio/mpeg")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    (bc_id,) = icecast_ids(relay)
    step = len(mp3) // 10
    for i in range(10):  # about real time
        if i:
            await asyncio.sleep(0.1)
        writer.write(mp3[i * step : (i + 1) * step])
    await writer.drain()
    t0 = time.monotonic()  # the last byte is out: the source is silent from here
    took = await closed_after(reader, t0, 10)
    writer.close()
    assert 1.4 <= took <= 3.0, took
    assert bc_id not in relay.node.broadcasts
    (entry,) = await log_entries(relay)
    assert (entry["state"], entry["reason"]) == ("failed", "no data from the source for 1.5 s")
    assert relay.server.app[MOUNTS].live == {}


@pytest.mark.e2e
async def test_a_source_trickling_one_byte_a_second_is_closed(
    relay_factory: Any, tmp_path: Path
) -> None:
    """Never silent long enough for the timeout, yet far below any encoder's rate: closed
    once a window's average is below the minimum, and the mount is free again."""
    limits = {"source_timeout_s": 10.0, "source_min_bytes_per_s": 500.0}
    relay = await relay_factory(watched_config(tmp_path, source_rate_window_s=3.0, **limits))
    mp3 = await mp3_tone(tmp_path, 700, 2)
    reader, writer, _ = await legacy_source(relay, "audio/mpeg")
    (bc_id,) = icecast_ids(relay)
    writer.write(mp3[:2000])  # a start that looks real, then a byte a second
    t0 = time.monotonic()

    async def trickle() -> None:
        for byte in mp3[2000:2030]:
            await asyncio.sleep(1.0)
            writer.write(bytes([byte]))

    trickling = asyncio.create_task(trickle())
    try:
        took = await closed_after(reader, t0, 15)
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
        writer.close()
    assert took < 6.5, took  # the window (3 s) after the start burst aged out of it
    assert bc_id not in relay.node.broadcasts
    (entry,) = await log_entries(relay)
    assert entry["state"] == "failed"
    assert "below the minimum of 500 bytes/s" in entry["reason"], entry
    assert relay.server.app[MOUNTS].live == {}


async def test_source_trickle_is_refused_without_http() -> None:
    source = IcecastSource(
        Chunks([(0, b"ID3\x04" + b"\0" * 600)] + [(0.1, b"x")] * 20),
        name="t",
        min_bytes_per_s=500,
        rate_window_s=0.5,
    )
    with pytest.raises(SourceError, match=r"bytes in 0.5 s, below the minimum of 500 bytes/s"):
        await source.read()
    await source.aclose()


@pytest.mark.slow  # real time: a source paced for seconds
async def test_a_source_pushing_ahead_is_not_taken_for_a_trickle(tmp_path: Path) -> None:
    """ffmpeg without -re sends everything at once; then the full jitter buffer holds the
    reader back for seconds. That waiting is ours, not the encoder's: no verdict."""
    mp3 = await mp3_tone(tmp_path, 1000, 3)
    source = IcecastSource(
        Chunks([(0, mp3)]),
        name="t",
        format="mp3",
        buffer_s=0.5,
        min_bytes_per_s=100_000,
        rate_window_s=0.2,
    )
    frames = 0
    while (frame := await source.read()) is not None:
        frames += not frame.silent_fill
    await source.aclose()
    assert abs(frames - 150) <= 3
