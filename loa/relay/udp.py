"""The one UDP socket for all speaker sessions: control datagrams and RTCP in, RTP out."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from loa.relay.node import Node

log = logging.getLogger(__name__)


class RelayDatagramProtocol(asyncio.DatagramProtocol):
    """Driven by the event loop: each datagram goes to the node's sans-IO session table.

    Nothing a peer sends can raise out of here: the table drops and counts bad input."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._errors_logged: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.node.on_datagram(data, addr[:2], self._loop.time())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a speaker that went away: expected on 4G, log once a kind.
        kind = type(exc).__name__
        if kind not in self._errors_logged:
            self._errors_logged.add(kind)
            log.info("UDP error (logged once per kind): %s", exc)
