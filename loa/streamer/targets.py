"""Which hosts a URL source (a radio relay) may connect to.

The server fetches what an operator names, so a URL must not make it reach what only the
server itself can reach: loopback (127.0.0.0/8, ::1: the admin API, Redis, the database),
link-local (169.254.0.0/16 with cloud metadata services, fe80::/10), unspecified
(0.0.0.0/8, ::, which Linux connects to the local host), multicast and reserved
addresses. Private networks (10/8, 192.168/16 …) stay allowed: a studio on the intranet is
what many deployments relay. ``relay.url_allow_networks`` lets chosen networks through
(a local Icecast server at 127.0.0.1, the test suite's servers).

Checked three times, each over every address a name resolves to: when a broadcast or a
schedule is submitted (``check_description``: a 422 naming the reason, so a name that
points at 127.0.0.1 is refused too), when a ``UrlSource`` is built (IP literals, no DNS),
and before every connect, redirects and HLS segments included (``TargetPolicy.allowed``:
the reader thread never connects to a refused address, whatever DNS says by then). RTSP
is opened by FFmpeg, which resolves again itself: for RTSP the last check is the one
just before that open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any
from urllib.parse import urlsplit

from loa.errors import LoaError

log = logging.getLogger(__name__)
Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}
RESOLVE_TIMEOUT_S = 5.0
_UNSPECIFIED_V4 = IPv4Network("0.0.0.0/8")


class TargetRefused(LoaError, PermissionError):
    """A URL source's host is (or resolves to) an address it may not reach. An OSError, so
    the relay's reader treats it like a failed connect."""

    code = "url_target_refused"


def refusal(address: Address) -> str | None:
    """Why a URL source may not connect to ``address`` by default, or None."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or (isinstance(address, IPv4Address) and address in _UNSPECIFIED_V4):
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    return None


class TargetPolicy:
    """The refusal rules with ``relay.url_allow_networks`` as exceptions; immutable, shared
    by the API handlers and every ``UrlSource`` (its reader thread included)."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allow
        )

    def _allowed(self, address: Address) -> bool:
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.allow)

    def check_address(self, host: str, address: str) -> None:
        """Raise ``TargetRefused`` unless a URL source may connect to ``address`` (one that
        ``host`` resolved to; the same string for an IP literal)."""
        ip = ipaddress.ip_address(address.partition("%")[0])
        reason = refusal(ip)
        if reason is None or self._allowed(ip):
            return
        via = "" if host == address else f" resolves to {address}, which"
        raise TargetRefused(
            f"relay URL host {host}{via} is a {reason} address; URL sources may not reach "
            "loopback, link-local, unspecified, multicast or reserved addresses unless "
            "relay.url_allow_networks allows them",
            host=host,
            address=address,
            reason=reason,
        )

    def check_literal(self, url: str) -> None:
        """Refuse a URL whose host is a refused IP literal, without DNS (names, ``localhost``
        included, are resolved by the other checks)."""
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            return  # not a URL: whoever parses it says why
        try:
            ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return  # a name: resolved later
        self.check_address(host, host)

    def check_resolved(self, host: str, port: int) -> None:
        """Resolve ``host`` (blocking: call it off the event loop) and check every address."""
        for *_, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            self.check_address(host, str(addr[0]))

    async def check_url(self, url: str) -> None:
        """Resolve the URL's host and refuse it if any of its addresses is refused. A name
        that does not resolve now passes: the reader checks again before connecting."""
        try:
            parts = urlsplit(url)
            scheme, host = parts.scheme.lower(), parts.hostname
            port = parts.port or DEFAULT_PORTS.get(scheme, 0)
        except ValueError:
            return  # not a URL (a bad port, "http://[::1"): the source factory says why
        if scheme not in DEFAULT_PORTS or not host:
            return  # not a URL source's URL at all: the source factory says why
        self.check_literal(url)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            log.info(
                "relay URL host %s does not resolve now (%s); checked again on connect", host, exc
            )
            return
        for *_, addr in infos:
            self.check_address(host, str(addr[0]))


def source_urls(desc: Any) -> Iterator[str]:
    """Every ``url`` of a ``{"type": "url"}`` source anywhere in a source description
    (playlist items, fallbacks, programmes), walked without recursion."""
    stack = [desc]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if item.get("type") == "url" and isinstance(item.get("url"), str):
                yield item["url"]
            stack.extend(v for v in item.values() if isinstance(v, Mapping | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, Mapping | list))


async def check_description(desc: Any, policy: TargetPolicy) -> None:
    """Refuse (``TargetRefused``, 422) a source description with a URL the policy refuses."""
    for url in source_urls(desc):
        await policy.check_url(url)
