"""Opus encoder/decoder over libopus: fidelity, settings, FEC versus PLC, errors, TOC."""

from __future__ import annotations

import ctypes.util
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE, opus, pcm
from loa.codecs.opus import (
    APPLICATION_AUDIO,
    APPLICATION_VOIP,
    LIBOPUS_MISSING,
    OPUSLIB_MISSING,
    OpusDecoder,
    OpusEncoder,
)
from loa.codecs.opus_packet import Toc, has_fec, packet_samples
from loa.config import OpusConfig
from loa.errors import MissingDependency

WARMUP_FRAMES = 5


def voice_like(frames: int, seed: int = 1) -> pcm.Int16Array:
    return pcm.voice_like(frames * FRAME_SAMPLES, seed=seed)


def frames_of(signal: pcm.Int16Array) -> list[pcm.Int16Array]:
    return [signal[i : i + FRAME_SAMPLES] for i in range(0, signal.size, FRAME_SAMPLES)]


def snr_db(reference: pcm.Int16Array, estimate: pcm.Int16Array) -> float:
    ref = reference.astype(np.float64)
    err = ref - estimate.astype(np.float64)
    return float(10 * np.log10(np.sum(ref * ref) / max(float(np.sum(err * err)), 1e-9)))


# Round trip


@pytest.mark.parametrize("signal", ["voice", "music"])
def test_tone_round_trip_keeps_frequency_and_level(signal: str) -> None:
    source = pcm.tone(1000.0, SAMPLE_RATE, level_dbfs=-12.0)
    enc, dec = OpusEncoder(signal=signal), OpusDecoder()
    decoded = []
    for frame in frames_of(source):
        packet = enc.encode(frame)
        decoded.append(dec.decode(packet))
        # The official conformance check: both range coders end in the same state.
        assert dec.final_range == enc.final_range
    assert all(d.shape == (FRAME_SAMPLES,) and d.dtype == np.int16 for d in decoded)
    out = np.concatenate(decoded[WARMUP_FRAMES:])
    assert pcm.dominant_frequency(out) == pytest.approx(1000.0, rel=0.01)
    assert pcm.rms_dbfs(out) == pytest.approx(pcm.rms_dbfs(source), abs=1.0)


def test_decoded_audio_lags_by_the_lookahead() -> None:
    source = pcm.clicks(50 * FRAME_SAMPLES, period=4800, level_dbfs=-6.0)
    enc, dec = OpusEncoder(bitrate_bps=64_000, signal="music"), OpusDecoder()
    out = np.concatenate([dec.decode(enc.encode(f)) for f in frames_of(source)])
    # Cross-correlate one later click against the source to find the codec delay.
    lags = np.arange(0, 1000)
    ref = source[24_000:28_800].astype(np.float64)
    score = [float(np.dot(ref, out[24_000 + lag : 28_800 + lag])) for lag in lags]
    assert abs(int(lags[int(np.argmax(score))]) - enc.lookahead_samples) <= 4


# Settings reach libopus


def test_constructor_settings_reach_libopus() -> None:
    enc = OpusEncoder(
        bitrate_bps=24_000, complexity=5, fec=False, packet_loss_pct=25, dtx=True, signal="music"
    )
    assert (enc.bitrate_bps, enc.complexity, enc.fec, enc.packet_loss_pct, enc.dtx) == (
        24_000,
        5,
        False,
        25,
        True,
    )
    assert (enc.signal, enc.application) == ("music", APPLICATION_AUDIO)


@pytest.mark.parametrize(
    ("signal", "application"),
    [("voice", APPLICATION_VOIP), ("music", APPLICATION_AUDIO), ("auto", APPLICATION_AUDIO)],
)
def test_signal_picks_application(signal: str, application: int) -> None:
    enc = OpusEncoder(signal=signal)
    assert (enc.signal, enc.application) == (signal, application)


def test_runtime_setters_reach_libopus() -> None:
    enc = OpusEncoder()
    assert (enc.bitrate_bps, enc.fec, enc.packet_loss_pct, enc.dtx) == (32_000, True, 10, False)
    enc.bitrate_bps = 48_000
    enc.packet_loss_pct = 30
    enc.fec = False
    enc.dtx = True
    assert (enc.bitrate_bps, enc.fec, enc.packet_loss_pct, enc.dtx) == (48_000, False, 30, True)


def test_from_config() -> None:
    cfg = OpusConfig(
        bitrate_bps=40_000, complexity=3, fec=False, packet_loss_pct=0, dtx=True, signal="auto"
    )
    enc = OpusEncoder.from_config(cfg)
    assert (enc.bitrate_bps, enc.complexity, enc.fec, enc.packet_loss_pct, enc.dtx) == (
        40_000,
        3,
        False,
        0,
        True,
    )
    assert enc.signal == "auto"


def test_bitrate_changes_packet_sizes() -> None:
    frames = frames_of(voice_like(50))
    sizes = {}
    for bitrate in (16_000, 64_000):
        enc = OpusEncoder(bitrate_bps=bitrate, fec=False)
        sizes[bitrate] = np.mean([len(enc.encode(f)) for f in frames[WARMUP_FRAMES:]])
    # 20 ms at 16 kbit/s is 40 bytes, at 64 kbit/s 160; VBR keeps the average near it.
    assert sizes[16_000] == pytest.approx(40, rel=0.3)
    assert sizes[64_000] == pytest.approx(160, rel=0.3)


def test_dtx_shrinks_silence_to_toc_only_packets() -> None:
    quiet = pcm.silence()
    with_dtx, without = OpusEncoder(dtx=True), OpusEncoder(dtx=False)
    dtx_sizes = [len(with_dtx.encode(quiet)) for _ in range(30)]
    plain_sizes = [len(without.encode(quiet)) for _ in range(30)]
    assert dtx_sizes[-10:].count(1) >= 8
    assert min(plain_sizes) > 1


def test_encode_accepts_a_strided_frame_like_a_contiguous_one() -> None:
    wide = pcm.tone(440.0, 2 * FRAME_SAMPLES)
    strided = wide[::2]
    assert not strided.flags.c_contiguous
    assert OpusEncoder().encode(strided) == OpusEncoder().encode(strided.copy())


# FEC versus PLC

FEC_LOST = range(10, 95, 3)


def _loss_recovery(packets: list[bytes], lost: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``lost`` rebuilt by FEC and by PLC, in two decoders that shared the history."""
    by_fec, by_plc = OpusDecoder(), OpusDecoder()
    for packet in packets[:lost]:
        a, b = by_fec.decode(packet), by_plc.decode(packet)
        assert np.array_equal(a, b)
    return by_fec.decode_fec(packets[lost + 1]), by_plc.decode_plc()


def test_fec_recovers_a_lost_packet_better_than_plc() -> None:
    enc = OpusEncoder(bitrate_bps=32_000, fec=True, packet_loss_pct=20)
    packets = [enc.encode(f) for f in frames_of(voice_like(100))]
    reference = OpusDecoder()
    normal = [reference.decode(p) for p in packets]
    fec_snr, plc_snr = [], []
    for k in FEC_LOST:
        by_fec, by_plc = _loss_recovery(packets, k)
        assert by_fec.shape == by_plc.shape == (FRAME_SAMPLES,)
        fec_snr.append(snr_db(normal[k], by_fec))
        plc_snr.append(snr_db(normal[k], by_plc))
    # Observed with libopus 1.3.1: FEC median ~17 dB, PLC median ~1 dB, so a ~16 dB margin.
    # FEC is absent only where SILK's VAD called the lost frame inactive (5 of 29 here),
    # where libopus falls back to PLC, hence identical results, never worse ones.
    assert np.median(fec_snr) - np.median(plc_snr) >= 8.0
    assert np.median(fec_snr) >= 10.0
    assert sum(f > p + 3.0 for f, p in zip(fec_snr, plc_snr, strict=True)) >= len(fec_snr) // 2
    assert min(np.subtract(fec_snr, plc_snr)) >= -0.5


def test_without_a_loss_hint_no_fec_is_sent_so_fec_equals_plc() -> None:
    enc = OpusEncoder(bitrate_bps=32_000, fec=True, packet_loss_pct=0)
    packets = [enc.encode(f) for f in frames_of(voice_like(40))]
    for k in range(10, 38, 3):
        by_fec, by_plc = _loss_recovery(packets, k)
        assert np.array_equal(by_fec, by_plc)


@pytest.mark.parametrize(("signal", "loss_pct"), [("voice", 20), ("voice", 0), ("music", 20)])
def test_has_fec_says_exactly_when_fec_differs_from_concealment(signal: str, loss_pct: int) -> None:
    # The LBRR flag read from the packet predicts what libopus does with it: a frame rebuilt
    # from FEC where it says so, concealment (identical PCM) where it does not.
    enc = OpusEncoder(bitrate_bps=32_000, fec=True, packet_loss_pct=loss_pct, signal=signal)
    packets = [enc.encode(f) for f in frames_of(voice_like(60))]
    flags = []
    for k in range(10, 58):
        by_fec, by_plc = _loss_recovery(packets, k)
        flags.append(has_fec(packets[k + 1]))
        assert flags[-1] == (not np.array_equal(by_fec, by_plc)), k
    assert any(flags) == (loss_pct > 0)


def test_has_fec_on_packets_that_cannot_carry_it() -> None:
    celt = bytes(Toc(31)) + b"\xff" * 40  # CELT-only, 20 ms
    assert not has_fec(celt)
    assert not has_fec(bytes(Toc(9)))  # SILK TOC alone (DTX)
    two_frames = bytes(Toc(9, code=1, frame_count=2)) + b"\x40\xff"
    assert has_fec(two_frames)  # the first frame's flag
    assert not has_fec(bytes(Toc(9, code=1, frame_count=2)) + b"\xbf\xff")
    assert has_fec(bytes(Toc(9)) + b"\x40")  # SILK 20 ms: VAD bit 7, LBRR bit 6
    assert has_fec(bytes(Toc(10)) + b"\x20")  # SILK 40 ms: two VAD bits, LBRR bit 5


def test_plc_and_fec_give_the_requested_duration() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    packet = enc.encode(pcm.tone(300.0))
    dec.decode(packet)
    assert dec.decode_plc(480).shape == (480,)
    assert dec.decode_plc(2 * FRAME_SAMPLES).shape == (2 * FRAME_SAMPLES,)
    assert dec.decode_fec(packet).shape == (FRAME_SAMPLES,)


def test_plc_continues_a_tone() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    for frame in frames_of(pcm.tone(500.0, 20 * FRAME_SAMPLES, level_dbfs=-12.0)):
        dec.decode(enc.encode(frame))
    concealed = dec.decode_plc()
    assert pcm.dominant_frequency(concealed) == pytest.approx(500.0, rel=0.03)
    assert pcm.rms_dbfs(concealed) > -30.0


# Errors


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros(FRAME_SAMPLES, np.float32), "opus encode needs int16 PCM, got dtype float32"),
        (np.zeros(FRAME_SAMPLES, np.int32), "opus encode needs int16 PCM, got dtype int32"),
        (np.zeros(959, np.int16), "opus encode needs shape (960,), got (959,)"),
        (np.zeros((2, 960), np.int16), "opus encode needs shape (960,), got (2, 960)"),
        ([0] * FRAME_SAMPLES, "opus encode needs a numpy int16 array, got list"),
    ],
)
def test_encode_rejects_bad_frames(frame: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        OpusEncoder().encode(frame)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"signal": "speech"},
            "opus signal must be one of ['auto', 'music', 'voice'], got 'speech'",
        ),
        ({"complexity": 11}, "opus complexity must be 0..10, got 11"),
        ({"bitrate_bps": 5_999}, "opus bitrate_bps must be 6000..510000, got 5999"),
        ({"packet_loss_pct": 101}, "opus packet_loss_pct must be 0..100, got 101"),
        ({"packet_loss_pct": True}, "opus packet_loss_pct must be 0..100, got True"),
    ],
)
def test_encoder_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        OpusEncoder(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_runtime_setter_rejects_bad_value_and_keeps_the_old_one() -> None:
    enc = OpusEncoder(bitrate_bps=24_000)
    with pytest.raises(ValueError, match=r"^opus bitrate_bps must be 6000\.\.510000, got 600000$"):
        enc.bitrate_bps = 600_000
    assert enc.bitrate_bps == 24_000


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "empty opus packet: use decode_plc() for a lost one"),
        (b"\x03", "opus cannot decode packet: corrupted stream"),  # code 3, no count byte
        (b"\x03\x00", "opus cannot decode packet: corrupted stream"),  # zero frames
        (b"\x02", "opus cannot decode packet: corrupted stream"),  # code 2, no length
        (b"\x78" + bytes(1300), "opus cannot decode packet: corrupted stream"),  # > 1275 B
    ],
)
def test_decode_rejects_corrupt_packets(packet: bytes, message: str) -> None:
    dec = OpusDecoder()
    with pytest.raises(ValueError) as info:
        dec.decode(packet)
    assert str(info.value) == message
    # The decoder stays usable afterwards.
    assert dec.decode(OpusEncoder().encode(pcm.tone(700.0))).shape == (FRAME_SAMPLES,)


def test_decode_fec_and_plc_reject_bad_arguments() -> None:
    dec = OpusDecoder()
    with pytest.raises(ValueError) as info:
        dec.decode_fec(b"")
    assert str(info.value) == "empty opus packet: decode_fec() needs the packet after the loss"
    for bad in (0, 100, 5880):
        with pytest.raises(ValueError) as info:
            dec.decode_plc(bad)
        assert str(info.value) == (
            f"frame_samples must be a multiple of 120 in 120..5760, got {bad}"
        )


# TOC and packet duration


@pytest.mark.parametrize(
    ("packet", "mode", "bandwidth_hz", "frame_samples", "samples"),
    [
        (bytes([0 << 3]), "silk", 4000, 480, 480),  # SILK NB 10 ms
        (bytes([5 << 3 | 1]), "silk", 6000, 960, 1920),  # SILK MB 20 ms, code 1: 2 frames
        (bytes([11 << 3 | 2, 0]), "silk", 8000, 2880, 5760),  # SILK WB 60 ms, code 2
        (bytes([13 << 3]), "hybrid", 12000, 960, 960),  # hybrid SWB 20 ms
        (bytes([14 << 3 | 4]), "hybrid", 20000, 480, 480),  # hybrid FB 10 ms, stereo
        (bytes([16 << 3]), "celt", 4000, 120, 120),  # CELT NB 2.5 ms
        (bytes([22 << 3]), "celt", 8000, 480, 480),  # CELT WB 10 ms
        (bytes([27 << 3]), "celt", 12000, 960, 960),  # CELT SWB 20 ms
        (bytes([31 << 3 | 3, 0x80 | 6]), "celt", 20000, 960, 5760),  # CELT FB 20 ms ×6, VBR
    ],
)
def test_toc_parse(
    packet: bytes, mode: str, bandwidth_hz: int, frame_samples: int, samples: int
) -> None:
    toc = Toc.parse(packet)
    assert (toc.mode, toc.bandwidth_hz, toc.frame_samples, toc.samples) == (
        mode,
        bandwidth_hz,
        frame_samples,
        samples,
    )
    assert packet_samples(packet) == samples
    assert OpusDecoder().samples_per_packet(packet) == samples
    assert bytes(toc) == packet[: 2 if toc.code == 3 else 1]


def test_toc_of_encoded_packets() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    for frame in frames_of(voice_like(10)):
        packet = enc.encode(frame)
        toc = Toc.parse(packet)
        assert (toc.samples, toc.stereo, toc.code) == (FRAME_SAMPLES, False, 0)
        assert dec.samples_per_packet(packet) == FRAME_SAMPLES
    # Music at a high bitrate without FEC goes out as CELT fullband (FEC needs the SILK
    # layer, so with FEC on libopus stays hybrid).
    enc = OpusEncoder(bitrate_bps=128_000, signal="music", fec=False)
    packets = [enc.encode(f) for f in frames_of(voice_like(10))]
    assert {(Toc.parse(p).mode, Toc.parse(p).bandwidth_hz) for p in packets[3:]} == {
        ("celt", 20000)
    }


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "empty opus packet"),
        (b"\x03", "code 3 opus packet lacks its frame-count byte"),
        (b"\x03\x40", "opus packet declares 0 frames"),
        (bytes([31 << 3 | 3, 7]), "opus packet lasts 140 ms, over the 120 ms limit"),
    ],
)
def test_toc_parse_errors(packet: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Toc.parse(packet)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": 32}, "opus TOC config must be 0..31, got 32"),
        ({"config": 0, "code": 4}, "opus TOC code must be 0..3, got 4"),
        ({"config": 0, "code": 1, "frame_count": 1}, "a code 1 opus packet has 2 frame(s), got 1"),
        ({"config": 0, "vbr": True}, "only a code 3 opus packet has vbr and padding flags"),
        (
            {"config": 16, "code": 3, "frame_count": 64},
            "opus packet declares 64 frames, needs 1..63",
        ),
    ],
)
def test_toc_rejects_impossible_fields(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Toc(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


@given(st.binary(min_size=1, max_size=4))
def test_toc_parse_agrees_with_libopus(packet: bytes) -> None:
    dec = OpusDecoder()
    try:
        expected: int | None = dec.samples_per_packet(packet)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            Toc.parse(packet)
    else:
        assert packet_samples(packet) == expected


@given(
    config=st.integers(0, 31),
    stereo=st.booleans(),
    code=st.integers(0, 3),
    count=st.integers(1, 63),
    vbr=st.booleans(),
    padding=st.booleans(),
)
def test_toc_bytes_round_trip(
    config: int, stereo: bool, code: int, count: int, vbr: bool, padding: bool
) -> None:
    if code != 3:
        count, vbr, padding = (1 if code == 0 else 2), False, False
    if count * Toc(config).frame_samples > 5760:
        with pytest.raises(ValueError, match=r"over the 120 ms limit$"):
            Toc(config, stereo, code, count, vbr, padding)
        return
    toc = Toc(config, stereo, code, count, vbr, padding)
    assert Toc.parse(bytes(toc)) == toc
    assert Toc.parse(bytes(toc) + b"\x55\xaa") == toc


# Missing library


@pytest.fixture
def unloaded(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Forget the loaded opuslib so the next load imports it afresh; all restored after."""
    opus.load_libopus()  # make sure the real modules are there to be restored
    monkeypatch.setattr(opus, "_lib", None)
    for name in [m for m in sys.modules if m == "opuslib" or m.startswith("opuslib.")]:
        monkeypatch.delitem(sys.modules, name)
    return monkeypatch


def _no_dlopen(path: str) -> None:
    raise OSError(f"{path}: cannot open shared object file: No such file or directory")


@pytest.mark.parametrize(
    ("target", "replacement"),
    [(ctypes.util, "find_library"), (ctypes, "CDLL")],
    ids=["not-found", "dlopen-fails"],
)
def test_missing_libopus_names_the_package(
    unloaded: pytest.MonkeyPatch, target: object, replacement: str
) -> None:
    fake = (lambda name: None) if replacement == "find_library" else _no_dlopen
    unloaded.setattr(target, replacement, fake)
    for make in (opus.load_libopus, OpusEncoder, OpusDecoder, opus.libopus_version):
        with pytest.raises(MissingDependency) as info:
            make()
        assert str(info.value) == LIBOPUS_MISSING
        assert info.value.fields == {"package": "libopus0"}
        assert info.value.__cause__ is not None


def test_missing_opuslib_names_the_package(unloaded: pytest.MonkeyPatch) -> None:
    unloaded.setitem(sys.modules, "opuslib", None)
    with pytest.raises(MissingDependency) as info:
        OpusEncoder()
    assert str(info.value) == OPUSLIB_MISSING
    assert isinstance(info.value, RuntimeError)


def test_library_loads_and_reports_its_version() -> None:
    assert opus.libopus_version().startswith("libopus 1.")
