"""Ogg Opus: header fixtures, malformed input, writer/reader properties, ffmpeg interop."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loa.codecs.ogg import OggPage
from loa.codecs.ogg_opus import OggOpusWriter, OpusHead, OpusTags
from tests.codecs.test_ogg import (
    HEAD_BODY,
    HEAD_PAGE,
    TAGS_BODY,
    TAGS_PAGE,
    pages_of,
    payload,
    with_byte,
)
from tests.support.ogg import OggOpusReader, iter_packets

# --- OpusHead / OpusTags ----------------------------------------------------------------------


def test_ffmpeg_opus_head_round_trips() -> None:
    head = OpusHead.parse(HEAD_BODY)
    assert head == OpusHead(channels=1, pre_skip=312, input_sample_rate=48_000, output_gain=0)
    assert head.version == 1
    assert bytes(head) == HEAD_BODY


def test_opus_head_gain_is_signed_q7_8() -> None:
    head = OpusHead(channels=2, pre_skip=120, input_sample_rate=0, output_gain=-384)
    assert head.output_gain_db == -1.5
    assert OpusHead.parse(bytes(head)) == head


def test_opus_head_later_minor_version_keeps_its_version_and_ignores_extra_bytes() -> None:
    raw = with_byte(HEAD_BODY, 8, 2) + b"future"
    assert OpusHead.parse(raw) == OpusHead(pre_skip=312, version=2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"OpusHeaX" + HEAD_BODY[8:], "bad OpusHead magic b'OpusHeaX', expected b'OpusHead'"),
        (b"Opus", "bad OpusHead magic b'Opus', expected b'OpusHead'"),
        (HEAD_BODY[:18], "truncated OpusHead: need 19 bytes, got 18"),
        (
            with_byte(HEAD_BODY, 8, 0),
            "unsupported OpusHead version 0: only 1..15 (major version 0) is understood",
        ),
        (
            with_byte(HEAD_BODY, 8, 16),
            "unsupported OpusHead version 16: only 1..15 (major version 0) is understood",
        ),
        (
            with_byte(HEAD_BODY, 18, 1),
            "unsupported OpusHead channel mapping family 1: only family 0 is supported",
        ),
        (
            with_byte(HEAD_BODY, 9, 3),
            "OpusHead channel count 3 needs a channel mapping table; "
            "mapping family 0 carries 1 or 2 channels",
        ),
    ],
)
def test_malformed_opus_head_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        OpusHead.parse(data)


def test_ffmpeg_opus_tags_round_trip() -> None:
    tags = OpusTags.parse(TAGS_BODY)
    assert tags == OpusTags("ffmpeg", ("encoder=Lavc libopus",))
    assert bytes(tags) == TAGS_BODY


def test_opus_tags_carry_utf8_and_ignore_padding() -> None:
    tags = OpusTags("loa 0.1", ("TITLE=Bản tin khẩn cấp", "ARTIST=UBND xã", "X="))
    raw = bytes(tags)
    assert OpusTags.parse(raw) == tags
    assert OpusTags.parse(raw + b"\x00" * 16) == tags


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"OpusHead" + bytes(8), "bad OpusTags magic b'OpusHead', expected b'OpusTags'"),
        (
            b"OpusTags\x06\x00",
            "truncated OpusTags: vendor string length needs 4 bytes at offset 8, 2 left",
        ),
        (
            TAGS_BODY[:15],
            "truncated OpusTags: vendor string needs 6 bytes at offset 12, 3 left",
        ),
        (
            TAGS_BODY[:18],
            "truncated OpusTags: comment count needs 4 bytes at offset 18, 0 left",
        ),
        (
            TAGS_BODY[:18] + b"\x02\x00\x00\x00" + bytes(4),
            "truncated OpusTags: 2 comments need at least 8 bytes, 4 left",
        ),
        (
            TAGS_BODY[:-1],
            "truncated OpusTags: comment 0 needs 20 bytes at offset 26, 19 left",
        ),
        (
            TAGS_BODY[:12] + b"ffm\xffeg" + TAGS_BODY[18:],
            "OpusTags vendor string is not UTF-8: invalid start byte at byte 3",
        ),
        (
            TAGS_BODY[:33] + b" " + TAGS_BODY[34:],
            "OpusTags comment 'encoder Lavc libopus' is not KEY=value with a printable ASCII KEY",
        ),
    ],
)
def test_malformed_opus_tags_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        OpusTags.parse(data)


@pytest.mark.parametrize("comment", ["TITLE", "=value", "TÍTULO=x", "A~B=x"])
def test_opus_tags_refuse_comments_that_are_not_key_value(comment: str) -> None:
    with pytest.raises(ValueError, match="is not KEY=value with a printable ASCII KEY"):
        OpusTags("loa", (comment,))


# --- OggOpusWriter ----------------------------------------------------------------------------


def test_header_pages_are_opus_head_then_tags_and_repeatable() -> None:
    writer = OggOpusWriter(0x1234, pre_skip=312, tags=["TITLE=Tin sáng"])
    headers = writer.header_pages()
    head_page, tags_page = pages_of(headers)
    assert head_page == OggPage(0x1234, 0, 0, b"\x13", bytes(OpusHead(pre_skip=312)), bos=True)
    tags_raw = bytes(OpusTags("loa", ("TITLE=Tin sáng",)))
    assert tags_page == OggPage(0x1234, 1, 0, bytes((len(tags_raw),)), tags_raw)
    assert writer.header_pages() == headers
    assert (writer.sequence, writer.granule, writer.serial) == (2, 0, 0x1234)


def test_live_writer_puts_each_packet_on_its_own_page() -> None:
    writer = OggOpusWriter(7)
    pages = [pages_of(writer.write_packet(bytes([n]) * 80)) for n in range(3)]
    assert pages == [
        [OggPage(7, 2, 960, b"\x50", b"\x00" * 80)],
        [OggPage(7, 3, 1920, b"\x50", b"\x01" * 80)],
        [OggPage(7, 4, 2880, b"\x50", b"\x02" * 80)],
    ]
    assert writer.flush() == b""


def test_batched_writer_closes_a_page_every_n_packets() -> None:
    writer = OggOpusWriter(7, packets_per_page=3)
    out = [writer.write_packet(b"p" * 10, samples=480) for _ in range(7)]
    assert [len(pages_of(o)) for o in out] == [0, 0, 1, 0, 0, 1, 0]
    assert pages_of(out[2]) == [OggPage(7, 2, 1440, b"\x0a" * 3, b"p" * 30)]
    assert pages_of(out[5])[0].granule_position == 2880
    assert pages_of(writer.flush()) == [OggPage(7, 4, 3360, b"\x0a", b"p" * 10)]


def test_batched_writer_closes_a_page_near_4_kib() -> None:
    writer = OggOpusWriter(7, packets_per_page=50)
    out = [writer.write_packet(b"q" * 1000) for _ in range(5)]
    assert [o == b"" for o in out] == [True, True, True, True, False]
    (page,) = pages_of(out[4])
    assert (page.segments, page.granule_position) == (b"\xff\xff\xff\xeb" * 5, 4800)


@pytest.mark.parametrize(
    ("size", "lacing"),
    [(0, b"\x00"), (254, b"\xfe"), (255, b"\xff\x00"), (510, b"\xff\xff\x00"), (256, b"\xff\x01")],
)
def test_packet_lacing(size: int, lacing: bytes) -> None:
    (page,) = pages_of(OggOpusWriter(1).write_packet(b"z" * size))
    assert page.segments == lacing


def test_packet_of_255_times_255_bytes_ends_on_a_zero_lacing_page() -> None:
    packet = payload(255 * 255, 1)
    first, second = pages_of(OggOpusWriter(1).write_packet(packet))
    assert first == OggPage(1, 2, -1, b"\xff" * 255, packet)
    assert second == OggPage(1, 3, 960, b"\x00", b"", continued=True)


def test_packet_of_70000_bytes_spans_two_pages() -> None:
    packet = payload(70_000, 2)
    first, second = pages_of(OggOpusWriter(1).write_packet(packet))
    assert first == OggPage(1, 2, -1, b"\xff" * 255, packet[:65025])
    assert second == OggPage(1, 3, 960, b"\xff" * 19 + b"\x82", packet[65025:], continued=True)


def test_page_granule_is_that_of_the_last_packet_ending_on_it() -> None:
    writer = OggOpusWriter(1, packets_per_page=2)
    small, big = b"s" * 100, payload(70_000, 3)
    assert writer.write_packet(small) == b""
    first, second = pages_of(writer.write_packet(big))
    assert first == OggPage(1, 2, 960, b"\x64" + b"\xff" * 254, small + big[: 254 * 255])
    assert second.continued
    assert (second.granule_position, len(second.segments)) == (1920, 21)


def test_close_flags_the_last_page_carrying_pending_packets() -> None:
    writer = OggOpusWriter(1, packets_per_page=4)
    writer.write_packet(b"a" * 5)
    writer.write_packet(b"b" * 5)
    assert pages_of(writer.close()) == [
        OggPage(1, 2, 1920, b"\x05\x05", b"a" * 5 + b"b" * 5, eos=True)
    ]


def test_close_with_nothing_pending_writes_an_empty_eos_page_with_the_last_granule() -> None:
    writer = OggOpusWriter(1)
    writer.write_packet(b"a")
    writer.write_packet(b"b", samples=120)
    assert pages_of(writer.close()) == [OggPage(1, 4, 1080, b"", b"", eos=True)]
    assert writer.close() == b""
    assert writer.flush() == b""
    with pytest.raises(RuntimeError, match=r"^OggOpusWriter is closed$"):
        writer.write_packet(b"c")


def test_tags_larger_than_a_page_span_header_pages() -> None:
    writer = OggOpusWriter(5, tags=["COVER=" + "x" * 70_000])
    pages = pages_of(writer.header_pages())
    assert [(p.sequence, p.granule_position, p.continued, p.bos) for p in pages] == [
        (0, 0, False, True),
        (1, -1, False, False),
        (2, 0, True, False),
    ]
    reader = OggOpusReader()
    assert reader.feed(writer.header_pages() + writer.write_packet(b"audio")) == [b"audio"]
    assert reader.tags == writer.tags


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"serial": -1}, "Ogg stream serial must be in 0..4294967295, got -1"),
        ({"packets_per_page": 0}, "packets_per_page must be at least 1, got 0"),
        ({"pre_skip": 70_000}, "OpusHead pre-skip must be in 0..65535, got 70000"),
        ({"output_gain": 40_000}, "OpusHead output gain must be in -32768..32767, got 40000"),
        ({"input_sample_rate": -1}, "OpusHead input sample rate must be in 0..4294967295, got -1"),
        ({"tags": ["no equals sign"]}, "OpusTags comment 'no equals sign' is not KEY=value"),
    ],
)
def test_writer_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"serial": 1, **kwargs}
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        OggOpusWriter(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("samples", [-1, 5761])
def test_writer_rejects_impossible_packet_durations(samples: int) -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(f"Opus packet duration (48 kHz samples) must be in 0..5760, got {samples}"),
    ):
        OggOpusWriter(1).write_packet(b"x", samples=samples)


# --- OggOpusReader ----------------------------------------------------------------------------


def written(
    packets: list[bytes], serial: int = 9, pre_skip: int = 312
) -> tuple[bytes, list[bytes]]:
    """A stream's header pages and, one item per call, what write_packet and close returned."""
    writer = OggOpusWriter(serial, pre_skip=pre_skip)
    chunks = [writer.write_packet(p) for p in packets] + [writer.close()]
    return writer.header_pages(), chunks


def test_reader_gets_headers_packets_and_granule() -> None:
    packets = [b"one", payload(70_000, 4), b""]
    headers, chunks = written(packets, pre_skip=120)
    reader = OggOpusReader()
    assert reader.feed(headers) == []
    assert reader.head == OpusHead(pre_skip=120)
    assert reader.tags == OpusTags("loa")
    assert reader.feed(b"".join(chunks)) == packets
    assert (reader.granule, reader.serial, reader.ended, reader.buffered) == (2880, 9, True, 0)
    assert (reader.garbage_bytes, reader.bad_pages, reader.lost_pages) == (0, 0, 0)
    assert reader.dropped_fragments == 0
    reader.finish()


def test_reader_reads_ffmpeg_header_pages() -> None:
    reader = OggOpusReader()
    assert reader.feed(HEAD_PAGE + TAGS_PAGE) == []
    assert reader.head == OpusHead(pre_skip=312)
    assert reader.tags == OpusTags("ffmpeg", ("encoder=Lavc libopus",))


def test_reader_fed_byte_by_byte_holds_back_partial_pages() -> None:
    headers, chunks = written([b"abc", b"defg"])
    stream = headers + b"".join(chunks)
    reader = OggOpusReader()
    out = []
    for i in range(len(stream)):
        out += reader.feed(stream[i : i + 1])
    assert out == [b"abc", b"defg"]
    assert reader.buffered == 0


def test_reader_rejects_a_stream_that_is_not_opus() -> None:
    vorbis = b"\x01vorbis" + bytes(22)
    page = bytes(OggPage(3, 0, 0, bytes((len(vorbis),)), vorbis, bos=True))
    with pytest.raises(
        ValueError,
        match=re.escape("not an Ogg Opus stream: first packet starts b'\\x01vorbis\\x00'"),
    ):
        OggOpusReader().feed(page)


def test_reader_skips_garbage_before_the_stream() -> None:
    headers, chunks = written([b"x" * 300])
    reader = OggOpusReader()
    assert reader.feed(b"ICY 200 OK\r\n\r\n" + headers + b"".join(chunks)) == [b"x" * 300]
    assert (reader.garbage_bytes, reader.bad_pages) == (14, 0)


def test_reader_resyncs_past_a_false_capture_pattern() -> None:
    headers, chunks = written([b"ok"])
    reader = OggOpusReader()
    fake = b"junk" + b"OggS" + bytes(30)  # a 27-byte empty "page" whose CRC is wrong
    assert reader.feed(fake + headers + b"".join(chunks)) == [b"ok"]
    assert (reader.garbage_bytes, reader.bad_pages) == (len(fake), 1)


def test_reader_skips_a_damaged_page_and_counts_the_gap() -> None:
    headers, chunks = written([b"p1", b"p2", b"p3", b"p4"])
    damaged = chunks[2][:-1] + b"!"
    reader = OggOpusReader()
    assert reader.feed(headers + b"".join([*chunks[:2], damaged, *chunks[3:]])) == [
        b"p1",
        b"p2",
        b"p4",
    ]
    assert (reader.bad_pages, reader.lost_pages) == (1, 1)
    assert reader.garbage_bytes == len(damaged)


def test_reader_drops_the_rest_of_a_packet_whose_first_page_was_lost() -> None:
    headers, chunks = written([b"a" * 100, payload(70_000, 5), b"c" * 50])
    span = chunks[1]
    second_page = span[len(bytes(pages_of(span)[0])) :]
    reader = OggOpusReader()
    assert reader.feed(headers + chunks[0] + second_page + chunks[2]) == [b"a" * 100, b"c" * 50]
    assert (reader.lost_pages, reader.dropped_fragments) == (1, 1)


def test_reader_drops_a_packet_whose_last_page_was_lost() -> None:
    headers, chunks = written([b"a" * 100, payload(70_000, 6), b"c" * 50])
    first_page = bytes(pages_of(chunks[1])[0])
    reader = OggOpusReader()
    assert reader.feed(headers + chunks[0] + first_page + chunks[2]) == [b"a" * 100, b"c" * 50]
    assert (reader.lost_pages, reader.dropped_fragments) == (1, 1)


def test_reader_follows_a_chained_stream() -> None:
    headers_a, chunks_a = written([b"first"], serial=1)
    headers_b, chunks_b = written([b"second"], serial=2, pre_skip=120)
    reader = OggOpusReader()
    assert reader.feed(headers_a + b"".join(chunks_a)) == [b"first"]
    assert reader.ended
    assert reader.feed(headers_b + chunks_b[0]) == [b"second"]
    assert (reader.serial, reader.head, reader.ended, reader.granule) == (
        2,
        OpusHead(pre_skip=120),
        False,
        960,
    )


def test_reader_refuses_pages_before_a_bos_page() -> None:
    _, chunks = written([b"a"], serial=7)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Ogg page of serial 0x00000007 (sequence 2) before any BOS page: "
            "the stream must start with its headers"
        ),
    ):
        OggOpusReader().feed(chunks[0])


def test_reader_refuses_multiplexed_streams() -> None:
    headers_a, _ = written([b"a"], serial=1)
    headers_b, chunks_b = written([b"b"], serial=2)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "BOS page of serial 0x00000002 while stream 0x00000001 is open: "
            "multiplexed Ogg streams are not supported"
        ),
    ):
        OggOpusReader().feed(headers_a + headers_b)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Ogg page of serial 0x00000002 inside stream 0x00000001: "
            "multiplexed Ogg streams are not supported"
        ),
    ):
        OggOpusReader().feed(headers_a + chunks_b[0])


def test_reader_refuses_pages_after_eos() -> None:
    headers, chunks = written([b"a"], serial=1)
    late = bytes(OggPage(1, 9, 1920, b"\x01", b"z"))
    with pytest.raises(
        ValueError, match=re.escape("Ogg page of serial 0x00000001 after its EOS page")
    ):
        OggOpusReader().feed(headers + b"".join(chunks) + late)


def test_reader_refuses_a_second_packet_that_is_not_opus_tags() -> None:
    head_page = OggOpusWriter(1).header_pages()[:47]
    audio_page = bytes(OggPage(1, 1, 960, b"\x06", b"audio!"))
    with pytest.raises(ValueError, match=re.escape("bad OpusTags magic b'audio!', expected")):
        OggOpusReader().feed(head_page + audio_page)


def test_reader_bounds_packet_size() -> None:
    headers, chunks = written([b"x" * 600, payload(70_000, 7)])
    reader = OggOpusReader(max_packet_bytes=500)
    with pytest.raises(ValueError, match=r"^Ogg packet of 600 bytes exceeds 500$"):
        reader.feed(headers + chunks[0])
    reader = OggOpusReader(max_packet_bytes=65_000)
    reader.feed(headers + chunks[0])
    with pytest.raises(ValueError, match=r"^Ogg packet of at least 65025 bytes exceeds 65000$"):
        reader.feed(chunks[1])


def test_finish_reports_truncated_or_missing_streams() -> None:
    headers, chunks = written([b"a"])
    reader = OggOpusReader()
    reader.feed(headers + chunks[0][:-10])
    with pytest.raises(
        ValueError, match=r"^truncated Ogg stream: the last 19 bytes are not a complete page$"
    ):
        reader.finish()
    with pytest.raises(ValueError, match=r"^no Ogg Opus stream in the input$"):
        list(iter_packets(b""))
    with pytest.raises(ValueError, match=r"^Ogg Opus stream ends before its OpusTags header$"):
        list(iter_packets(headers[:47]))


def test_iter_packets_reads_a_whole_stream() -> None:
    headers, chunks = written([b"a", b"bb", b"ccc"])
    assert list(iter_packets(headers + b"".join(chunks))) == [b"a", b"bb", b"ccc"]


@settings(deadline=None, max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 70_000), max_size=6),
    durations=st.lists(st.sampled_from([120, 480, 960, 1920, 2880]), min_size=6, max_size=6),
    packets_per_page=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 300_000), max_size=8),
)
def test_written_packets_read_back_identically(
    sizes: list[int], durations: list[int], packets_per_page: int, seed: int, cuts: list[int]
) -> None:
    packets = [payload(size, seed + i) for i, size in enumerate(sizes)]
    writer = OggOpusWriter(seed, packets_per_page=packets_per_page)
    stream = writer.header_pages()
    stream += b"".join(writer.write_packet(p, d) for p, d in zip(packets, durations, strict=False))
    stream += writer.close()
    reader = OggOpusReader()
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    got = [p for a, b in itertools.pairwise(bounds) for p in reader.feed(stream[a:b])]
    assert got == packets
    assert reader.granule == writer.granule == sum(durations[: len(sizes)])
    assert (reader.garbage_bytes, reader.bad_pages, reader.lost_pages) == (0, 0, 0)
    assert (reader.dropped_fragments, reader.buffered, reader.ended) == (0, 0, True)
    assert all(len(p.segments) <= 255 for p in pages_of(stream))


# --- interop with the real ffmpeg --------------------------------------------------------------

FFMPEG = shutil.which("ffmpeg")
# The README's test command installs ffmpeg: its absence is a failure, not a skip.
needs_ffmpeg = pytest.mark.usefixtures("ffmpeg_installed")


@pytest.fixture(scope="session")
def ffmpeg_installed() -> None:
    if FFMPEG is None:
        pytest.fail("ffmpeg is not installed; the README's test command installs it")


def ffmpeg(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert FFMPEG is not None
    return subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", *args],
        capture_output=True,
        timeout=60,
        check=True,
    )


def ffmpeg_opus_encoder() -> list[str]:
    encoders = ffmpeg("-encoders").stdout.decode()
    if " libopus " in encoders:
        return ["-c:a", "libopus"]
    return ["-c:a", "opus", "-strict", "-2"]


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / 48_000)[int(np.argmax(spectrum))])


@pytest.mark.e2e
@needs_ffmpeg
@pytest.mark.parametrize("packets_per_page", [1, 50])
def test_ffmpeg_decodes_what_the_writer_writes(tmp_path: Path, packets_per_page: int) -> None:
    import opuslib

    encoder = opuslib.Encoder(48_000, 1, "audio")
    t = np.arange(50 * 960) / 48_000
    tone = (np.sin(2 * np.pi * 1000 * t) * 12_000).astype(np.int16)
    writer = OggOpusWriter(
        0xC0FFEE, pre_skip=encoder.lookahead, vendor="loa-test", packets_per_page=packets_per_page
    )
    stream = writer.header_pages()
    for frame in tone.reshape(50, 960):
        stream += writer.write_packet(encoder.encode(frame.tobytes(), 960))
    stream += writer.close()
    path = tmp_path / "tone.opus"
    path.write_bytes(stream)

    result = ffmpeg("-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "48000", "-")
    assert result.stderr == b""  # ffmpeg found nothing to complain about in our pages
    pcm = np.frombuffer(result.stdout, dtype="<i2")
    # ffmpeg drops the pre-skip and ends where the last granule says: exactly, not just ±1 frame.
    assert len(pcm) == writer.granule - encoder.lookahead == 50 * 960 - encoder.lookahead
    assert dominant_hz(pcm) == pytest.approx(1000, rel=0.01)


@pytest.mark.e2e
@needs_ffmpeg
def test_reader_reads_what_ffmpeg_writes(tmp_path: Path) -> None:
    import opuslib

    path = tmp_path / "sine.opus"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=1000:duration=1", *ffmpeg_opus_encoder(),
        "-ar", "48000", "-ac", "1", str(path),
    )  # fmt: skip
    data = path.read_bytes()
    reader = OggOpusReader()
    packets = [p for i in range(0, len(data), 1000) for p in reader.feed(data[i : i + 1000])]
    reader.finish()
    assert reader.head is not None
    assert (reader.head.channels, reader.ended, reader.bad_pages) == (1, True, 0)

    decoder = opuslib.Decoder(48_000, 1)
    pcm = np.concatenate([np.frombuffer(decoder.decode(p, 5760), dtype="<i2") for p in packets])
    playable = reader.granule - reader.head.pre_skip
    assert playable == pytest.approx(48_000, abs=960)  # one second, give or take a frame
    assert reader.granule <= len(pcm) < reader.granule + 960  # the last packet is trimmed
    assert dominant_hz(pcm[reader.head.pre_skip : reader.granule]) == pytest.approx(1000, rel=0.01)
