"""The audio bundle: byte layout, round trips (hypothesis), precise refusals, the Bundler."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.cluster.bundle import (
    END,
    ITEM_END,
    MAX_PAYLOAD,
    START,
    Bundle,
    Bundler,
    Packet,
)

FIXTURE = (
    b"LB\x01\x02"  # magic, version, sender id length
    + struct.pack("!QI", 1_700_000_000_123_456, 42)  # sent µs, tick
    + b"n1"
    + b"\x00\x02"  # two packets
    + b"\x04bc-1" + struct.pack("!IBH", 7, START, 3) + b"\xfc\x01\x02"
    + b"\x04bc-2" + struct.pack("!IBH", 2**32 - 1, ITEM_END | END, 1) + b"\xf8"
)  # fmt: skip
PARSED = Bundle(
    "n1",
    1_700_000_000_123_456,
    42,
    (Packet("bc-1", 7, START, b"\xfc\x01\x02"), Packet("bc-2", 2**32 - 1, ITEM_END | END, b"\xf8")),
)


def test_fixture_round_trips() -> None:
    assert Bundle.parse(FIXTURE) == PARSED
    assert bytes(PARSED) == FIXTURE


keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=60)
packets = st.builds(
    Packet,
    keys,
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, START, ITEM_END, END, START | END, ITEM_END | END]),
    st.binary(min_size=1, max_size=MAX_PAYLOAD),
)


@given(
    st.text("abcxyz-0123456789ệ", min_size=1, max_size=40),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.lists(packets, max_size=12),
)
def test_round_trip(sender: str, sent: int, tick: int, items: list[Packet]) -> None:
    bundle = Bundle(sender, sent, tick, tuple(items))
    assert Bundle.parse(bytes(bundle)) == bundle


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (FIXTURE[:10], "bundle of 10 bytes is shorter than its 16-byte header"),
        (b"XX" + FIXTURE[2:], "not an audio bundle: magic b'XX', expected b'LB'"),
        (FIXTURE[:2] + b"\x02" + FIXTURE[3:], "audio bundle version 2 is not supported (only 1)"),
        (FIXTURE[:3] + b"\x00" + FIXTURE[4:], "audio bundle truncated in its sender id (48 bytes)"),
        (FIXTURE[:19], "audio bundle truncated in its sender id (19 bytes)"),
        (FIXTURE[:20], "audio bundle packet 0: truncated before its key"),
        (FIXTURE[:26], "audio bundle packet 0: truncated in its key or header"),
        (FIXTURE[:33], "audio bundle packet 0 (bc-1): payload of 3 bytes runs past the end"),
        (FIXTURE + b"\x00", "audio bundle has 1 bytes after its 2 packets"),
        (FIXTURE[:16] + b"\xff\xfe" + FIXTURE[18:], "audio bundle: sender node id is not UTF-8"),
        (
            FIXTURE[:21] + b"\xff" + FIXTURE[22:],
            "audio bundle: packet 0 key is not UTF-8",
        ),
        (
            FIXTURE[:29] + b"\x08" + FIXTURE[30:],
            "audio bundle packet 0: packet bc-1: unknown flags 0x08",
        ),
        (
            FIXTURE[:30] + b"\x00\x00" + FIXTURE[32:35],
            "audio bundle packet 0: packet bc-1: payload must be 1-1276 bytes, got 0",
        ),
    ],
)
def test_bad_bundles_are_refused_precisely(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Bundle.parse(data)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Packet("", 0, 0, b"x"), "broadcast key must be 1-255 bytes of UTF-8, got 0"),
        (
            lambda: Packet("k" * 256, 0, 0, b"x"),
            "broadcast key must be 1-255 bytes of UTF-8, got 256",
        ),
        (lambda: Packet("k", -1, 0, b"x"), "packet k: frame index must be 0..2^32-1, got -1"),
        (
            lambda: Packet("k", 0, 0, b"x" * 1277),
            "packet k: payload must be 1-1276 bytes, got 1277",
        ),
        (lambda: Bundle("", 0, 0, ()), "sender node id must be 1-255 bytes of UTF-8, got 0"),
        (lambda: Bundle("n", -1, 0, ()), "sent_us must be 0..2^64-1, got -1"),
        (lambda: Bundle("n", 0, 2**32, ()), "tick must be 0..2^32-1, got 4294967296"),
    ],
)
def test_bad_values_are_refused_precisely(make: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        make()  # type: ignore[operator]
    assert str(info.value) == message


def test_bundler_sends_each_node_only_what_it_needs_once_per_tick() -> None:
    bundler = Bundler("n1")
    bundler.route("bc-1", {"n2", "n3", "n1"})  # the sender itself is never a receiver
    bundler.route("bc-2", {"n3"})
    bundler.route("bc-3", set())
    a, b, c = (Packet(k, 5, 0, b"\xfc" + k.encode()) for k in ("bc-1", "bc-2", "bc-3"))
    assert [bundler.add(p) for p in (a, b, c)] == [2, 1, 0]
    out = bundler.flush(1000, 9)
    assert sorted(out) == ["n2", "n3"]
    assert Bundle.parse(out["n2"]) == Bundle("n1", 1000, 9, (a,))
    assert Bundle.parse(out["n3"]) == Bundle("n1", 1000, 9, (a, b))
    assert bundler.flush(1020, 10) == {}  # nothing queued: nothing sent
    bundler.route("bc-1", ())
    assert dict(bundler.routes()) == {"bc-2": frozenset({"n3"})}


def test_bundler_wraps_the_tick() -> None:
    bundler = Bundler("n1")
    bundler.route("k", {"n2"})
    bundler.add(Packet("k", 0, 0, b"x"))
    assert Bundle.parse(bundler.flush(0, 2**32 + 5)["n2"]).tick == 5
