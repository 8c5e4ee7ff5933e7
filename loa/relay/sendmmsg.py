"""Batched UDP fan-out: one ``sendmmsg(2)`` per frame instead of one ``sendto`` per packet.

A ``Batch`` owns fixed C arrays for up to ``MAX_BATCH`` messages (1,024, the kernel's
``UIO_MAXIOV``). Each message has two iovecs: its own 12-byte RTP header, packed in place by
the endpoint's ``Rewriter``, and the frame's payload, copied once per frame into a shared
buffer that every message of that payload points at. A frame may carry up to
``MAX_PAYLOADS`` payloads (packet variants: zones with 40 or 60 ms packets, RFC 2198), one
buffer each. Nothing is copied per endpoint but the header and the destination's
``sockaddr``. Python reaches libc through ctypes; no extension to build.

Where ``sendmmsg`` is missing (not Linux, a libc without it) or refused (``ENOSYS``), the
same batch goes out one ``sendto`` a packet; ``Batch(sock, batched=False)`` forces that path
(tests, and the bench's comparison). Destinations that are not numeric addresses (a static
RTP endpoint given by host name) also go by ``sendto``, which resolves them.

A full send buffer (``EAGAIN``, ``ENOBUFS``) drops the rest of the frame's batch: those
packets would be stale by the next frame anyway. Any other error drops the one message it
names. Drops are counted, never raised: the fan-out loop must not fail for one peer."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct
from collections.abc import Callable
from typing import Final

import numpy as np

MAX_BATCH: Final = 1024  # UIO_MAXIOV: sendmmsg sends at most this many per call
MAX_HEADER: Final = 12  # the rewritten RTP header (no CSRCs; an extension rides the payload)
MAX_PAYLOAD: Final = 65507 - MAX_HEADER  # the largest UDP payload over IPv4
MAX_PAYLOADS: Final = 8  # shared payloads in one frame's batch: one per packet variant
NAME_SIZE: Final = 28  # sizeof(struct sockaddr_in6) ≥ sizeof(struct sockaddr_in)
_FULL: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})
_SOCKADDR_IN: Final = struct.Struct("=H2s4s8x")  # family (host order), port, address
_SOCKADDR_IN6: Final = struct.Struct("=H2sI16sI")  # family, port, flowinfo, address, scope


class _Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint))


def _load_sendmmsg() -> Callable[..., int] | None:
    """libc's sendmmsg, or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_SENDMMSG: Final = _load_sendmmsg()


def available() -> bool:
    """Whether this system's libc has sendmmsg(2)."""
    return _SENDMMSG is not None


def sockaddr(family: int, addr: tuple[str, int]) -> bytes | None:
    """The ``struct sockaddr`` for ``addr`` on a socket of ``family``; None when the host is
    not a numeric address (it then goes by ``sendto``, which resolves names). An IPv4 host
    on an IPv6 socket becomes its IPv4-mapped address, as the kernel would see it."""
    host, port = addr[0], addr[1]
    if not 0 <= port <= 0xFFFF:
        return None
    try:
        if family == socket.AF_INET:
            packed = socket.inet_pton(socket.AF_INET, host)
            return _SOCKADDR_IN.pack(socket.AF_INET, port.to_bytes(2, "big"), packed)
        if family == socket.AF_INET6:
            if ":" not in host:
                host = "::ffff:" + host
            packed = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
            return _SOCKADDR_IN6.pack(socket.AF_INET6, port.to_bytes(2, "big"), 0, packed, 0)
    except OSError:
        return None
    return None


class Batch:
    """One frame's packets to many destinations, filled then flushed; reused every frame.

    Per frame: ``begin(payload)`` (payload 0), ``add(payload)`` → the number of another one,
    then per destination ``slot(addr, payload)`` → an offset in ``headers`` where the caller
    packs that destination's header (``None`` when the destination goes by ``sendto``: pass
    its header with ``later(header, addr, payload)``), then ``flush()`` → (sent, dropped).
    Not thread-safe; one per socket."""

    __slots__ = (
        "_count",
        "_dropped",
        "_fd",
        "_header_view",
        "_id_view",
        "_ids",
        "_iov",
        "_iov_base",
        "_later",
        "_lengths",
        "_mmsg",
        "_name_view",
        "_names",
        "_payload_addrs",
        "_payload_iov",
        "_payloads",
        "_sendmmsg",
        "_sent",
        "_slot_addrs",
        "_sock",
        "_sockaddrs",
        "_used",
        "batched",
        "headers",
        "syscalls",
    )

    def __init__(self, sock: socket.socket, *, batched: bool = True) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._sendmmsg = _SENDMMSG if batched else None
        self.batched = self._sendmmsg is not None
        self.syscalls = 0  # sendmmsg and sendto calls made (the bench compares the two paths)
        self._count = self._sent = self._dropped = 0
        self._later: list[tuple[bytes, tuple[str, int], int]] = []
        self._sockaddrs: dict[tuple[str, int], bytes | None] = {}
        namelen = 16 if sock.family == socket.AF_INET else NAME_SIZE
        # Plain bytearrays (cheapest to write from Python), pinned: the C arrays point in.
        self.headers = bytearray(MAX_HEADER * MAX_BATCH)
        self._names = bytearray(NAME_SIZE * MAX_BATCH)
        self._slot_addrs: list[tuple[str, int] | None] = [None] * MAX_BATCH
        self._ids = bytearray(MAX_BATCH)  # each message's payload number
        # the same three as numpy arrays, for blocks of messages (``block``)
        self._header_view = np.frombuffer(self.headers, dtype=np.uint8)
        self._name_view = np.frombuffer(self._names, dtype=np.uint8)
        self._id_view = np.frombuffer(self._ids, dtype=np.uint8)
        # payload buffers, made as a frame first needs them; their addresses and lengths
        self._payloads: list[ctypes.Array[ctypes.c_char]] = []
        self._payload_addrs = np.zeros(MAX_PAYLOADS, dtype=np.uint64)
        self._lengths = np.zeros(MAX_PAYLOADS, dtype=np.uint64)
        self._used = 0  # payloads in this frame
        iov = (_Iovec * (2 * MAX_BATCH))()
        self._mmsg = (_Mmsghdr * MAX_BATCH)()
        headers = ctypes.addressof((ctypes.c_char * len(self.headers)).from_buffer(self.headers))
        names = ctypes.addressof((ctypes.c_char * len(self._names)).from_buffer(self._names))
        for i in range(MAX_BATCH):
            iov[2 * i].iov_base = headers + MAX_HEADER * i
            iov[2 * i].iov_len = MAX_HEADER
            hdr = self._mmsg[i].msg_hdr
            hdr.msg_name = names + NAME_SIZE * i
            hdr.msg_namelen = namelen
            hdr.msg_iov = ctypes.addressof(iov) + 2 * i * ctypes.sizeof(_Iovec)
            hdr.msg_iovlen = 2
        # The payload iovecs' (base, length), one every 2 iovecs, set per send in numpy writes.
        words = np.frombuffer(memoryview(iov).cast("B"), dtype=np.uint64).reshape(2 * MAX_BATCH, 2)
        self._iov_base, self._payload_iov = words[1::2, 0], words[1::2, 1]
        self._iov = iov  # keeps the array alive for the pointers above

    def begin(self, payload: bytes | memoryview | None = None) -> None:
        """Start a frame; ``payload``, if given, is its payload 0 (else ``add`` them)."""
        # A frame whose fan-out raised before flush() is abandoned, not sent with this one.
        self._count = 0
        self._later.clear()
        self._sent = self._dropped = 0
        self._used = 0
        if payload is not None:
            self.add(payload)

    def add(self, payload: bytes | memoryview) -> int:
        """Another payload for this frame's messages (another packet variant): its number."""
        size = len(payload)
        if size > MAX_PAYLOAD:
            raise ValueError(f"payload of {size} bytes exceeds the UDP maximum {MAX_PAYLOAD}")
        n = self._used
        if n == MAX_PAYLOADS:
            raise ValueError(f"a frame carries at most {MAX_PAYLOADS} payloads")
        if n == len(self._payloads):
            buffer = (ctypes.c_char * MAX_PAYLOAD)()
            self._payloads.append(buffer)
            self._payload_addrs[n] = ctypes.addressof(buffer)
        ctypes.memmove(self._payloads[n], bytes(payload), size)
        self._lengths[n] = size
        self._used = n + 1
        return n

    def slot(self, addr: tuple[str, int], payload: int = 0) -> int | None:
        """Reserve the next message for ``addr`` with ``payload`` (a number from ``begin``/
        ``add``); the offset in ``headers`` to pack its 12-byte header at, or None if
        ``addr`` must go by ``sendto`` (use ``later``)."""
        if self._sendmmsg is None:
            return None
        i = self._count
        if i == MAX_BATCH:
            self._send()
            i = 0
        if self._slot_addrs[i] is not addr:  # the same session's tuple, frame after frame
            sa = self.name(addr)
            if sa is None:
                return None
            self._names[NAME_SIZE * i : NAME_SIZE * i + len(sa)] = sa
            self._slot_addrs[i] = addr
        self._ids[i] = payload
        self._count = i + 1
        return MAX_HEADER * i

    def name(self, addr: tuple[str, int]) -> bytes | None:
        """The ``struct sockaddr`` ``addr`` goes to (cached), None if it goes by ``sendto``."""
        sa = self._sockaddrs.get(addr, b"")
        if sa == b"":
            if len(self._sockaddrs) >= 4 * MAX_BATCH:  # addresses churn: stay bounded
                self._sockaddrs.clear()
            sa = self._sockaddrs[addr] = sockaddr(self._sock.family, addr)
        return sa

    def block(
        self,
        headers: np.ndarray,
        names: np.ndarray,
        addrs: list[tuple[str, int]],
        payload: int = 0,
    ) -> None:
        """Reserve one message for each of ``addrs`` with ``payload``, their headers (``len ×
        12`` bytes) and sockaddrs (``name``, each padded to ``NAME_SIZE``: ``len × NAME_SIZE``
        bytes) given in bulk: what ``slot`` and a header packed in place do for one, in a
        few copies for all. Only on the batched path (``batched``); every address numeric."""
        if self._sendmmsg is None:
            raise RuntimeError("a block of messages goes by sendmmsg only")
        total, done = len(addrs), 0
        while done < total:
            i = self._count
            if i == MAX_BATCH:
                self._send()
                i = 0
            n = min(total - done, MAX_BATCH - i)
            self._header_view[MAX_HEADER * i : MAX_HEADER * (i + n)] = headers[
                MAX_HEADER * done : MAX_HEADER * (done + n)
            ]
            self._name_view[NAME_SIZE * i : NAME_SIZE * (i + n)] = names[
                NAME_SIZE * done : NAME_SIZE * (done + n)
            ]
            self._slot_addrs[i : i + n] = addrs[done : done + n]
            self._id_view[i : i + n] = payload
            self._count = i + n
            done += n

    def later(self, header: bytes, addr: tuple[str, int], payload: int = 0) -> None:
        """A message that goes by ``sendto`` at ``flush``."""
        self._later.append((header, addr, payload))

    def _payload_bytes(self, payload: int) -> bytes:
        return ctypes.string_at(self._payloads[payload], int(self._lengths[payload]))

    def flush(self) -> tuple[int, int]:
        """Send the frame's messages: (sent, dropped), and start afresh."""
        if self._count:
            self._send()
        if self._later:
            payloads = [self._payload_bytes(n) for n in range(self._used)]
            sendto = self._sock.sendto
            for header, addr, payload in self._later:
                self.syscalls += 1
                try:
                    sendto(header + payloads[payload], addr)
                    self._sent += 1
                except OSError:
                    self._dropped += 1
            self._later.clear()
        result = (self._sent, self._dropped)
        self._sent = self._dropped = 0
        return result

    def _send(self) -> None:
        """sendmmsg the reserved messages; on a full buffer drop the rest, on another error
        drop the message it names and go on with the next."""
        count, start = self._count, 0
        self._count = 0
        ids = np.frombuffer(self._ids, dtype=np.uint8, count=count)
        self._iov_base[:count] = self._payload_addrs[ids]
        self._payload_iov[:count] = self._lengths[ids]
        sendmmsg, fd, base = self._sendmmsg, self._fd, ctypes.addressof(self._mmsg)
        assert sendmmsg is not None
        while start < count:
            self.syscalls += 1
            n = sendmmsg(fd, base + start * _MMSG_SIZE, count - start, 0)
            if n > 0:
                start += n
                self._sent += n
                continue
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err in _FULL:
                self._dropped += count - start
                return
            if err == errno.ENOSYS:  # a kernel without it: every later frame goes by sendto
                self._sendmmsg = None
                self.batched = False
                self._resend_by_sendto(start, count)
                return
            self._dropped += 1
            start += 1

    def _resend_by_sendto(self, start: int, count: int) -> None:
        """The messages start..count, which sendmmsg refused, one sendto each."""
        payloads = [self._payload_bytes(n) for n in range(self._used)]
        headers = bytes(self.headers)
        for i in range(start, count):
            name = bytes(self._names[NAME_SIZE * i : NAME_SIZE * (i + 1)])
            addr = _address(self._sock.family, name)
            header = headers[MAX_HEADER * i : MAX_HEADER * (i + 1)]
            self.syscalls += 1
            try:
                self._sock.sendto(header + payloads[self._ids[i]], addr)
                self._sent += 1
            except OSError:
                self._dropped += 1


_MMSG_SIZE: Final = ctypes.sizeof(_Mmsghdr)


def _address(family: int, name: bytes) -> tuple[str, int]:
    """The (host, port) a packed sockaddr names (the inverse of ``sockaddr``)."""
    if family == socket.AF_INET:
        _, port, packed = _SOCKADDR_IN.unpack(name[: _SOCKADDR_IN.size])
        return socket.inet_ntop(socket.AF_INET, packed), int.from_bytes(port, "big")
    _, port, _, packed, _ = _SOCKADDR_IN6.unpack(name[: _SOCKADDR_IN6.size])
    return socket.inet_ntop(socket.AF_INET6, packed), int.from_bytes(port, "big")
