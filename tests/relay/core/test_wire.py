"""Speaker protocol control datagrams: a byte fixture, errors by field, MACs, round trips."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.relay.core.wire import (
    SIZE,
    ControlDatagram,
    DatagramType,
    looks_like_control,
)

KEY = bytes(range(32))
SID = bytes.fromhex("0123456789abcdef")
# hello, session 0123456789abcdef, counter 7, MAC = HMAC-SHA256(KEY, bytes 0..16)[:8],
# written out from the layout in docs/DESIGN.md rather than by the code under test.
BODY = b"LOA" + b"\x01" + b"\x01" + SID + b"\x00\x00\x00\x07"
HELLO = BODY + hmac.new(KEY, BODY, hashlib.sha256).digest()[:8]


def test_size_is_25() -> None:
    assert SIZE == 25 == len(HELLO)


def test_signed_matches_fixture() -> None:
    dgram = ControlDatagram.signed(DatagramType.HELLO, SID, 7, KEY)
    assert bytes(dgram) == HELLO


def test_parse_fixture() -> None:
    dgram = ControlDatagram.parse(HELLO)
    assert dgram.type is DatagramType.HELLO
    assert dgram.session == SID
    assert dgram.counter == 7
    assert dgram.tag == HELLO[17:]
    assert dgram.verify(KEY)
    assert bytes(dgram) == HELLO


def test_counter_is_big_endian() -> None:
    dgram = ControlDatagram.signed(DatagramType.KEEPALIVE, SID, 0x01020304, KEY)
    assert bytes(dgram)[4] == 2
    assert bytes(dgram)[13:17] == b"\x01\x02\x03\x04"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "control datagram must be 25, 33 or 49 bytes, got 0"),
        (HELLO[:-1], "control datagram must be 25, 33 or 49 bytes, got 24"),
        (HELLO + b"\x00", "control datagram must be 25, 33 or 49 bytes, got 26"),
        (HELLO + bytes(16), "control datagram must be 25, 33 or 49 bytes, got 41"),
        (b"LOB" + HELLO[3:], "control datagram magic must be b'LOA', got b'LOB'"),
        (HELLO[:3] + b"\x02" + HELLO[4:], "control datagram version 2 is not supported (want 1)"),
        (HELLO[:3] + b"\x00" + HELLO[4:], "control datagram version 0 is not supported (want 1)"),
        (HELLO[:4] + b"\x00" + HELLO[5:], "control datagram type 0 is unknown"),
        (HELLO[:4] + b"\x04" + HELLO[5:], "control datagram type 4 is unknown"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ControlDatagram.parse(data)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("session", "counter", "message"),
    [
        (SID[:7], 1, "session id must be 8 bytes, got 7"),
        (SID + b"\x00", 1, "session id must be 8 bytes, got 9"),
        (SID, -1, "counter must fit in 32 bits, got -1"),
        (SID, 1 << 32, "counter must fit in 32 bits, got 4294967296"),
    ],
)
def test_signed_errors(session: bytes, counter: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ControlDatagram.signed(DatagramType.HELLO, session, counter, KEY)
    assert str(info.value) == message


# A keepalive probing the clock: t1 after the MAC, which covers it; its ack carries t1, t2, t3.
PROBE_BODY = b"LOA\x01\x02" + SID + b"\x00\x00\x00\x08"
T1 = (0x0102030405060708).to_bytes(8, "big")
PROBE = PROBE_BODY + hmac.new(KEY, PROBE_BODY + T1, hashlib.sha256).digest()[:8] + T1


def test_probe_fixture_round_trips_and_its_times_are_signed() -> None:
    dgram = ControlDatagram.signed(DatagramType.KEEPALIVE, SID, 8, KEY, (0x0102030405060708,))
    assert bytes(dgram) == PROBE and len(PROBE) == 33
    parsed = ControlDatagram.parse(PROBE)
    assert parsed.times == (0x0102030405060708,) and parsed.verify(KEY)
    moved = PROBE[:-1] + bytes([PROBE[-1] ^ 1])  # a time changed on the way: MAC fails
    assert not ControlDatagram.parse(moved).verify(KEY)
    ack = ControlDatagram.signed(DatagramType.ACK, SID, 8, KEY, (1, 2, (1 << 64) - 1))
    data = bytes(ack)
    assert len(data) == 49
    assert data[25:] == bytes(7) + b"\x01" + bytes(7) + b"\x02" + b"\xff" * 8
    assert ControlDatagram.parse(data) == ack and ack.verify(KEY)
    assert not ControlDatagram.parse(data[:25]).verify(KEY)  # stripped of its times


@pytest.mark.parametrize("times", [(1, 2), (1, 2, 3, 4), (-1,), (1 << 64,)])
def test_signed_refuses_bad_times(times: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="times must be 0, 1 or 3 unsigned 64-bit values"):
        ControlDatagram.signed(DatagramType.ACK, SID, 1, KEY, times)


def test_verify_rejects_wrong_key_and_tampering() -> None:
    dgram = ControlDatagram.parse(HELLO)
    assert not dgram.verify(bytes(32))
    for i in range(17):  # flip each signed byte: the MAC must cover all of them
        tampered = bytearray(HELLO)
        tampered[i] ^= 0x01
        try:
            parsed = ControlDatagram.parse(bytes(tampered))
        except ValueError:
            continue  # magic, version or type no longer parse
        assert not parsed.verify(KEY), i
    tampered_tag = HELLO[:-1] + bytes([HELLO[-1] ^ 0x80])
    assert not ControlDatagram.parse(tampered_tag).verify(KEY)


def test_looks_like_control() -> None:
    assert looks_like_control(HELLO)
    assert looks_like_control(b"LOA")
    assert not looks_like_control(b"LO")
    assert not looks_like_control(b"\x80\x6f" + bytes(10))  # an RTP header
    assert not looks_like_control(b"\x81\xc9" + bytes(6))  # an RTCP RR


@given(
    kind=st.sampled_from(DatagramType),
    session=st.binary(min_size=8, max_size=8),
    counter=st.integers(0, 0xFFFFFFFF),
    key=st.binary(min_size=32, max_size=32),
)
def test_signed_round_trip(kind: DatagramType, session: bytes, counter: int, key: bytes) -> None:
    dgram = ControlDatagram.signed(kind, session, counter, key)
    data = bytes(dgram)
    assert len(data) == SIZE
    assert looks_like_control(data)
    parsed = ControlDatagram.parse(data)
    assert parsed == dgram
    assert parsed.verify(key)
    other = bytes(b ^ 0xFF for b in key)
    assert not parsed.verify(other)


WELL_FORMED = st.builds(
    lambda kind, rest: b"LOA\x01" + bytes([kind]) + rest,
    st.sampled_from([1, 2, 3]),
    st.sampled_from([20, 28, 44]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)


@given(st.one_of(st.binary(max_size=60), WELL_FORMED))
def test_parse_raises_only_value_error_and_keeps_bytes(data: bytes) -> None:
    try:
        dgram = ControlDatagram.parse(data)
    except ValueError:
        sized = len(data) in (SIZE, SIZE + 8, SIZE + 24)
        assert not sized or data[:4] != b"LOA\x01" or data[4] not in (1, 2, 3)
        return
    assert bytes(dgram) == data
