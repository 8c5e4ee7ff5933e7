"""The one UDP socket for all speaker sessions: control datagrams and RTCP in, RTP out."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from loa.errors import ConfigError

log = logging.getLogger(__name__)

# (datagram, source address, loop time) → the reply to send back, if any
OnDatagram = Callable[[bytes, tuple[str, int], float], bytes | None]


def bind_udp(host: str, port: int) -> socket.socket:
    """The relay's socket, non-blocking, with a 4 MiB send buffer (a fan-out burst to
    thousands of speakers must not overflow it); ConfigError naming the address if the
    port cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind UDP {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class RelayDatagramProtocol(asyncio.DatagramProtocol):
    """Driven by the event loop: each datagram goes to ``on_datagram`` (the node, which
    hands it to the sans-IO session table) and its reply, an ack, goes back at once.

    Nothing a peer sends can raise out of here: the table drops and counts bad input."""

    def __init__(self, on_datagram: OnDatagram) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._errors_logged: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.on_datagram(data, addr[:2], self._loop.time())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a speaker that went away: expected on 4G, log once a kind.
        kind = type(exc).__name__
        if kind not in self._errors_logged:
            self._errors_logged.add(kind)
            log.info("UDP error (logged once per kind): %s", exc)
