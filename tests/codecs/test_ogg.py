"""The Ogg container: CRC and page byte fixtures, malformed pages, page round-trip properties."""

from __future__ import annotations

import random
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.codecs.ogg import OggPage, crc32_ogg

# The first two pages ffmpeg 5.1 writes for `-c:a libopus -ac 1 -fflags +bitexact`.
HEAD_PAGE = bytes.fromhex(
    "4f6767530002000000000000000000000000000000000228b57201134f707573486561640101380180bb0000000000"
)
TAGS_PAGE = bytes.fromhex(
    "4f67675300000000000000000000000000000100000049"
    "95be54012e4f707573546167730600000066666d7065670100000014000000"
    "656e636f6465723d4c617663206c69626f707573"
)
HEAD_BODY = HEAD_PAGE[28:]
TAGS_BODY = TAGS_PAGE[28:]


def crc_reference(data: bytes) -> int:
    """The Ogg CRC bit by bit, straight from RFC 3533's definition: an independent oracle."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ (0x04C11DB7 if crc & 0x80000000 else 0)
            crc &= 0xFFFFFFFF
    return crc


def pages_of(data: bytes) -> list[OggPage]:
    pages, pos = [], 0
    while pos < len(data):
        page, used = OggPage.parse(data[pos:])
        pages.append(page)
        pos += used
    return pages


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def with_byte(data: bytes, index: int, value: int) -> bytes:
    return data[:index] + bytes((value,)) + data[index + 1 :]


# --- CRC ------------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    # CRC-32/OGG check value from the CRC catalogue; empty input leaves the register at 0.
    assert crc32_ogg(b"123456789") == 0x89A1897F
    assert crc32_ogg(b"") == 0


def test_crc_of_ffmpeg_page_with_zeroed_field_is_its_stored_crc() -> None:
    zeroed = HEAD_PAGE[:22] + bytes(4) + HEAD_PAGE[26:]
    assert crc32_ogg(zeroed) == 0x72B52802 == struct.unpack_from("<I", HEAD_PAGE, 22)[0]
    assert crc32_ogg(bytearray(zeroed)) == crc32_ogg(memoryview(zeroed)) == 0x72B52802


@given(st.binary(max_size=600))
def test_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc32_ogg(data) == crc_reference(data)


# --- OggPage --------------------------------------------------------------------------------


def test_ffmpeg_head_page_round_trips() -> None:
    page, used = OggPage.parse(HEAD_PAGE + TAGS_PAGE)
    assert used == len(HEAD_PAGE) == 47
    assert page == OggPage(0, 0, 0, b"\x13", HEAD_BODY, bos=True)
    assert (page.header_type, page.continued, page.eos) == (0x02, False, False)
    assert bytes(page) == HEAD_PAGE


def test_ffmpeg_tags_page_round_trips() -> None:
    page, used = OggPage.parse(TAGS_PAGE)
    assert used == len(TAGS_PAGE)
    assert page == OggPage(0, 1, 0, b"\x2e", TAGS_BODY)
    assert bytes(page) == TAGS_PAGE


def test_page_flags_and_no_packet_granule_round_trip() -> None:
    page = OggPage(0xDEADBEEF, 0xFFFFFFFF, -1, b"\xff\xff", b"x" * 510, continued=True, eos=True)
    raw = bytes(page)
    assert raw[5] == 0x05
    assert raw[6:14] == b"\xff" * 8
    assert OggPage.parse(raw) == (page, len(raw))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (HEAD_PAGE[:26], "truncated Ogg page header: need 27 bytes, got 26"),
        (b"OggT" + HEAD_PAGE[4:], "bad Ogg capture pattern b'OggT', expected b'OggS'"),
        (with_byte(HEAD_PAGE, 4, 1), "unsupported Ogg stream structure version 1, expected 0"),
        (with_byte(HEAD_PAGE, 5, 0x0A), "Ogg page header_type 0x0a has reserved bits set"),
        (HEAD_PAGE[:27], "truncated Ogg page header: segment table needs 28 bytes, got 27"),
        (HEAD_PAGE[:40], "truncated Ogg page body: page needs 47 bytes, got 40"),
        (
            with_byte(HEAD_PAGE, 38, 0x39),  # pre-skip 312 -> 313 in the body
            "Ogg page CRC mismatch: header says 0x72b52802, computed 0x80b58264",
        ),
        (
            with_byte(HEAD_PAGE, 22, 0x03),  # the stored CRC itself damaged
            "Ogg page CRC mismatch: header says 0x72b52803, computed 0x72b52802",
        ),
    ],
)
def test_malformed_page_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        OggPage.parse(data)


def test_crc_mismatch_fixture_agrees_with_reference() -> None:
    damaged = with_byte(HEAD_PAGE, 38, 0x39)
    assert crc_reference(damaged[:22] + bytes(4) + damaged[26:]) == 0x80B58264


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segments": b"\x03"}, "Ogg page segment table sums to 3 bytes but the body has 2"),
        ({"segments": bytes(256), "body": b""}, "Ogg page has 256 segments, at most 255 fit"),
        ({"serial": 2**32}, "Ogg page serial must be in 0..4294967295, got 4294967296"),
        ({"sequence": -1}, "Ogg page sequence must be in 0..4294967295, got -1"),
        (
            {"granule_position": 2**63},
            "Ogg page granule position must be in "
            "-9223372036854775808..9223372036854775807, got 9223372036854775808",
        ),
    ],
)
def test_invalid_page_fields_are_rejected(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "serial": 1,
        "sequence": 0,
        "granule_position": 0,
        "segments": b"\x02",
        "body": b"ab",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        OggPage(**fields)  # type: ignore[arg-type]


@st.composite
def ogg_pages(draw: st.DrawFn) -> OggPage:
    segments = draw(st.binary(max_size=255))
    return OggPage(
        serial=draw(st.integers(0, 2**32 - 1)),
        sequence=draw(st.integers(0, 2**32 - 1)),
        granule_position=draw(st.integers(-(2**63), 2**63 - 1)),
        segments=segments,
        body=payload(sum(segments), draw(st.integers(0, 2**16))),
        continued=draw(st.booleans()),
        bos=draw(st.booleans()),
        eos=draw(st.booleans()),
    )


@given(ogg_pages(), st.binary(max_size=8))
def test_page_serialise_parse_identity(page: OggPage, trailing: bytes) -> None:
    raw = bytes(page)
    assert len(raw) == 27 + len(page.segments) + len(page.body)
    assert crc_reference(raw[:22] + bytes(4) + raw[26:]) == struct.unpack_from("<I", raw, 22)[0]
    parsed, used = OggPage.parse(raw + trailing)
    assert (parsed, used) == (page, len(raw))
    assert bytes(parsed) == raw
