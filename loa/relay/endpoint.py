"""An endpoint as the node knows it (configuration and live state) and the ``Peer`` through
which the node reaches a connected speaker's control channel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from loa.config import EndpointSpec
from loa.relay.core.control import Message
from loa.relay.core.reception import Reception
from loa.relay.core.rewriter import Rewriter
from loa.relay.core.session import Session, Watch
from loa.relay.core.variants import PLAIN, Variant

_WATCHED = frozenset({"session", "variant", "rejoining"})  # what a steady group keeps


class Peer(Protocol):
    """A speaker's control channel as the node sees it: never awaited on the hot path."""

    def send(self, message: Message) -> None: ...
    def send_audio(self, packet: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


@dataclass
class Endpoint:
    """An endpoint's configuration and what the node knows of it right now."""

    spec: EndpointSpec
    token_hash: str | None  # of the device token (the store's ``hash_token``)
    volume: int
    emergency_volume: int
    muted: bool = False
    session: Session | None = None
    peer: Peer | None = None
    rewriter: Rewriter | None = None  # static rtp endpoints only
    address: tuple[str, int] | None = None  # static rtp endpoints only
    last_seen: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    sink: Callable[[bytes], None] | None = None  # in-process listeners (Ogg mount, WHEP)
    heard_since: float | None = None
    idle_since: float | None = None
    reception: Reception | None = None  # its last RTCP receiver report about our stream
    # Its zone sends RFC 2198 redundancy (the zone tree's effective setting, kept current
    # by the node): RED packets go to it if it is a static RTP endpoint or takes RED.
    redundancy: bool = False
    # How its packets are made (frames a packet; RED when its zone sends redundancy and it
    # takes it), kept current by the node.
    variant: Variant = PLAIN
    # Its variant changed: until its first packet of the new one, a packet that starts on a
    # frame it already got (another variant's packets are cut elsewhere) is skipped.
    rejoining: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WATCHED:
            Watch.changes += 1
        object.__setattr__(self, name, value)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def online(self) -> bool:
        return self.address is not None or self.session is not None or self.sink is not None

    @property
    def listener(self) -> bool:
        """A virtual endpoint standing for in-process listeners, not a pole."""
        return self.sink is not None
