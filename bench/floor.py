"""The floor a Python relay is measured against: a bare loop that ``sendto``s one packet to
each of N loopback sockets per frame, paced like the relay (same packet size, same frame
rate), and nothing else. Its CPU per packet is what one syscall a packet costs from Python
on this machine; the relay's ``ratio_to_floor`` is its own CPU per packet over this.

``--mode sendmmsg`` runs the relay's batched path (``loa.relay.sendmmsg.Batch``, a header
rewrite per destination plus one ``sendmmsg`` a frame), ``--mode fallback`` the same
``Batch`` forced onto one ``sendto`` a packet: the gain of batching, without the relay
around it. ``--mode group`` drives the relay's own ``FanOut`` (one broadcast, every speaker a
UDP session: its steady groups, ``loa.relay.core.steady``), ``--mode loop`` the same with
the groups off (every header the one-by-one way). Run as
``python -m bench.floor --speakers 1000``; one JSON line on stdout.

``--receivers full`` (the default, the issue's floor): nobody reads the sockets, whose
small buffers fill after a few packets; from then on the kernel drops each datagram at the
receiving socket. ``--receivers read``: another process reads every socket (epoll, as the
bench's speakers do), so each datagram is queued and its reader woken: the kernel work the
relay's sends do on loopback, where the sender's system call delivers to the receiving
socket. The relay is measured against speakers that read; this floor is the same work
without the relay's own."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import select
import socket
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any, cast

from loa.config import EndpointSpec
from loa.relay.broadcast import Broadcast
from loa.relay.core.rewriter import Rewriter
from loa.relay.core.router import Router
from loa.relay.core.session import Session, Transport
from loa.relay.endpoint import Endpoint
from loa.relay.fanout import FanOut
from loa.relay.metrics import Metrics
from loa.relay.sendmmsg import Batch

MODES = ("sendto", "sendmmsg", "fallback", "group", "loop")

# A 32 kbit/s Opus frame of 20 ms is ~80 bytes of payload plus the 12-byte RTP header.
DEFAULT_PACKET_BYTES = 92


RECEIVERS = ("full", "read")


def _receivers(n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Small receive buffers: nobody reads, the kernel drops at the receiver (counted as
        # the receiver's, not the sender's, cost, as with real speakers on the far end).
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        r.bind(("127.0.0.1", 0))
        socks.append(r)
    return socks


def _drain(n: int, conn: Connection, stop: Event) -> None:
    """``--receivers read``: ``n`` sockets, their addresses sent on ``conn``, read until
    ``stop``; then the count of datagrams read, sent on ``conn``."""
    socks = []
    for _ in range(n):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.bind(("127.0.0.1", 0))
        r.setblocking(False)
        socks.append(r)
    conn.send([r.getsockname() for r in socks])
    by_fd = {r.fileno(): r for r in socks}

    def drain(sock: socket.socket) -> int:
        n = 0
        while True:
            try:
                sock.recv(2048)
            except BlockingIOError:
                return n
            n += 1

    got = 0
    with select.epoll() as poll:
        for fd in by_fd:
            poll.register(fd, select.EPOLLIN)
        while not stop.is_set():
            got += sum(drain(by_fd[fd]) for fd, _ in poll.poll(0.2))
    got += sum(drain(r) for r in socks)  # what came after the last poll
    for r in socks:
        r.close()
    conn.send(got)


class _Readers:
    """A process that owns ``n`` receiving sockets and reads them (``--receivers read``)."""

    def __init__(self, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_drain, args=(n, child, self._stop), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("bench.floor: the reading process did not start within 60 s")
        self.addresses: list[tuple[str, int]] = self._conn.recv()

    def close(self) -> int:
        """Stop reading; how many datagrams were read."""
        self._stop.set()
        got = int(self._conn.recv()) if self._conn.poll(10) else -1
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
        return got


class _Listeners:
    """The one thing ``FanOut`` asks the router: who hears the broadcast (one fixed tuple)."""

    def __init__(self, ids: tuple[str, ...]) -> None:
        self.ids = ids

    def listeners(self, broadcast_id: str) -> tuple[str, ...]:
        return self.ids


class _Broadcast:
    id = "floor"
    key = 1


def _fanout(
    tx: socket.socket, addresses: list[tuple[str, int]], groups: bool
) -> tuple[FanOut, Metrics]:
    """The relay's fan-out with one broadcast, every address a speaker's UDP session."""
    endpoints = {}
    for i, addr in enumerate(addresses):
        ep = Endpoint(EndpointSpec(f"s{i}", f"s{i}", "z"), None, 80, 100)
        ep.session = Session(f"s{i}", bytes(16), bytes(16), Rewriter(i + 1, i & 0xFFFF, i), 0)
        ep.session.addr = ep.session.destination = addr
        ep.session.transport = Transport.UDP
        endpoints[ep.id] = ep
    router = cast(Router, _Listeners(tuple(endpoints)))
    metrics = Metrics()
    fanout = FanOut(endpoints, router, metrics, steady_groups=groups)
    fanout.batch = Batch(tx)
    return fanout, metrics


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def measure(
    speakers: int,
    *,
    packet_bytes: int = DEFAULT_PACKET_BYTES,
    frame_ms: int = 20,
    duration_s: float = 5.0,
    mode: str = "sendto",
    no_send: bool = False,
    receivers: str = "full",
) -> dict[str, Any]:
    """Paced fan-out for ``duration_s``; CPU (user, system) per packet in µs."""
    if no_send and mode not in ("group", "loop"):
        raise ValueError("--no-send is for --mode group or loop")
    if receivers not in RECEIVERS:
        raise ValueError(f"receivers must be one of {RECEIVERS}, got {receivers!r}")
    readers = _Readers(speakers) if receivers == "read" else None
    rx = _receivers(speakers) if readers is None else []
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    tx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    addresses = [r.getsockname() for r in rx] if readers is None else readers.addresses
    packet = Rewriter.source_packet(bytes(packet_bytes - 12))
    rewriters = [Rewriter(i + 1, i & 0xFFFF, i) for i in range(speakers)]
    batch = Batch(tx, batched=mode == "sendmmsg") if mode in ("sendmmsg", "fallback") else None
    fanout, metrics = (
        _fanout(tx, addresses, mode == "group") if mode in ("group", "loop") else (None, None)
    )
    if no_send and fanout is not None and fanout.batch is not None:
        # the Python side alone: sendmmsg "sends" every message, nothing leaves
        fanout.batch._sendmmsg = lambda fd, msgs, count, flags: count
    bc = cast(Broadcast, _Broadcast())
    frame_s = frame_ms / 1000
    frames = max(1, round(duration_s / frame_s))
    sent = dropped = 0
    try:
        cpu0, wall0 = _cpu(), time.perf_counter()
        deadline = time.monotonic()
        for index in range(frames):
            if fanout is not None:
                fanout.frame(bc, packet, index)
            elif batch is None:
                sendto = tx.sendto
                for addr in addresses:
                    try:
                        sendto(packet, addr)
                        sent += 1
                    except OSError:
                        dropped += 1
            else:
                batch.begin(memoryview(packet)[12:])
                for rw, addr in zip(rewriters, addresses, strict=True):
                    offset = batch.slot(addr)
                    if offset is None:
                        batch.later(rw.header(packet, 1, index), addr)
                    else:
                        rw.pack_header_into(batch.headers, offset, packet, 1, index)
                s, d = batch.flush()
                sent, dropped = sent + s, dropped + d
            deadline += frame_s
            pause = deadline - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        cpu1, wall1 = _cpu(), time.perf_counter()
    finally:
        tx.close()
        for r in rx:
            r.close()
        read = readers.close() if readers is not None else None
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    if fanout is not None and metrics is not None:
        sent, dropped = metrics.packets_sent, metrics.udp_send_dropped
        batch = fanout.batch
    packets = max(1, sent + dropped)
    return {
        "mode": mode,
        "no_send": no_send,
        "receivers": receivers,
        "read": read,  # datagrams the reading process got (--receivers read)
        "speakers": speakers,
        "frame_ms": frame_ms,
        "packet_bytes": packet_bytes,
        "duration_s": round(wall1 - wall0, 3),
        "packets": sent,
        "dropped": dropped,
        "syscalls": batch.syscalls if batch is not None else sent + dropped,
        "us_per_packet": round((user + system) * 1e6 / packets, 3),
        "user_us_per_packet": round(user * 1e6 / packets, 3),
        "sys_us_per_packet": round(system * 1e6 / packets, 3),
        "cpu_pct": round((user + system) / (wall1 - wall0) * 100, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n")[0])
    p.add_argument("--speakers", type=int, default=1000)
    p.add_argument("--packet-bytes", type=int, default=DEFAULT_PACKET_BYTES)
    p.add_argument("--frame-ms", type=int, default=20, choices=(20, 40, 60))
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--mode", choices=MODES, default="sendto")
    p.add_argument(
        "--no-send",
        action="store_true",
        help="group and loop: no system call, every message counted sent (the Python side alone)",
    )
    p.add_argument(
        "--receivers",
        choices=RECEIVERS,
        default="full",
        help="full: nobody reads, the receivers drop (default); read: another process reads",
    )
    args = p.parse_args(argv)
    if args.speakers < 1 or args.duration <= 0 or not 12 < args.packet_bytes <= 1500:
        p.error("--speakers ≥ 1, --duration > 0 and 12 < --packet-bytes ≤ 1500")
    result = measure(
        args.speakers,
        packet_bytes=args.packet_bytes,
        frame_ms=args.frame_ms,
        duration_s=args.duration,
        mode=args.mode,
        no_send=args.no_send,
        receivers=args.receivers,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
