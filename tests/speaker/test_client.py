"""The speaker client against a fake server on loopback: UDP and WebSocket audio, status,
commands, fallback, reconnect with backoff, refused tokens, shutdown; and its outputs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.cli import speaker as cli
from loa.codecs.opus import OpusEncoder
from loa.codecs.pcm import Int16Array, dominant_frequency, rms_dbfs
from loa.errors import ConfigError, MissingDependency
from loa.relay.core.control import Playing, encode
from loa.relay.core.wire import DatagramType
from loa.speaker.client import AudioMeta, Speaker, SpeakerRefused, SpeakerState
from loa.speaker.clock import Estimate, HostClock, SkewedClock
from loa.speaker.output import (
    NullOutput,
    SoundcardOutput,
    WavOutput,
    apply_volume,
    volume_gain,
)
from tests.relay.core.test_control import WELCOME  # volume 70, not muted
from tests.speaker.fake_server import FakeServer


class CaptureOutput:
    def __init__(self) -> None:
        self.frames: list[Int16Array] = []
        self.opened = self.closed = False
        self.discards = 0

    async def open(self) -> None:
        self.opened = True

    async def write(self, pcm: Int16Array) -> None:
        self.frames.append(pcm)

    def discard(self) -> None:
        self.discards += 1

    async def close(self) -> None:
        self.closed = True


class Harness:
    def __init__(self, speaker: Speaker, output: CaptureOutput) -> None:
        self.speaker = speaker
        self.output = output
        self.audio: list[tuple[Int16Array, AudioMeta]] = []
        speaker.on_audio = lambda pcm, meta: self.audio.append((pcm, meta))

    def normal_pcm(self, skip: int = 3) -> Int16Array:
        frames = [pcm for pcm, meta in self.audio if meta.kind == "normal"][skip:]
        return np.concatenate(frames)


async def until(cond: Callable[[], bool], within_s: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer() as srv:
        yield srv


@pytest.fixture
def start(server: FakeServer) -> Any:
    tasks: list[asyncio.Task[None]] = []

    def _start(**kwargs: Any) -> Harness:
        output = CaptureOutput()
        kwargs.setdefault("token", "good-token")
        kwargs.setdefault("rng", random.Random(1))
        speaker = Speaker(server.url, output=output, **kwargs)
        tasks.append(asyncio.create_task(speaker.run()))
        return Harness(speaker, output)

    yield _start
    for task in tasks:
        task.cancel()


async def stop(h: Harness) -> None:
    h.speaker.stop()
    await until(lambda: h.output.closed)


async def test_udp_tone_is_decoded_and_strangers_are_ignored(
    server: FakeServer, start: Any
) -> None:
    h = start()
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    assert server.kinds[0] is DatagramType.HELLO
    # A datagram from another socket is neither audio nor an ack.
    loop = asyncio.get_running_loop()
    stranger, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    assert server.speaker_addr is not None
    stranger.sendto(server.next_packet(np.zeros(960, np.int16)), server.speaker_addr)
    await until(lambda: h.speaker.foreign_packets == 1)
    stranger.close()
    await server.send_tone(1000.0, 25)
    await until(lambda: h.speaker.jitter.played >= 25)
    pcm = h.normal_pcm()
    assert abs(dominant_frequency(pcm) - 1000.0) < 10.0
    # 80 % volume is a gain of 0.64 (-3.9 dB) on a -6 dBFS sine (RMS -9 dBFS).
    assert rms_dbfs(pcm) == pytest.approx(-9.0 - 3.9, abs=0.6)
    assert h.speaker.udp_audio == 25
    assert h.speaker.jitter.lost == 0
    assert h.speaker.ws_audio == 0
    await stop(h)


@pytest.mark.parametrize("per_packet", [2, 3])
async def test_longer_packets_play_continuously_and_a_loss_is_rebuilt_at_their_length(
    server: FakeServer, start: Any, per_packet: int
) -> None:
    """40 and 60 ms packets (2 or 3 Opus frames, as a zone with longer packets gets them):
    one decode a slot, the slot as long as the packet; a lost one is rebuilt from the next
    one's FEC at the lost packet's own length, so the sound stays continuous."""
    h = start()
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    packets = 60 // per_packet  # 1.2 s
    await server.send_tone(700.0, 60, per_packet=per_packet, skip=frozenset({10}))
    await until(lambda: h.speaker.jitter.played >= packets - 1)
    jb = h.speaker.jitter
    assert (jb.packet_ms, jb.lost, jb.recovered + jb.concealed) == (20 * per_packet, 1, 1)
    audible = [(pcm, meta.kind) for pcm, meta in h.audio]
    assert {pcm.size for pcm, kind in audible if kind in ("normal", "fec")} == {960 * per_packet}
    heard = np.concatenate([pcm for pcm, kind in audible if kind in ("normal", "fec")])
    assert heard.size == 60 * 960  # every 20 ms sent is heard once, the lost ones rebuilt
    assert abs(dominant_frequency(heard[2 * 960 :]) - 700.0) < 10.0
    await stop(h)


async def test_a_new_talkspurt_is_decoded_and_concealed_from_its_own_state(
    server: FakeServer, start: Any
) -> None:
    """A broadcast switch (the marker, another encoder: SILK before, hybrid after) resets the
    decoder: concealing a loss in the new broadcast never replays the old one (libopus's
    SILK concealment kept the preempted 500 Hz tone's state and played it again)."""
    h = start()
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    await server.send_tone(500.0, 60, per_packet=3, level_dbfs=-12.0)
    server._encoder = OpusEncoder()  # the preempting broadcast's own encoder
    await server.send_tone(1500.0, 30, per_packet=3, level_dbfs=-12.0, skip=frozenset({2, 3}))
    await until(lambda: h.speaker.jitter.played >= 28)
    after = [(pcm, meta.kind) for pcm, meta in h.audio][20:]  # after the 500 Hz packets
    assert h.speaker.jitter.lost == 2
    assert {"plc", "fec"} <= {kind for _, kind in after}
    heard = [dominant_frequency(w) for pcm, _ in after for w in np.split(pcm, pcm.size // 480)]
    assert not [f for f in heard if abs(f - 500.0) < 40]  # the old tone: never again
    await stop(h)


async def test_status_reports_plausible_counters(server: FakeServer, start: Any) -> None:
    h = start(status_interval_s=0.1)
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    await server.send_tone(440.0, 10)
    await until(lambda: h.speaker.jitter.played >= 10)
    seen = []
    while not seen or seen[-1]["received"] < 10 or seen[-1]["buffer_ms"] > 0:
        seen.append(await asyncio.wait_for(server.statuses.get(), 2))
    assert all(0 <= s["buffer_ms"] <= 500 for s in seen)
    status = seen[-1]
    assert status["type"] == "status"
    assert status["received"] == status["played"] == 10
    assert status["lost"] == status["late"] == status["recovered"] == 0
    assert status["redundant"] == status["red_malformed"] == 0  # plain Opus: no RED
    assert status["retransmitted"] == status["nacked"] == status["concealed"] == 0
    assert status["path_failures"] == 0 and status["stretched"] >= 0
    assert status["volume"] == 80
    assert status["muted"] is False
    assert status["playing"] is None
    assert 0 <= status["jitter_ms"] < 20
    await stop(h)


@pytest.mark.slow
async def test_volume_mute_and_emergency_volume_change_the_level(
    server: FakeServer, start: Any
) -> None:
    h = start()
    await until(lambda: h.speaker.state is SpeakerState.UDP)

    async def level_after(message: dict[str, Any] | None) -> float:
        if message is not None:
            await server.send_json(message)
        await asyncio.sleep(0.05)
        h.audio.clear()
        await server.send_tone(1000.0, 20)
        await until(lambda: sum(m.kind == "normal" for _, m in h.audio) >= 20)
        return rms_dbfs(h.normal_pcm(skip=6))

    await level_after(None)  # the encoder's first frames are quieter: warm it up
    full = await level_after({"type": "volume", "volume": 100})
    half = await level_after({"type": "volume", "volume": 50})
    # Opus reproduces short tone bursts within a few tenths of a dB; linear would be -6.
    assert half - full == pytest.approx(-12.04, abs=1.0)
    muted = await level_after({"type": "mute", "muted": True})
    assert muted < -100
    assert json.loads(h.speaker.status())["muted"] is True
    await server.send_json({"type": "mute", "muted": False})
    emergency = await level_after(
        {"type": "playing", "broadcast": "b7", "class": "emergency", "volume": 100}
    )
    assert emergency == pytest.approx(full, abs=1.0)
    assert h.audio[-1][1].broadcast == "b7"
    back = await level_after({"type": "playing", "broadcast": None, "volume": None})
    assert back == pytest.approx(half, abs=1.0)
    await stop(h)


async def test_stop_flushes_buffered_audio(server: FakeServer, start: Any) -> None:
    h = start()
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    await server.send_tone(1000.0, 20, paced=False)  # 400 ms arrives at once
    await until(lambda: h.speaker.jitter.received == 20)
    await server.send_json({"type": "stop"})
    await until(lambda: h.output.discards == 1)
    assert len(h.speaker.jitter) == 0
    assert h.speaker.jitter.dropped >= 10
    played = h.speaker.jitter.played
    await asyncio.sleep(0.1)
    assert h.speaker.jitter.played == played  # nothing left to play
    await stop(h)


@pytest.mark.slow
async def test_falls_back_to_websocket_audio_and_back_to_udp(
    server: FakeServer, start: Any
) -> None:
    server.ignore_udp = True
    h = start(ws_fallback_after_s=0.3, udp_reprobe_s=0.3)
    await until(lambda: h.speaker.state is SpeakerState.WS)
    await until(lambda: server.transport_modes == ["ws"])
    hellos = len(server.counters)
    assert hellos >= 1
    await server.send_tone(800.0, 20)
    await until(lambda: h.speaker.jitter.played >= 20)
    assert h.speaker.ws_audio == 20
    assert abs(dominant_frequency(h.normal_pcm()) - 800.0) < 8.0
    server.ignore_udp = False
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    await until(lambda: server.transport_modes == ["ws", "udp"])
    assert len(server.counters) > hellos  # it kept probing
    await stop(h)


async def test_force_ws_asks_for_websocket_audio_at_once(server: FakeServer, start: Any) -> None:
    h = start(force_ws=True)
    await until(lambda: h.speaker.state is SpeakerState.WS)
    await until(lambda: server.transport_modes == ["ws"])
    assert h.speaker.hellos == 0
    await stop(h)


async def test_keepalives_follow_the_servers_period() -> None:
    async with FakeServer(keepalive_s=0.1) as server:
        speaker = Speaker(server.url, "good-token", CaptureOutput())
        task = asyncio.create_task(speaker.run())
        await until(lambda: server.kinds.count(DatagramType.KEEPALIVE) >= 3)
        assert speaker.state is SpeakerState.UDP
        assert server.counters == sorted(set(server.counters))
        speaker.stop()
        await task


async def test_reconnects_with_backoff_and_counter_keeps_increasing(
    server: FakeServer, start: Any
) -> None:
    h = start(backoff_min_s=0.1, backoff_max_s=0.2)
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    first_counters = list(server.counters)
    await server.drop()
    dropped_at = asyncio.get_running_loop().time()
    await until(lambda: server.connections == 2)
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    delay = h.speaker.backoff_delays[0]
    assert 0 <= delay <= 0.2  # quick phase: uniform(0, min(quick_retry_s, max))
    assert server.connect_times[1] - dropped_at >= delay - 0.01
    assert server.counters[len(first_counters)] > first_counters[-1]
    assert h.speaker.connects == 2
    await stop(h)


def test_backoff_is_full_jitter_capped_at_the_maximum() -> None:
    speaker = Speaker("http://x", "t", CaptureOutput(), backoff_min_s=1, backoff_max_s=60)
    rng = random.Random(0)
    speaker._rng = rng
    for attempt, cap in [(0, 1), (1, 2), (3, 8), (5, 32), (6, 60), (40, 60)]:
        samples = [speaker.backoff_delay(attempt, down_s=121) for _ in range(300)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > 0.9 * cap  # spread over the whole range, not a fixed step


def test_backoff_retries_within_two_seconds_for_the_first_two_minutes() -> None:
    speaker = Speaker("http://x", "t", CaptureOutput(), backoff_min_s=1, backoff_max_s=60)
    speaker._rng = random.Random(1)
    for attempt, down_s in [(0, 0.0), (5, 30.0), (40, 119.9)]:
        samples = [speaker.backoff_delay(attempt, down_s) for _ in range(300)]
        assert all(0 <= s <= 2.0 for s in samples)
        assert max(samples) > 1.8 and min(samples) < 0.2  # jittered: a fleet spreads over 2 s
    assert max(speaker.backoff_delay(40, 120.0) for _ in range(300)) > 10  # long outage: slow


@pytest.mark.slow
async def test_back_within_three_seconds_of_the_server_listening_after_a_long_outage(
    server: FakeServer, start: Any
) -> None:
    h = start(backoff_min_s=1.0, backoff_max_s=60.0)
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    port = server.port
    await server.close()
    await asyncio.sleep(8.0)  # the old policy's retries were 0-1, 0-2, 0-4, 0-8 s by now
    retries = len(h.speaker.backoff_delays)
    assert retries >= 4 and max(h.speaker.backoff_delays) <= 2.0
    connections = server.connections
    await server.start(port)
    listening = asyncio.get_running_loop().time()
    await until(lambda: server.connections > connections, within_s=3.0)
    assert asyncio.get_running_loop().time() - listening < 3.0
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    await stop(h)


async def test_bad_token_is_fatal_when_asked(server: FakeServer) -> None:
    speaker = Speaker(server.url, "wrong", CaptureOutput(), fatal_auth=True)
    with pytest.raises(SpeakerRefused, match="bad_token"):
        await asyncio.wait_for(speaker.run(), 3)
    assert server.refused == 1


async def test_bad_token_retries_slowly(server: FakeServer, start: Any) -> None:
    h = start(token="wrong", backoff_min_s=0.01, backoff_max_s=1.0)
    await until(lambda: h.speaker.state is SpeakerState.REFUSED)
    await asyncio.sleep(0.3)
    assert server.refused == 1  # a quick backoff would have hit it ~30 times
    assert h.speaker.backoff_delays[0] >= 0.5
    await stop(h)


async def test_cancellation_closes_everything(server: FakeServer) -> None:
    output = CaptureOutput()
    speaker = Speaker(server.url, "good-token", output)
    task = asyncio.create_task(speaker.run())
    await until(lambda: speaker.state is SpeakerState.UDP)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert output.closed
    assert speaker.state is SpeakerState.STOPPED
    assert speaker._link is None
    await until(lambda: server.ws is None)  # the server saw the WebSocket close


# --- outputs -----------------------------------------------------------------------------


async def test_wav_output_is_valid_after_each_chunk_and_after_close(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    out = WavOutput(path, chunk_frames=5)
    await out.open()
    frames = [np.full(960, i, dtype=np.int16) for i in range(12)]
    for pcm in frames[:5]:
        await out.write(pcm)
    with wave.open(str(path), "rb") as wav:  # as a killed process would leave it
        assert wav.getnframes() == 5 * 960
    for pcm in frames[5:]:
        await out.write(pcm)
    await out.close()
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 48000)
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert np.array_equal(data, np.concatenate(frames))


def test_volume_curve_is_square_law_and_mute_silences() -> None:
    pcm = np.full(960, 10_000, dtype=np.int16)
    assert volume_gain(100) == 1.0
    assert volume_gain(50) == 0.25
    assert int(apply_volume(pcm, 50, False)[0]) == 2500
    assert not apply_volume(pcm, 100, True).any()
    assert not apply_volume(pcm, 0, False).any()
    with pytest.raises(ValueError, match=r"0\.\.100"):
        volume_gain(101)


async def test_soundcard_output_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails
    with pytest.raises(MissingDependency, match=r"pip install loa\[sound\].*libportaudio2"):
        await SoundcardOutput().open()


async def test_soundcard_callback_pulls_frames_and_fills_silence() -> None:
    out = SoundcardOutput(max_queue_frames=2)
    for value in (1, 2, 3):
        await out.write(np.full(960, value, dtype=np.int16))
    assert out.overflows == 1  # the oldest frame went
    block = bytearray(960 * 2)
    out._callback(block, 960, None, None)
    assert np.frombuffer(bytes(block), np.int16).tolist() == [2] * 960
    out._callback(block, 960, None, None)
    out._callback(block, 960, None, None)
    assert not np.frombuffer(bytes(block), np.int16).any()
    assert out.underflows == 1


# --- command line ------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["speaker", *argv])


def test_token_comes_from_flag_then_environment_then_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    args = parse("--server", "http://h", "--token-file", str(token_file))
    assert cli.read_token(args, env={}) == "from-file"
    assert cli.read_token(args, env={cli.TOKEN_ENV: "from-env"}) == "from-env"
    args = parse("--server", "http://h", "--token", "flag")
    assert cli.read_token(args, env={cli.TOKEN_ENV: "from-env"}) == "flag"
    with pytest.raises(ConfigError, match="LOA_SPEAKER_TOKEN"):
        cli.read_token(parse("--server", "http://h"), env={})


def test_output_flags_pick_the_output(tmp_path: Path) -> None:
    assert isinstance(
        cli.make_output(parse("--server", "u", "--wav", str(tmp_path / "a.wav"))), WavOutput
    )
    card = cli.make_output(parse("--server", "u", "--device"))
    assert isinstance(card, SoundcardOutput)
    assert card.device is None
    assert isinstance(cli.make_output(parse("--server", "u")), NullOutput)
    with pytest.raises(SystemExit):
        parse("--server", "u", "--wav", "x.wav", "--device", "hw:1")


async def test_clock_probes_answered_out_of_order_are_taken_once_each(
    server: FakeServer, start: Any
) -> None:
    """Probes go only to a server that says it answers them; their acks, reversed in groups
    of four and each sent twice, are all used once (a replay counts as bad) and the server's
    clock (its wall clock) is found against the speaker's (the loop's)."""
    server.clock_probes = True
    server.reverse_acks = 4
    h = start()
    await until(lambda: len(h.speaker.estimator) >= 24, 5)
    speaker = h.speaker
    loop = asyncio.get_running_loop()
    estimate = speaker.estimator.estimate
    assert estimate is not None
    assert estimate.to_server(loop.time()) == pytest.approx(time.time(), abs=0.005)
    assert speaker.estimator.rejected == 0
    assert speaker.bad_packets >= len(speaker.estimator) - 4  # every replay refused
    status = speaker.sync_status()
    assert status["clock_rtt_ms"] < 50 and status["synced"] is False  # nothing plays yet
    await stop(h)


async def test_no_probes_to_a_server_that_does_not_answer_them(
    server: FakeServer, start: Any
) -> None:
    h = start()
    await until(lambda: h.speaker.state is SpeakerState.UDP)
    await asyncio.sleep(0.3)
    assert h.speaker.probes == 0 and len(h.speaker.estimator) == 0
    assert h.speaker.sync_status()["clock_offset_ms"] is None
    await stop(h)


def test_clock_flags_make_a_skewed_clock_and_bad_ones_are_refused(tmp_path: Path) -> None:
    assert isinstance(cli.make_clock(parse("--server", "u")), HostClock)
    clock = cli.make_clock(
        parse("--server", "u", "--clock-offset-s", "-3.5", "--clock-drift-ppm", "80")
    )
    assert isinstance(clock, SkewedClock)
    assert clock.offset_s == -3.5 and clock.rate == pytest.approx(1.00008)
    with pytest.raises(ConfigError, match="--clock-drift-ppm: drift must be within"):
        cli.make_clock(parse("--server", "u", "--clock-drift-ppm", "2000"))
    args = parse("--server", "u", "--token", "t", "--timestamps", str(tmp_path / "no" / "t.jsonl"))
    with pytest.raises(ConfigError, match="cannot write timestamps to"):
        cli.build(args)
    speaker, stamps = cli.build(
        parse("--server", "u", "--token", "t", "--no-sync", "--timestamps", str(tmp_path / "t"))
    )
    assert not speaker.sync and stamps is not None
    stamps.close()


async def test_sigterm_stops_the_speaker_cleanly(server: FakeServer, tmp_path: Path) -> None:
    args = parse("--server", server.url, "--token", "good-token", "--wav", str(tmp_path / "o.wav"))
    speaker, stamps = cli.build(args)
    assert stamps is None
    task = asyncio.create_task(cli.serve(speaker))
    await until(lambda: speaker.state is SpeakerState.UDP)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 3)
    assert speaker.state is SpeakerState.STOPPED
    with wave.open(str(tmp_path / "o.wav"), "rb") as wav:
        assert wav.getframerate() == 48000


class _FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


class _Estimator:
    def __init__(self, estimate: Estimate) -> None:
        self.estimate = estimate


def test_a_switch_applies_from_the_time_its_playing_message_names_however_late_it_came() -> None:
    """In step, a level change applies to the frames captured from when the server made
    it. A switch's ``playing`` message goes after the new broadcast's first frame and names
    the switch's time: the emergency's volume from its first frame, the programme's last
    frames (captured before the switch) at the programme's. A message without it applies
    from when it was sent (the estimate: now on the server's clock less half the round
    trip); a time after that is not believed."""
    speaker = Speaker("ws://127.0.0.1:1/ws", "tok", NullOutput(), clock=_FixedClock(50.0))
    # the server's clock is 100 s ahead; the round trip 20 ms: "sent" = 149.99 server time
    speaker.estimator = _Estimator(Estimate(100.0, 0.0, 50.0, 0.02, 100.0, 64))  # type: ignore[assignment]
    speaker._sync_on = True
    speaker.channel.hello()
    speaker.channel.on_text(encode(WELCOME))
    speaker._levels_changed()  # the welcome's levels, from the start
    for event in speaker.channel.on_text(
        encode(Playing("em", "emergency", "b", 100, True, 149.90))
    ):
        speaker._on_event(event)
    assert speaker._levels_for(149.89) == (None, 70, False)  # the programme's last frame
    assert speaker._levels_for(149.91) == ("em", 100, False)  # the emergency's first
    speaker._level_from = float("-inf")
    for event in speaker.channel.on_text(encode(Playing(None, volume=70))):  # no switch time
        speaker._on_event(event)
    assert speaker._levels_for(149.98) == ("em", 100, False)
    assert speaker._levels_for(149.995) == (None, 70, False)
    speaker._level_from = float("-inf")
    for event in speaker.channel.on_text(encode(Playing("em2", "emergency", "c", 90, True, 160.0))):
        speaker._on_event(event)  # a switch "in the future": from when it was sent, no later
    assert speaker._levels_for(149.995) == ("em2", 90, False)
