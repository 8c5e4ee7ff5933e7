"""The bounded sink between the fan-out and a slow consumer, with a fake clock: payloads
out of any RTP header, bad packets counted, and stale audio dropped by age, not count."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from loa.codecs.rtp import RtpExtension, RtpPacket
from loa.relay.sink import PacketSink


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rtp(payload: bytes, seq: int = 0, **extra: Any) -> bytes:
    return bytes(RtpPacket(111, seq, seq * 960, 0x1234, payload, **extra))


def test_the_payload_comes_out_whatever_the_rtp_header_holds() -> None:
    sink = PacketSink(Clock(), max_age_s=1.0)
    sink.push(rtp(b"\x78plain", 1))
    sink.push(rtp(b"\x78csrc", 2, csrc=(7, 8)))
    sink.push(rtp(b"\x78ext", 3, extension=RtpExtension(0xBEDE, bytes(12))))
    sink.push(rtp(b"\x78padded", 4, padding_len=4))
    assert sink.drain() == [b"\x78plain", b"\x78csrc", b"\x78ext", b"\x78padded"]
    assert (sink.received, sink.dropped, sink.bad, len(sink)) == (4, 0, 0, 0)


def test_malformed_packets_are_counted_and_skipped() -> None:
    woken = []
    sink = PacketSink(Clock(), max_age_s=1.0, on_push=lambda: woken.append(1))
    sink.push(b"\x80\x6f")  # shorter than an RTP header
    sink.push(struct.pack("!BBHII", 0x8F, 111, 0, 0, 0))  # 15 CSRCs announced, none there
    sink.push(rtp(b""))  # no Opus payload at all
    assert (sink.bad, sink.received, len(sink), woken) == (3, 0, 0, [])
    assert sink.take() is None


def test_stale_audio_goes_by_age_however_much_waits() -> None:
    clock = Clock()
    sink = PacketSink(clock, max_age_s=0.1)
    for i in range(50):  # a burst: 50 packets in the same instant are all fresh
        sink.push(rtp(bytes([0x78, i]), i))
    assert (len(sink), sink.dropped) == (50, 0)
    clock.now += 0.06
    sink.push(rtp(b"\x78late", 50))
    clock.now += 0.05  # the burst is now 110 ms old, the late one 50 ms
    assert sink.take() == b"\x78late"
    assert (sink.dropped, len(sink)) == (50, 0)


def test_a_consumer_that_keeps_up_loses_nothing() -> None:
    clock, out = Clock(), []
    sink = PacketSink(clock, max_age_s=0.1)
    for i in range(100):
        sink.push(rtp(bytes([0x78, i]), i))
        clock.now += 0.02
        out.append(sink.take())
    assert out == [bytes([0x78, i]) for i in range(100)] and sink.dropped == 0


def test_whole_packets_are_kept_for_a_websocket_speaker() -> None:
    sink = PacketSink(Clock(), max_age_s=0.2, unwrap=False)
    packet = rtp(b"\x78abc", 9)
    sink.push(packet)
    assert sink.drain() == [packet]


def test_each_push_wakes_the_consumer() -> None:
    woken: list[int] = []
    sink = PacketSink(Clock(), max_age_s=1.0, on_push=lambda: woken.append(len(woken)))
    sink.push(rtp(b"\x78a"))
    sink.push(rtp(b"\x78b"))
    assert woken == [0, 1]


@pytest.mark.parametrize("age", [0.0, -1.0, float("nan")])
def test_a_sink_keeps_audio_for_some_time(age: float) -> None:
    with pytest.raises(ValueError, match=f"max_age_s must be > 0, got {age!r}"):
        PacketSink(Clock(), max_age_s=age)
