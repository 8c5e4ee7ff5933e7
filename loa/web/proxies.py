"""Who the client really is behind a reverse proxy: ``X-Forwarded-For`` and
``X-Forwarded-Proto``, believed only from ``web.trusted_proxies``.

A request whose peer is a trusted proxy is handed on as a clone whose ``remote`` is the
client and whose ``scheme`` is what the client used, so everything downstream (login
limits, the Secure flag on the session cookie, the audit log) sees the real client without
knowing about proxies. From any other peer both headers are ignored: a client cannot claim
another address or https by sending them.

The client is found from the right of ``X-Forwarded-For`` (each proxy appends the address
it received from): trusted hops are skipped and the first address that is not trusted is
the client. A list of trusted hops only means the client is the leftmost of them; an entry
that is not an address stops the walk at the last good hop (the client is then the nearest
address we can vouch for, never the junk a client may have sent).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from aiohttp import hdrs, web

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# Set on the request the connection made (the one aiohttp's access log sees) to the client a
# trusted proxy spoke for.
PEER = web.RequestKey("forwarded_peer", str)


def parse_address(text: str) -> Address | None:
    """An address from a header or ``request.remote``: ``1.2.3.4``, ``1.2.3.4:5678``,
    ``[2001:db8::1]:443``, ``2001:db8::1``; IPv4-mapped IPv6 becomes IPv4. None if not one."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # a zone index (fe80::1%eth0) says nothing about the host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The ``web.trusted_proxies`` networks; ``resolve`` is pure (peer and headers in, the
    client and scheme out) so it is tested without a server."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.networks)

    def resolve(
        self, peer: str | None, forwarded_for: Iterable[str], forwarded_proto: Iterable[str]
    ) -> tuple[str, str | None] | None:
        """``(client, scheme or None)`` when ``peer`` is trusted and sent something to
        believe, else None (use the connection as it is)."""
        if not self.networks or not self.trusts(parse_address(peer or "")):
            return None
        hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
        protos = [p.strip().lower() for value in forwarded_proto for p in value.split(",")]
        client, index = str(parse_address(peer or "")), None
        for i in range(len(hops) - 1, -1, -1):
            address = parse_address(hops[i])
            if address is None:
                break
            client, index = str(address), i
            if not self.trusts(address):
                break
        scheme = None
        if protos:
            # Proxies that append line the list up with X-Forwarded-For; one that sets it
            # says what the nearest proxy was asked with.
            aligned = index is not None and len(protos) == len(hops)
            candidate = protos[index] if aligned and index is not None else protos[-1]
            scheme = candidate if candidate in ("http", "https") else None
        return client, scheme


def middleware(proxies: TrustedProxies) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Install first on the root app, before the error and auth middlewares."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        found = proxies.resolve(
            request.remote,
            request.headers.getall(hdrs.X_FORWARDED_FOR, ()),
            request.headers.getall(hdrs.X_FORWARDED_PROTO, ()),
        )
        if found is None:
            return await handler(request)
        client, scheme = found
        request[PEER] = client
        if scheme is None:
            return await handler(request.clone(remote=client))
        return await handler(request.clone(remote=client, scheme=scheme))

    return forwarded
