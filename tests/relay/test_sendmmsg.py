"""Batched fan-out on real loopback sockets: one sendmmsg a frame, the sendto fallback,
names that need resolving, errors that drop one message and a full buffer that drops the rest."""

from __future__ import annotations

import ctypes
import errno
import socket
from collections.abc import Iterator

import pytest

from loa.relay import sendmmsg
from loa.relay.core.rewriter import Rewriter
from loa.relay.sendmmsg import MAX_BATCH, Batch

PACKET = Rewriter.source_packet(b"opus-frame-payload" * 4)

needs_sendmmsg = pytest.mark.skipif(not sendmmsg.available(), reason="no sendmmsg in libc")


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def receivers(n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.bind(("127.0.0.1", 0))
        r.settimeout(2.0)
        socks.append(r)
    return socks


def fan_out(batch: Batch, rewriters: list[Rewriter], rx: list[socket.socket], frame: int) -> None:
    batch.begin(memoryview(PACKET)[12:])
    for rw, r in zip(rewriters, rx, strict=True):
        addr = r.getsockname()
        offset = batch.slot(addr)
        if offset is None:
            batch.later(rw.header(PACKET, 1, frame), addr)
        else:
            rw.pack_header_into(batch.headers, offset, PACKET, 1, frame)


def expected(i: int, frames: int) -> list[bytes]:
    reference = Rewriter(1000 + i, 7 * i, 11 * i)
    return [reference.rewrite(PACKET, 1, f) for f in range(frames)]


@needs_sendmmsg
@pytest.mark.parametrize("batched", [True, False])
def test_every_receiver_gets_its_own_header_and_the_shared_payload(
    sender: socket.socket, batched: bool
) -> None:
    rx = receivers(40)
    rewriters = [Rewriter(1000 + i, 7 * i, 11 * i) for i in range(len(rx))]
    batch = Batch(sender, batched=batched)
    assert batch.batched is batched
    try:
        for frame in range(3):
            fan_out(batch, rewriters, rx, frame)
            assert batch.flush() == (len(rx), 0)
        # one syscall a frame batched; one a packet forced onto sendto
        assert batch.syscalls == (3 if batched else 3 * len(rx))
        for i, r in enumerate(rx):
            assert [r.recv(2048) for _ in range(3)] == expected(i, 3)
        assert [rw.octets for rw in rewriters] == [3 * (len(PACKET) - 12)] * len(rx)
    finally:
        for r in rx:
            r.close()


@needs_sendmmsg
def test_more_than_one_batch_in_a_frame(sender: socket.socket) -> None:
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    rx = receivers(MAX_BATCH + 76)
    rewriters = [Rewriter(1000 + i, 7 * i, 11 * i) for i in range(len(rx))]
    batch = Batch(sender)
    try:
        fan_out(batch, rewriters, rx, 0)
        assert batch.flush() == (len(rx), 0)
        assert batch.syscalls == 2
        for i in (0, MAX_BATCH - 1, MAX_BATCH, len(rx) - 1):
            assert rx[i].recv(2048) == expected(i, 1)[0]
    finally:
        for r in rx:
            r.close()


@needs_sendmmsg
def test_a_host_name_goes_by_sendto(sender: socket.socket) -> None:
    (r,) = receivers(1)
    batch = Batch(sender)
    try:
        port = r.getsockname()[1]
        batch.begin(memoryview(PACKET)[12:])
        assert batch.slot(("localhost", port)) is None
        batch.later(Rewriter(1000, 0, 0).header(PACKET, 1, 0), ("localhost", port))
        assert batch.flush() == (1, 0)
        assert r.recv(2048) == expected(0, 1)[0]
    finally:
        r.close()


@needs_sendmmsg
def test_a_refused_destination_drops_only_its_message(sender: socket.socket) -> None:
    rx = receivers(2)
    batch = Batch(sender)
    try:
        batch.begin(memoryview(PACKET)[12:])
        addresses = [rx[0].getsockname(), ("255.255.255.255", 9), rx[1].getsockname()]
        for i, addr in enumerate(addresses):  # broadcast without SO_BROADCAST: EACCES
            offset = batch.slot(addr)
            assert offset is not None
            Rewriter(1000 + i, 0, 0).pack_header_into(batch.headers, offset, PACKET, 1, 0)
        assert batch.flush() == (2, 1)
        assert rx[0].recv(2048)[8:12] == (1000).to_bytes(4, "big")
        assert rx[1].recv(2048)[8:12] == (1002).to_bytes(4, "big")
    finally:
        for r in rx:
            r.close()


@needs_sendmmsg
def test_a_full_send_buffer_drops_the_rest_of_the_frame(sender: socket.socket) -> None:
    """Loopback never fills a send buffer (the skb leaves it at once), so the kernel's answer
    is played by a wrapper around the real call: the first 5 go out, then EAGAIN."""
    real = sendmmsg._SENDMMSG
    assert real is not None
    calls: list[int] = []

    def full_after_five(fd: int, msgs: int, count: int, flags: int) -> int:
        calls.append(count)
        if len(calls) == 1:
            return real(fd, msgs, min(count, 5), flags)
        ctypes.set_errno(errno.EAGAIN)
        return -1

    rx = receivers(12)
    batch = Batch(sender)
    batch._sendmmsg = full_after_five
    try:
        fan_out(batch, [Rewriter(1000 + i, 0, 0) for i in range(12)], rx, 0)
        assert batch.flush() == (5, 7)
        assert calls == [12, 7]  # the rest was tried once, then dropped, not one by one
        for r in rx[:5]:
            assert r.recv(2048)
        rx[5].settimeout(0.05)
        with pytest.raises(TimeoutError):
            rx[5].recv(2048)
        # the next frame starts clean
        calls.clear()
        batch._sendmmsg = real
        fan_out(batch, [Rewriter(2000 + i, 0, 0) for i in range(12)], rx, 0)
        assert batch.flush() == (12, 0)
    finally:
        for r in rx:
            r.close()


@needs_sendmmsg
def test_enosys_moves_the_batch_and_later_frames_to_sendto(sender: socket.socket) -> None:
    def no_kernel_support(fd: int, msgs: int, count: int, flags: int) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    rx = receivers(3)
    batch = Batch(sender)
    batch._sendmmsg = no_kernel_support
    rewriters = [Rewriter(1000 + i, 7 * i, 11 * i) for i in range(3)]
    try:
        for frame in range(2):
            fan_out(batch, rewriters, rx, frame)
            assert batch.flush() == (3, 0)
        assert not batch.batched
        for i, r in enumerate(rx):
            assert [r.recv(2048) for _ in range(2)] == expected(i, 2)
    finally:
        for r in rx:
            r.close()


def test_sockaddrs_for_both_families() -> None:
    v4 = sendmmsg.sockaddr(socket.AF_INET, ("10.1.2.3", 5004))
    assert v4 is not None and len(v4) == 16
    assert v4[2:4] == (5004).to_bytes(2, "big") and v4[4:8] == bytes([10, 1, 2, 3])
    v6 = sendmmsg.sockaddr(socket.AF_INET6, ("10.1.2.3", 5004))  # IPv4-mapped
    assert v6 is not None and len(v6) == 28
    assert v6[8:24] == socket.inet_pton(socket.AF_INET6, "::ffff:10.1.2.3")
    assert sendmmsg.sockaddr(socket.AF_INET, ("pole-7.example", 5004)) is None
    assert sendmmsg.sockaddr(socket.AF_INET, ("10.1.2.3", 70000)) is None


def test_a_payload_too_big_for_udp_is_refused(sender: socket.socket) -> None:
    batch = Batch(sender, batched=False)
    with pytest.raises(ValueError, match="exceeds the UDP maximum"):
        batch.begin(bytes(70000))


@needs_sendmmsg
def test_an_ipv6_socket_reaches_ipv4_receivers_mapped() -> None:
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sender.bind(("::", 0))
    sender.setblocking(False)
    rx = receivers(2)
    rewriters = [Rewriter(1000 + i, 7 * i, 11 * i) for i in range(2)]
    batch = Batch(sender)
    try:
        fan_out(batch, rewriters, rx, 0)
        assert batch.flush() == (2, 0) and batch.syscalls == 1
        for i, r in enumerate(rx):
            assert r.recv(2048) == expected(i, 1)[0]
    finally:
        sender.close()
        for r in rx:
            r.close()


@needs_sendmmsg
def test_a_frame_abandoned_before_flush_does_not_leak_into_the_next(
    sender: socket.socket,
) -> None:
    rx = receivers(2)
    batch = Batch(sender)
    try:
        fan_out(batch, [Rewriter(1000 + i, 7 * i, 11 * i) for i in range(2)], rx, 0)
        # no flush: the fan-out raised; the next frame starts clean
        fan_out(batch, [Rewriter(1000 + i, 7 * i, 11 * i) for i in range(2)], rx, 0)
        assert batch.flush() == (2, 0) and batch.syscalls == 1
        for i, r in enumerate(rx):
            assert r.recv(2048) == expected(i, 1)[0]
            r.settimeout(0.05)
            with pytest.raises(TimeoutError):
                r.recv(2048)
    finally:
        for r in rx:
            r.close()


@needs_sendmmsg
@pytest.mark.parametrize("batched", [True, False])
def test_one_frame_carries_one_payload_per_variant(sender: socket.socket, batched: bool) -> None:
    """Three payloads (packet variants) in one batch, messages interleaved: each receiver gets
    its own header and its variant's payload, in one sendmmsg (or one sendto each)."""
    payloads = [b"twenty-ms", b"forty-ms-packet" * 3, b"sixty" * 40]
    rx = receivers(6)
    try:
        batch = Batch(sender, batched=batched)
        batch.begin()
        numbers = [batch.add(p) for p in payloads]
        assert numbers == [0, 1, 2]
        for i, r in enumerate(rx):
            header = bytes((0x80, 111)) + i.to_bytes(10, "big")
            offset = batch.slot(r.getsockname(), numbers[i % 3])
            if offset is None:
                batch.later(header, r.getsockname(), numbers[i % 3])
            else:
                batch.headers[offset : offset + 12] = header
        assert batch.flush() == (6, 0)
        assert batch.syscalls == (1 if batched else 6)
        for i, r in enumerate(rx):
            got = r.recv(2048)
            assert got == bytes((0x80, 111)) + i.to_bytes(10, "big") + payloads[i % 3]
        batch.begin(b"next frame")  # a new frame starts with one payload again
        assert [batch.add(b"x") for _ in range(7)] == list(range(1, 8))
        with pytest.raises(ValueError, match="a frame carries at most 8 payloads"):
            batch.add(b"y")
    finally:
        for r in rx:
            r.close()
