"""UrlSource, the radio relay: real ffmpeg-made streams served by a local aiohttp server that
drops, stalls and redirects, read the way a broadcast reads (one frame per 20 ms)."""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from loa.codecs import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from loa.errors import SourceError
from loa.streamer.base import Frame, Source
from loa.streamer.decode import MAX_BAD_PACKETS
from loa.streamer.targets import TargetPolicy
from loa.streamer.url import STABLE_AFTER_S, Backoff, State, UrlSource, redact

# The upstreams here are served on 127.0.0.1, which URL sources refuse by default.
LOCAL = TargetPolicy(["127.0.0.0/8", "::1"])

TONE_HZ = 440
TONE_S = 3.0

# --- no sockets: the pure parts -----------------------------------------------------------


def highest(lo: float, hi: float) -> float:
    return hi


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, highest)
    delays = [backoff.next(played_s=1.0) for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    for _ in range(10_000):
        backoff.next(played_s=0.0)
    assert backoff.next(played_s=0.0) == 30.0


def test_backoff_starts_over_after_a_stable_stretch_of_audio() -> None:
    backoff = Backoff(0.5, 30.0, highest)
    assert [backoff.next(0.0) for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff.next(STABLE_AFTER_S - 0.1) == 8.0  # a short stretch does not count
    assert backoff.next(STABLE_AFTER_S) == 0.5
    assert backoff.next(0.0) == 1.0


def test_backoff_jitter_spreads_delays_between_min_and_the_ceiling() -> None:
    rand = random.Random(7).uniform
    assert [Backoff(0.5, 30.0, rand).next(0.0) for _ in range(20)] == [0.5] * 20  # ceiling = min
    fifth = []
    for _ in range(200):
        backoff = Backoff(0.5, 30.0, rand)
        for _ in range(4):
            backoff.next(0.0)
        fifth.append(backoff.next(0.0))  # ceiling 0.5 * 2**4 = 8 s
    assert all(0.5 <= d <= 8.0 for d in fifth)
    assert max(fifth) - min(fifth) > 5.0  # a thousand relays do not come back together


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://radio.example/live", "relay URL 'ftp://radio.example/live' has scheme 'ftp': "),
        ("/srv/media/news.mp3", "relay URL '/srv/media/news.mp3' has no scheme: "),
        ("file:///srv/a.mp3", "relay URL 'file:///srv/a.mp3' has scheme 'file': "),
        ("ftp://dj:secret@radio.example/", "relay URL 'ftp://dj:***@radio.example/' has scheme"),
    ],
)
def test_unsupported_scheme_is_refused_at_construction(url: str, message: str) -> None:
    with pytest.raises(SourceError) as err:
        UrlSource(url)
    assert str(err.value).startswith(message)
    assert str(err.value).endswith(": use http, https, rtsp or rtsps")
    assert "secret" not in str(err.value)


def test_unsupported_scheme_message_is_exact() -> None:
    with pytest.raises(SourceError) as err:
        UrlSource("rtmp://tv.example/live/vtv1")
    assert str(err.value) == (
        "relay URL 'rtmp://tv.example/live/vtv1' has scheme 'rtmp': use http, https, rtsp or rtsps"
    )
    assert err.value.code == "source_failed"


def test_url_without_host_is_refused() -> None:
    with pytest.raises(SourceError, match=r"^relay URL 'http:///live\.mp3' has no host$"):
        UrlSource("http:///live.mp3")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reconnect_min_s": 0}, "need 0 < reconnect_min_s <= reconnect_max_s"),
        (
            {"reconnect_min_s": 5, "reconnect_max_s": 1},
            "need 0 < reconnect_min_s <= reconnect_max_s",
        ),
        ({"read_timeout_s": 0}, "open_timeout_s and read_timeout_s must be positive"),
        ({"buffer_s": 0.02}, "buffer_s must hold at least two frames (0.04 s)"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError) as err:
        UrlSource("http://radio.example/live", **kwargs)
    assert str(err.value) == message


async def test_password_never_reaches_name_or_url() -> None:
    src = UrlSource("https://dj:s3cret@radio.example:8443/live?x=1")
    assert src.url == src.name == "https://dj:***@radio.example:8443/live?x=1"
    assert redact("http://radio.example/a") == "http://radio.example/a"
    await src.aclose()


async def test_is_a_paced_non_resumable_source_that_starts_lazily() -> None:
    src = UrlSource("rtsp://127.0.0.1:9/radio", name="VOV1", targets=LOCAL)
    assert isinstance(src, Source)
    assert (src.name, src.live, src.resumable, src.state) == (
        "VOV1",
        False,
        False,
        State.CONNECTING,
    )
    assert relay_threads() == []  # nothing runs before the first read
    await src.aclose()
    assert src.state is State.CLOSED
    assert await src.read() is None
    await src.aclose()  # twice is fine


# --- helpers -------------------------------------------------------------------------------


def state_of(src: UrlSource) -> State:
    """The state, read through a call so mypy does not keep an earlier narrowing."""
    return src.state


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again before anyone connects


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("relay ")]


def peak_hz(frames: list[Frame]) -> float:
    pcm = np.concatenate([f.pcm for f in frames]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / pcm.size)


def is_tone(frame: Frame) -> bool:
    return (
        not frame.silent_fill and float(np.sqrt(np.mean(frame.pcm.astype(np.float64) ** 2))) > 500
    )


def runs(frames: list[Frame]) -> list[tuple[str, int]]:
    """Consecutive frames grouped: ("tone"|"fill"|"other", count)."""
    out: list[tuple[str, int]] = []
    for f in frames:
        kind = "fill" if f.silent_fill else "tone" if is_tone(f) else "other"
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + 1)
        else:
            out.append((kind, 1))
    return out


async def read_paced(
    src: UrlSource, until: Callable[[list[Frame]], bool], max_frames: int
) -> tuple[list[Frame], set[State]]:
    """Read like the broadcast does: one frame per 20 ms on absolute deadlines."""
    loop = asyncio.get_running_loop()
    frames: list[Frame] = []
    states: set[State] = set()
    deadline = loop.time()
    for _ in range(max_frames):
        started = time.monotonic()
        frame = await src.read()
        # Waiting for an unreachable upstream takes seconds; 0.25 s leaves room for a loaded
        # machine's scheduling delays (54 ms seen under a parallel suite) without hiding one.
        assert time.monotonic() - started < 0.25, "read() must not wait for the upstream"
        assert frame is not None
        frames.append(frame)
        states.add(src.state)
        if until(frames):
            break
        deadline += FRAME_S
        await asyncio.sleep(max(0.0, deadline - loop.time()))
    return frames, states


def tone_frames(n: int) -> Callable[[list[Frame]], bool]:
    return lambda frames: sum(map(is_tone, frames)) >= n


# --- the upstream: ffmpeg-made media behind a local aiohttp server ------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("the ffmpeg binary is not installed; the README's test command installs it")
    out = tmp_path_factory.mktemp("relay-media")
    tone = ["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration={TONE_S}"]
    base = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *tone]
    # 100 ms Ogg pages, so real-time pacing delivers audio smoothly.
    cmds = [
        [*base, "-c:a", "libopus", "-b:a", "32k", "-page_duration", "100000", f"{out}/tone.opus"],
        [*base, "-c:a", "libmp3lame", "-b:a", "64k", f"{out}/tone.mp3"],
    ]
    (out / "hls").mkdir()
    hls = ["-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0"]
    cmds.append([*base, *hls, f"{out}/hls/radio.m3u8"])
    for cmd in cmds:
        subprocess.run(cmd, check=True, timeout=30)
    # A live playlist (no ENDLIST: FFmpeg starts 3 segments from the end and keeps
    # reloading it) with a segment that is gone from the server.
    live = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    for segment in ["radio0.ts", "radio1.ts", "gone.ts", "radio2.ts"]:
        live += ["#EXTINF:1.0,", segment]
    (out / "hls" / "live.m3u8").write_text("\n".join(live) + "\n")
    write_undecodable_opus(out / "undecodable.opus")
    return out


def write_undecodable_opus(path: Path) -> None:
    """A well-formed Ogg/Opus stream whose every packet is an invalid Opus packet."""
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        stream.codec_context.open()  # writes the OpusHead the demuxer needs
        for n in range(200):
            packet = av.Packet(b"\xff\xff" + bytes(40))  # 63 frames in 40 bytes: invalid
            packet.stream = stream
            packet.pts = packet.dts = n * FRAME_SAMPLES
            packet.time_base = Fraction(1, SAMPLE_RATE)
            out.mux(packet)


@dataclass
class Upstream:
    """What the server saw (requests per path, a stalled or abandoned handler)."""

    media: Path
    requests: dict[str, int] = field(default_factory=dict)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    client_left: asyncio.Event = field(default_factory=asyncio.Event)


async def send_paced(
    request: web.Request, data: bytes, content_type: str, *, stop_at: int | None = None
) -> web.StreamResponse:
    """Stream ``data`` at real-time pace after a 0.6 s burst (as Icecast does); with
    ``stop_at``, cut the TCP connection (no clean end) once that many bytes went out."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    await resp.prepare(request)
    per_s = len(data) / TONE_S
    chunk = max(1, int(per_s * 0.1))
    loop = asyncio.get_running_loop()
    sent, start = 0, loop.time()
    while sent < len(data):
        if stop_at is not None and sent >= stop_at:
            assert request.transport is not None
            request.transport.abort()
            return resp
        piece = data[sent : sent + chunk]
        await resp.write(piece)
        sent += len(piece)
        due = start + max(0.0, sent / per_s - 0.6)
        await asyncio.sleep(max(0.0, due - loop.time()))
    await resp.write_eof()
    return resp


def make_app(up: Upstream) -> web.Application:
    async def dropping(request: web.Request) -> web.StreamResponse:
        data = (up.media / "tone.opus").read_bytes()
        first = up.requests[request.path] == 1
        return await send_paced(
            request, data, "audio/ogg", stop_at=len(data) * 45 // 100 if first else None
        )

    async def mp3(request: web.Request) -> web.StreamResponse:
        return web.Response(body=(up.media / "tone.mp3").read_bytes(), content_type="audio/mpeg")

    async def stall(request: web.Request) -> web.StreamResponse:
        # Headers and the first ?after= bytes of the MP3, then nothing.
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await resp.prepare(request)
        await resp.write((up.media / "tone.mp3").read_bytes()[: int(request.query["after"])])
        up.stalled.set()
        try:
            await asyncio.wait_for(up.release.wait(), 20)
        except asyncio.CancelledError:
            up.client_left.set()  # the test server cancels a handler whose client hung up
            raise
        return resp

    async def damaged(request: web.Request) -> web.StreamResponse:
        # Three bursts of noise in the MP3 at about 1, 1.5 and 2 s: bit errors on the air.
        data = bytearray((up.media / "tone.mp3").read_bytes())
        noise = random.Random(1)
        for offset in (8000, 12000, 16000):
            data[offset : offset + 600] = noise.randbytes(600)
        return web.Response(body=bytes(data), content_type="audio/mpeg")

    async def undecodable(request: web.Request) -> web.StreamResponse:
        body = (up.media / "undecodable.opus").read_bytes()
        return web.Response(body=body, content_type="audio/ogg")

    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/tone.mp3")

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        up.requests[request.path] = up.requests.get(request.path, 0) + 1
        return await handler(request)

    app = web.Application(middlewares=[count])
    app.router.add_get("/dropping.opus", dropping)
    app.router.add_get("/tone.mp3", mp3)
    app.router.add_get("/stall.mp3", stall)
    app.router.add_get("/moved", moved)
    app.router.add_get("/damaged.mp3", damaged)
    app.router.add_get("/undecodable.opus", undecodable)
    app.router.add_static("/hls", up.media / "hls")
    return app


@pytest.fixture
async def upstream(media: Path) -> AsyncIterator[tuple[Upstream, str]]:
    up = Upstream(media)
    server = TestServer(make_app(up), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield up, f"http://127.0.0.1:{server.port}"
    finally:
        up.release.set()
        await server.close()


@pytest.fixture
async def sources() -> AsyncIterator[list[UrlSource]]:
    """Sources made by a test, closed even when it fails."""
    made: list[UrlSource] = []
    yield made
    for src in made:
        await src.aclose()
    assert relay_threads() == []


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.e2e
async def test_relay_bridges_a_dropped_connection_with_silence_on_a_gapless_timeline(
    upstream: tuple[Upstream, str], sources: list[UrlSource], caplog: pytest.LogCaptureFixture
) -> None:
    up, base = upstream
    caplog.set_level(logging.DEBUG, logger="loa.streamer.url")
    src = UrlSource(
        f"{base}/dropping.opus",
        reconnect_min_s=1.0,
        reconnect_max_s=1.0,
        buffer_s=0.4,
        targets=LOCAL,
    )
    sources.append(src)

    def recovered(frames: list[Frame]) -> bool:
        shape = [kind for kind, n in runs(frames) if n >= 3]
        return shape[-3:] == ["tone", "fill", "tone"] and runs(frames)[-1][1] >= 40

    frames, states = await read_paced(src, recovered, max_frames=300)

    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(len(frames))]
    shape = runs(frames)
    assert recovered(frames), shape
    fills = [f for f in frames if f.silent_fill]
    assert all(not f.pcm.any() for f in fills)
    assert src.silent_frames == len(fills)
    # Tone before the outage and after it, at 440 Hz.
    before = next(i for i, (kind, n) in enumerate(shape) if kind == "tone" and n >= 20)
    start = sum(n for _, n in shape[:before])
    assert abs(peak_hz(frames[start : start + shape[before][1]]) - TONE_HZ) < 10
    assert abs(peak_hz(frames[-40:]) - TONE_HZ) < 10
    assert src.reconnects >= 1
    assert up.requests["/dropping.opus"] >= 2
    assert {State.PLAYING, State.RECONNECTING} <= states
    assert src.last_error
    # State changes are logged, packets are not.
    records = [r.getMessage() for r in caplog.records if r.name == "loa.streamer.url"]
    assert any("lost:" in m and "reconnecting" in m for m in records), records
    assert sum("playing" in m for m in records) >= 2
    assert len(records) < 12, records


@pytest.mark.e2e
async def test_mp3_over_http_decodes_to_the_tone_resampled_to_48k(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    _, base = upstream
    src = UrlSource(f"{base}/tone.mp3", targets=LOCAL)
    sources.append(src)
    frames, states = await read_paced(src, tone_frames(50), max_frames=200)
    tones = [f for f in frames if is_tone(f)]
    assert len(tones) >= 50
    # The file is 44.1 kHz: a wrong rate conversion would put the peak at 479 Hz.
    assert abs(peak_hz(tones[5:50]) - TONE_HZ) < 10
    assert State.PLAYING in states
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(len(frames))]


@pytest.mark.e2e
async def test_damaged_packets_are_skipped_without_dropping_the_stream(
    upstream: tuple[Upstream, str], sources: list[UrlSource], caplog: pytest.LogCaptureFixture
) -> None:
    _, base = upstream
    src = UrlSource(f"{base}/damaged.mp3", targets=LOCAL)
    sources.append(src)
    # 100 frames read means the reader thread, 2 s of queue ahead, decoded past all three.
    frames, _ = await read_paced(src, tone_frames(100), max_frames=250)
    assert abs(peak_hz([f for f in frames if is_tone(f)][-50:]) - TONE_HZ) < 10
    # The only drop is the end of the file: no damaged packet ended a connection.
    drops = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert drops and all(m.endswith("lost: stream ended; reconnecting") for m in drops), drops


@pytest.mark.e2e
async def test_a_stream_that_no_longer_decodes_is_a_drop(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    _, base = upstream
    src = UrlSource(f"{base}/undecodable.opus", reconnect_min_s=5, reconnect_max_s=5, targets=LOCAL)
    sources.append(src)
    frames, _ = await read_paced(src, lambda _: bool(src.last_error), max_frames=150)
    assert all(f.silent_fill for f in frames)
    assert src.last_error.startswith(f"{MAX_BAD_PACKETS} undecodable packets in a row: ")
    assert src.state is State.RECONNECTING


@pytest.mark.e2e
async def test_redirect_is_followed(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    up, base = upstream
    src = UrlSource(f"{base}/moved", targets=LOCAL)
    sources.append(src)
    frames, _ = await read_paced(src, tone_frames(20), max_frames=200)
    assert sum(map(is_tone, frames)) >= 20
    assert up.requests["/tone.mp3"] == 1


@pytest.mark.e2e
async def test_hls_playlist_decodes_to_the_tone(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    _, base = upstream
    src = UrlSource(f"{base}/hls/radio.m3u8", targets=LOCAL)
    sources.append(src)
    frames, _ = await read_paced(src, tone_frames(60), max_frames=250)
    tones = [f for f in frames if is_tone(f)]
    assert len(tones) >= 60
    assert abs(peak_hz(tones[5:60]) - TONE_HZ) < 10


@pytest.mark.e2e
async def test_live_hls_reloads_its_playlist_and_skips_a_missing_segment(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    up, base = upstream
    src = UrlSource(f"{base}/hls/live.m3u8", targets=LOCAL)
    sources.append(src)
    # radio1.ts and radio2.ts hold 1 s each: 80 tone frames need audio from after the gap.
    frames, _ = await read_paced(
        src, lambda f: tone_frames(80)(f) and up.requests.get("/hls/live.m3u8", 0) >= 2, 250
    )
    assert sum(map(is_tone, frames)) >= 80
    assert up.requests["/hls/gone.ts"] >= 1
    assert up.requests["/hls/live.m3u8"] >= 2  # reloaded through our sockets, no crash
    assert src.reconnects == 0, src.last_error  # the 404 did not drop the stream


@pytest.mark.e2e
async def test_http_error_keeps_retrying_with_silence_and_names_the_status(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    _, base = upstream
    src = UrlSource(f"{base}/missing.mp3", reconnect_min_s=0.05, reconnect_max_s=0.1, targets=LOCAL)
    sources.append(src)
    frames, _ = await read_paced(src, lambda _: src.reconnects >= 2, max_frames=100)
    assert all(f.silent_fill for f in frames)
    assert src.last_error == f"HTTP 404 from {base}/missing.mp3"
    assert src.state is State.RECONNECTING


@pytest.mark.e2e
async def test_read_timeout_drops_the_connection_and_closes_its_socket(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    up, base = upstream
    src = UrlSource(
        f"{base}/stall.mp3?after=0",
        read_timeout_s=0.5,
        reconnect_min_s=30,
        reconnect_max_s=30,
        targets=LOCAL,
    )
    sources.append(src)
    frames, _ = await read_paced(src, lambda _: bool(src.last_error), max_frames=150)
    assert all(f.silent_fill for f in frames)
    assert src.last_error == "TimeoutError: no data for 0.5 s"
    assert src.state is State.RECONNECTING
    # The socket is closed now, not at aclose(): the source is waiting out its backoff.
    await asyncio.wait_for(up.client_left.wait(), 1)
    assert src.reconnects == 0


@pytest.mark.e2e
async def test_unreachable_url_yields_silence_promptly_and_closes_promptly(
    sources: list[UrlSource],
) -> None:
    src = UrlSource(
        f"http://127.0.0.1:{closed_port()}/live",
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        targets=LOCAL,
    )
    sources.append(src)
    frames, states = await read_paced(src, lambda _: src.reconnects >= 3, max_frames=150)
    assert all(f.silent_fill and not f.pcm.any() for f in frames)
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(len(frames))]
    assert src.reconnects >= 3
    assert src.state is State.RECONNECTING
    assert "ConnectionRefusedError" in src.last_error
    assert State.PLAYING not in states
    started = time.monotonic()
    await src.aclose()
    assert time.monotonic() - started < 0.5
    assert relay_threads() == []
    assert state_of(src) is State.CLOSED


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("after", "blocked_in"),
    # av.open still probing / demuxing mid-stream (av.open wants more than 1 s of MP3)
    [(0, State.CONNECTING), (20000, State.PLAYING)],
)
async def test_aclose_wakes_a_reader_blocked_on_a_stalled_server(
    upstream: tuple[Upstream, str], sources: list[UrlSource], after: int, blocked_in: State
) -> None:
    up, base = upstream
    # Timeouts far beyond the test: only aclose() can end the blocked read. The queue holds
    # all the audio sent, so the reader waits on the socket, not on the queue.
    src = UrlSource(
        f"{base}/stall.mp3?after={after}",
        open_timeout_s=60,
        read_timeout_s=60,
        buffer_s=5,
        targets=LOCAL,
    )
    sources.append(src)
    src.start()
    await asyncio.wait_for(up.stalled.wait(), 5)
    await asyncio.sleep(0.3)  # the reader is now inside av, waiting for bytes
    assert src.state is blocked_in
    assert len(relay_threads()) == 1
    started = time.monotonic()
    await src.aclose()
    assert time.monotonic() - started < 2.0
    assert relay_threads() == []
    assert await src.read() is None


@pytest.mark.e2e
async def test_aclose_aborts_a_connect_that_gets_no_answer(sources: list[UrlSource]) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, connect() hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for s in fillers:
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
            src = UrlSource(
                f"http://127.0.0.1:{port}/live", open_timeout_s=60, read_timeout_s=60, targets=LOCAL
            )
            sources.append(src)
            src.start()
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await src.aclose()
            assert time.monotonic() - started < 2.0
            assert relay_threads() == []
        finally:
            for s in fillers:
                s.close()


@pytest.mark.e2e
async def test_rtsp_goes_through_av_and_its_errors_hide_the_password(
    sources: list[UrlSource],
) -> None:
    src = UrlSource(
        f"rtsp://dj:secret@127.0.0.1:{closed_port()}/radio",
        reconnect_min_s=0.05,
        reconnect_max_s=0.1,
        targets=LOCAL,
    )
    sources.append(src)
    frames, _ = await read_paced(src, lambda _: src.reconnects >= 1, max_frames=100)
    assert all(f.silent_fill for f in frames)
    assert "Connection refused" in src.last_error
    assert "dj:***@127.0.0.1" in src.last_error
    assert "secret" not in src.last_error


@pytest.mark.e2e
async def test_shoutcast_icy_answer_and_basic_auth(media: Path, sources: list[UrlSource]) -> None:
    """Old SHOUTcast servers answer "ICY 200 OK"; a password in the URL becomes Basic auth."""
    requests: list[bytes] = []

    async def shoutcast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"ICY 200 OK\r\nicy-name: VOV1\r\ncontent-type: audio/mpeg\r\n\r\n")
        writer.write((media / "tone.mp3").read_bytes())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(shoutcast, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        src = UrlSource(f"http://dj:secret@127.0.0.1:{port}/stream?type=mp3", targets=LOCAL)
        sources.append(src)
        frames, _ = await read_paced(src, tone_frames(20), max_frames=200)
        await src.aclose()
    assert abs(peak_hz([f for f in frames if is_tone(f)][:20]) - TONE_HZ) < 10
    head = requests[0].decode("latin-1").split("\r\n")
    assert head[0] == "GET /stream?type=mp3 HTTP/1.0"
    assert f"Host: 127.0.0.1:{port}" in head
    assert "Authorization: Basic ZGo6c2VjcmV0" in head  # base64("dj:secret")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl binary is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.mark.e2e
async def test_https_verifies_the_certificate_and_then_plays(
    media: Path,
    tls_files: tuple[Path, Path],
    sources: list[UrlSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    up = Upstream(media)
    server = TestServer(make_app(up), host="127.0.0.1", port=0)
    await server.start_server(ssl=server_context)
    try:
        url = f"https://127.0.0.1:{server.port}/tone.mp3"
        untrusted = UrlSource(url, reconnect_min_s=0.05, reconnect_max_s=0.1, targets=LOCAL)
        sources.append(untrusted)
        await read_paced(untrusted, lambda _: untrusted.reconnects >= 1, max_frames=100)
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.last_error
        await untrusted.aclose()

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust store
        trusted = UrlSource(url, targets=LOCAL)
        sources.append(trusted)
        frames, _ = await read_paced(trusted, tone_frames(20), max_frames=200)
        assert abs(peak_hz([f for f in frames if is_tone(f)][:20]) - TONE_HZ) < 10
        await trusted.aclose()
    finally:
        await server.close()
