"""Opus packets of several frames (RFC 6716 §3.2): 20 ms frames joined into one 40/60 ms code 3
packet decode, in libopus itself (opuslib's own Decoder), to exactly the samples the frames
decode to one by one; a joined packet splits back into its frames; malformed packets are
refused by the rule they break."""

from __future__ import annotations

import numpy as np
import opuslib
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE, pcm
from loa.codecs.opus import SILENCE_PACKET, OpusDecoder, OpusEncoder
from loa.codecs.opus_packet import Toc, frames, has_fec, join, joinable, packet_samples


def encoded(audio: pcm.Int16Array, **settings: object) -> list[bytes]:
    enc = OpusEncoder(**settings)  # type: ignore[arg-type]
    return [enc.encode(audio[i : i + FRAME_SAMPLES]) for i in range(0, audio.size, FRAME_SAMPLES)]


def libopus_pcm(packets: list[bytes], samples: int) -> bytes:
    """What libopus makes of ``packets`` in order, through opuslib's own API."""
    dec = opuslib.Decoder(SAMPLE_RATE, 1)
    return b"".join(dec.decode(p, samples) for p in packets)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize(
    ("what", "settings", "audio"),
    [
        ("speech, SILK/hybrid with FEC", {"signal": "voice"}, pcm.voice_like(150 * FRAME_SAMPLES)),
        (
            "tone, CELT",
            {"signal": "music", "bitrate_bps": 64_000},
            pcm.tone(880.0, 150 * FRAME_SAMPLES),
        ),
        # frames over 252 bytes: two-byte lengths in the VBR header
        (
            "music at 510 kbit/s",
            {"signal": "music", "bitrate_bps": 510_000},
            pcm.tone(440.0, 60 * FRAME_SAMPLES),
        ),
    ],
)
def test_joined_frames_decode_exactly_as_the_frames_one_by_one(
    n: int, what: str, settings: dict[str, object], audio: pcm.Int16Array
) -> None:
    packets = encoded(audio, **settings)
    runs = [packets[i : i + n] for i in range(0, len(packets) - n + 1, n)]
    runs = [r for r in runs if all(joinable(r[0], p) for p in r)]  # one TOC per packet
    assert len(runs) > len(packets) // n // 2, what  # most runs share a TOC
    singles = [p for r in runs for p in r]
    joined = [join(r) for r in runs]
    assert libopus_pcm(joined, n * FRAME_SAMPLES) == libopus_pcm(singles, FRAME_SAMPLES)
    for packet, run in zip(joined, runs, strict=True):
        toc, parts = frames(packet)
        assert (toc.code, toc.frame_count, parts) == (3, n, tuple(p[1:] for p in run))
        assert packet_samples(packet) == OpusDecoder().samples_per_packet(packet) == n * 960
        assert has_fec(packet) == has_fec(run[0])
    if settings.get("bitrate_bps") == 510_000:
        assert max(len(p) for p in singles) > 252  # the two-byte lengths were exercised


def test_equal_frames_make_a_cbr_packet() -> None:
    packet = join([SILENCE_PACKET] * 3)
    assert packet == bytes(Toc(31, code=3, frame_count=3)) + SILENCE_PACKET[1:] * 3
    assert not Toc.parse(packet).vbr
    decoded = np.frombuffer(libopus_pcm([packet], 3 * FRAME_SAMPLES), dtype=np.int16)
    assert decoded.size == 3 * FRAME_SAMPLES and not decoded.any()


def test_one_packet_is_left_as_it_is() -> None:
    assert join([b"\x48\x01\x02"]) == b"\x48\x01\x02"


@pytest.mark.parametrize(
    ("packets", "message"),
    [
        ([], "no opus packets to join"),
        ([b"\x48\x01", b"\xf8\xff"], "different TOC configurations"),  # SILK WB, CELT FB
        ([b"\x48\x01", b"\x4c\x01"], "different TOC configurations"),  # mono, then stereo
        ([b"\x48\x01", b""], "different TOC configurations"),
        ([b"\xf8\xff"] * 7, "lasts 140 ms, over the 120 ms limit"),
    ],
)
def test_what_cannot_be_joined(packets: list[bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        join(packets)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"\x49\x01\x02\x03", "code 1 opus packet has an odd number of frame bytes"),
        (b"\x4a\x05\x01", "code 2 opus packet: its first frame is longer than the packet"),
        (b"\x4a\xfd", "ends inside a two-byte frame length"),
        (b"\x4b\x83\x02", "ends inside a frame length"),
        (b"\x4b\x83\x05\x05\x01", "its frame lengths exceed the packet"),
        (b"\x4b\x03\x01\x02", "its frame bytes do not divide by its frames"),
        (b"\x4b\x42\xff", "ends inside its padding length"),
        (b"\x4b\x42\x05\x01\x02", "its frame bytes do not divide by its frames"),
        (b"\x48" + b"\x00" * 1276, "opus frame over 1275 bytes"),
    ],
)
def test_malformed_packets_are_refused_by_rule(packet: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        frames(packet)


def test_padding_is_skipped() -> None:
    # code 3, CBR, padding: 2 frames of 1 byte, 255 + 1 → 254 + 1 = 255 bytes of padding
    packet = b"\x4b\x42\xff\x01" + b"\x0a\x0b" + b"\x00" * 255
    assert frames(packet)[1] == (b"\x0a", b"\x0b")


@given(
    config=st.integers(0, 31),
    parts=st.lists(st.binary(max_size=600), min_size=2, max_size=3),
)
def test_join_then_split_gives_the_frames_back(config: int, parts: list[bytes]) -> None:
    toc = bytes(Toc(config))
    assume(Toc(config).frame_samples * len(parts) <= 5760)  # over 120 ms: refused (above)
    packet = join([toc + p for p in parts])
    parsed, back = frames(packet)
    assert (parsed.config, parsed.code, back) == (config, 3, tuple(parts))
    assert parsed.vbr == (len(set(map(len, parts))) > 1)
