"""RFC 2198 RED payloads: a fixture written out field by field, round trips, every malformed
shape rejected with its message, and noise that never escapes as anything but ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.codecs.red import MAX_BLOCK_LEN, MAX_OFFSET, RedBlock, RedPayload, red_payload
from tests.codecs.test_rtp import h

# previous frame (3 bytes, 960 ticks back) then the primary (2 bytes), both PT 111
RED = h(
    "ef 0f0003"  # F=1 PT=111 | offset 960 (14 bits) | length 3 (10 bits)
    "6f"  # F=0 PT=111: the primary's header
    "aabbcc"  # the redundant block
    "ddee"  # the primary block
)


def test_fixture_fields_and_round_trip() -> None:
    red = RedPayload.parse(RED, payload_type=111)
    assert red.payload_type == 111
    assert red.primary == h("ddee")
    assert red.redundant == (RedBlock(111, 960, h("aabbcc")),)
    assert bytes(red) == RED
    assert red_payload(h("ddee"), 111, h("aabbcc"), 960) == RED


def test_primary_alone() -> None:
    assert red_payload(h("ddee"), 111) == h("6f ddee")
    red = RedPayload.parse(h("6f ddee"))
    assert (red.primary, red.redundant) == (h("ddee"), ())


@pytest.mark.parametrize(
    ("previous", "offset"),
    [(h("aa"), 0), (h("aa"), MAX_OFFSET + 1), (bytes(MAX_BLOCK_LEN + 1), 960), (b"", 960)],
)
def test_redundancy_that_cannot_be_said_is_left_out(previous: bytes, offset: int) -> None:
    assert red_payload(h("ddee"), 111, previous, offset) == h("6f ddee")


def test_two_redundant_blocks_oldest_first() -> None:
    red = RedPayload(111, h("03"), (RedBlock(111, 1920, h("01")), RedBlock(111, 960, h("02"))))
    assert RedPayload.parse(bytes(red)) == red


def test_zero_length_redundant_block_is_left_out() -> None:
    data = h("ef 0f0000 6f ddee")  # offset 960, length 0
    assert RedPayload.parse(data).redundant == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RED payload is empty"),
        (h("ef 0f00"), "RED header 1 truncated: needs 4 bytes at 0, payload has 3"),
        (h("ef 0f0003"), "RED header 2 is missing: payload ends at 4"),
        (h("ef 0f0003 6f aabb"), "RED block 1: length 3 needs 8 bytes, payload has 7"),
        (h("ef 0f0003 6f aabbcc"), "RED primary block is empty: its data would start at 8 of 8"),
        (h("6f"), "RED primary block is empty: its data would start at 1 of 1"),
        (h("ef 000001 6f aa dd"), "RED block 1: timestamp offset 0 is outside 1..16383"),
        (h("e0 0f0001 6f aa dd"), "RED block 1: payload type 96, expected 111"),
        (h("60 dd"), "RED block 1: payload type 96, expected 111"),
        (
            h("ef 078001 ef 0f0001 6f aa bb dd"),
            "RED timestamp offsets must decrease towards the primary, got 480 then 960",
        ),
        (h("ef ffffff") * 9 + h("6f dd"), "RED: more than 8 redundant blocks"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as err:
        RedPayload.parse(data, payload_type=111)
    assert str(err.value) == message


def test_offset_over_the_callers_bound() -> None:
    data = red_payload(h("dd"), 111, h("aa"), 2880)
    assert RedPayload.parse(data, max_offset=2880).redundant[0].offset == 2880
    with pytest.raises(ValueError, match=r"timestamp offset 2880 is outside 1\.\.1920"):
        RedPayload.parse(data, max_offset=1920)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RedBlock(128, 960, b"a"), "RED block payload type must be 0..127, got 128"),
        (lambda: RedBlock(111, 0, b"a"), "RED timestamp offset must be 1..16383 ticks, got 0"),
        (lambda: RedBlock(111, 960, bytes(1024)), "RED block length must be at most 1023"),
        (lambda: RedPayload(111, b""), "RED primary block is empty"),
        (lambda: RedPayload(200, b"a"), "RED primary payload type must be 0..127, got 200"),
        (lambda: red_payload(b"a", 128), "RED payload type must be 0..127, got 128"),
    ],
)
def test_bad_values(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


blocks = st.lists(
    st.tuples(st.integers(0, 127), st.binary(min_size=1, max_size=MAX_BLOCK_LEN)), max_size=8
)


@given(
    st.integers(0, 127),
    st.binary(min_size=1, max_size=300),
    blocks,
    st.integers(1, MAX_OFFSET // 8),
)
def test_round_trip(pt: int, primary: bytes, older: list[tuple[int, bytes]], step: int) -> None:
    n = len(older)
    redundant = tuple(RedBlock(t, (n - i) * step, d) for i, (t, d) in enumerate(older))
    red = RedPayload(pt, primary, redundant)
    assert RedPayload.parse(bytes(red)) == red


@given(st.binary(max_size=64))
def test_noise_is_a_value_error_or_a_payload(data: bytes) -> None:
    try:
        red = RedPayload.parse(data)
    except ValueError:
        return
    assert red.primary and len(bytes(red)) <= len(data)
