"""The speaker protocol's control channel (the WebSocket half, version 1): its messages.

Messages are JSON text objects with a ``type`` (docs/DESIGN.md, "Speaker protocol, on the
wire"); each is a small frozen dataclass here with ``parse(obj)`` and ``to_json()``, and
``decode``/``encode`` turn text into one and back, raising ``ValueError`` with a precise
message for anything else. What each end does with them is ``channel.py``'s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final, Self

PROTOCOL_VERSION: Final = 1
HELLO_TIMEOUT_S: Final = 10.0
PAYLOAD_TYPE: Final = 111
CLOCK_RATE: Final = 48_000
# WebSocket close codes (RFC 6455 §7.4.2 leaves 4000-4999 to applications).
CLOSE_PROTOCOL: Final = 4400  # a bad hello, or a version we do not speak
CLOSE_AUTH: Final = 4401  # an unknown token, or one rotated while connected
CLOSE_REMOVED: Final = 4404  # the endpoint was deleted
CLOSE_REPLACED: Final = 4409  # a newer connection with the same token, or an edited endpoint
CLOSE_MOVED: Final = 4307  # cluster: another node serves this speaker's commune (a redirect)
MAX_SERVERS: Final = 64  # the most server URLs a welcome or a redirect carries
STATUS_FIELDS: Final = frozenset(
    {
        "received",
        "played",
        "lost",
        "recovered",
        "late",
        "jitter_ms",
        "buffer_ms",
        "volume",
        "muted",
        "playing",
        "concealed",
        "underruns",
        "retransmitted",
        "redundant",
        "red_malformed",
        "nacked",
        "stretched",
        "path_failures",
        # synchronised playout: the server clock's offset (server - pole), the probes' round
        # trip, the playout error (heard - due, > 0 late); null while not synchronised
        "clock_offset_ms",
        "clock_rtt_ms",
        "playout_error_ms",
        "synced",
    }
)
TRANSPORT_MODES: Final = ("ws", "udp", "none")
NOT_JSON: Final = "not valid JSON"  # what ``decode`` says of a text that is not JSON at all


def _level(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{what}: volume must be an integer 0..100, got {value!r}")
    return value


# -- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """speaker → server, first: who I am."""

    token: str
    version: int = PROTOCOL_VERSION
    client: str = ""
    # Cluster: the server URL this speaker just lost or could not reach ("" for none), so a
    # node that is not its commune's lets it in while that node is down (no redirect loop).
    lost: str = ""
    # The speaker takes RFC 2198 RED packets (a zone with redundancy sends it them); an
    # older speaker says nothing and keeps getting plain Opus.
    red: bool = False

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        """Never raises: a token that is not a string is no token (refused as unknown), a
        version that is not an integer is version 0 (refused as unsupported)."""
        token, version, client, lost = (
            obj.get("token"),
            obj.get("version", PROTOCOL_VERSION),
            obj.get("client"),
            obj.get("lost"),
        )
        if isinstance(version, bool) or not isinstance(version, int):
            version = 0
        return cls(
            token if isinstance(token, str) else "",
            version,
            client if isinstance(client, str) else "",
            lost if isinstance(lost, str) else "",
            obj.get("red") is True,
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "type": "hello",
            "token": self.token,
            "version": self.version,
            "client": self.client,
        }
        if self.lost:
            out["lost"] = self.lost
        if self.red:
            out["red"] = True
        return out


def _servers(value: object, what: str) -> tuple[str, ...]:
    """A list of http(s) server URLs (at most ``MAX_SERVERS``), trailing slashes dropped."""
    if not isinstance(value, list | tuple) or len(value) > MAX_SERVERS:
        raise ValueError(f"{what}: servers must be a list of at most {MAX_SERVERS} URLs")
    out = []
    for url in value:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{what}: servers must be http(s) URLs, got {url!r}")
        out.append(url.rstrip("/"))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Welcome:
    """server → speaker: the session, its key and where to send the UDP hello."""

    session: bytes
    key: bytes
    endpoint: str
    udp_host: str
    udp_port: int
    ssrc: int
    payload_type: int = PAYLOAD_TYPE
    clock_rate: int = CLOCK_RATE
    keepalive_s: float = 10.0
    volume: int = 100
    muted: bool = False
    # Cluster: the servers to try, in order, when this one is lost (this one first); empty
    # on a single node.
    servers: tuple[str, ...] = ()

    # The playout delay D (issue 13's, default 300 ms): how deep the speaker's jitter buffer
    # may grow to ride out jitter and to get lost packets sent again.
    playout_delay_ms: int = 300
    # RFC 2198 RED's payload type, to a speaker that said it takes RED: its packets may
    # come as RED (primary and redundant blocks of payload_type) whenever its zone says so.
    red_payload_type: int | None = None
    # The server answers clock probes (times on the UDP keepalive, loa.relay.core.wire):
    # the speaker may play in step with the others. An older server says nothing (False).
    clock_probes: bool = False

    def __post_init__(self) -> None:
        red = self.red_payload_type
        if red is not None and (not 96 <= red <= 127 or red == self.payload_type):
            raise ValueError(f"malformed welcome: red_payload_type {red}")
        _servers(self.servers, "malformed welcome")
        if not 40 <= self.playout_delay_ms <= 5000:
            raise ValueError(f"malformed welcome: playout_delay_ms {self.playout_delay_ms}")
        if len(self.session) != 8 or len(self.key) != 32:
            raise ValueError("malformed welcome: session must be 8 bytes and key 32")
        if not 0 < self.udp_port < 65536 or not self.keepalive_s > 0:
            raise ValueError("malformed welcome: bad udp_port or keepalive_s")
        if not math.isfinite(self.keepalive_s):
            raise ValueError("malformed welcome: bad udp_port or keepalive_s")
        if not 0 <= self.volume <= 100:
            raise ValueError(f"malformed welcome: volume {self.volume} is not 0..100")

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        try:
            return cls(
                bytes.fromhex(obj["session"]),
                bytes.fromhex(obj["key"]),
                str(obj["endpoint"]),
                str(obj.get("udp_host") or ""),
                int(obj["udp_port"]),
                int(obj["ssrc"]),
                int(obj.get("payload_type", PAYLOAD_TYPE)),
                int(obj.get("clock_rate", CLOCK_RATE)),
                float(obj.get("keepalive_s", 10.0)),
                int(obj.get("volume", 100)),
                bool(obj.get("muted", False)),
                _servers(obj.get("servers", []), "malformed welcome"),
                int(obj.get("playout_delay_ms", 300)),
                None if obj.get("red_payload_type") is None else int(obj["red_payload_type"]),
                obj.get("clock_probes", False) is True,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, ValueError) and str(exc).startswith("malformed welcome"):
                raise
            raise ValueError(f"malformed welcome: {exc!r}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "welcome",
            "session": self.session.hex(),
            "key": self.key.hex(),
            "endpoint": self.endpoint,
            "udp_host": self.udp_host,
            "udp_port": self.udp_port,
            "ssrc": self.ssrc,
            "payload_type": self.payload_type,
            "clock_rate": self.clock_rate,
            "keepalive_s": self.keepalive_s,
            "volume": self.volume,
            "muted": self.muted,
            **({"servers": list(self.servers)} if self.servers else {}),
            "playout_delay_ms": self.playout_delay_ms,
            **({"red_payload_type": self.red_payload_type} if self.red_payload_type else {}),
            **({"clock_probes": True} if self.clock_probes else {}),
        }


@dataclass(frozen=True, slots=True)
class Redirect:
    """server → speaker, instead of a welcome or while connected (cluster): another node
    serves this speaker's commune; connect to ``servers[0]`` (then the next ones) after a
    short random wait. The socket closes after it (``CLOSE_MOVED``)."""

    servers: tuple[str, ...]
    reason: str = ""

    def __post_init__(self) -> None:
        _servers(self.servers, "redirect")
        if not self.servers:
            raise ValueError("redirect: servers must name at least one server")

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        reason = obj.get("reason", "")
        return cls(
            _servers(obj.get("servers"), "redirect"), reason if isinstance(reason, str) else ""
        )

    def to_json(self) -> dict[str, Any]:
        return {"type": "redirect", "servers": list(self.servers), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Refusal:
    """server → speaker instead of a welcome (``type: error``); the socket closes after it."""

    code: str
    message: str

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        code, message = obj.get("code", "error"), obj.get("message", "")
        return cls(str(code), str(message))

    def to_json(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Status:
    """speaker → server every few seconds: its counters (known fields only)."""

    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        return cls({k: v for k, v in obj.items() if k in STATUS_FIELDS})

    def to_json(self) -> dict[str, Any]:
        return {"type": "status", **self.fields}


@dataclass(frozen=True, slots=True)
class Transport:
    """Either way: the speaker asks for audio on ``ws`` or back on ``udp``; the server says
    ``none`` when the speaker's UDP path timed out."""

    mode: str
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in TRANSPORT_MODES:
            raise ValueError(f"transport: mode must be one of {TRANSPORT_MODES}, got {self.mode!r}")

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        reason = obj.get("reason")
        return cls(str(obj.get("mode")), reason if isinstance(reason, str) else None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "transport", "mode": self.mode}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Volume:
    """server → speaker: its own volume (0-100)."""

    volume: int

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        return cls(_level(obj.get("volume"), "volume"))

    def to_json(self) -> dict[str, Any]:
        return {"type": "volume", "volume": self.volume}


@dataclass(frozen=True, slots=True)
class Mute:
    """server → speaker: mute or unmute (an emergency is heard all the same)."""

    muted: bool

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        muted = obj.get("muted")
        if not isinstance(muted, bool):
            raise ValueError(f"mute: muted must be true or false, got {muted!r}")
        return cls(muted)

    def to_json(self) -> dict[str, Any]:
        return {"type": "mute", "muted": self.muted}


@dataclass(frozen=True, slots=True)
class Stop:
    """server → speaker: drop buffered audio now (an operator's stop left it idle)."""

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"type": "stop"}


@dataclass(frozen=True, slots=True)
class Playing:
    """server → speaker on every switch: what plays now, at which volume; ``override_mute``
    for an emergency, which a muted pole still plays. ``since``: on a switch, the server's
    Unix time of it, before the new broadcast's first frame was captured; a speaker in step
    applies the message to the frames captured from then on, however late the message
    comes (a switch's messages go after its first frame). None: from when it arrives."""

    broadcast: str | None
    klass: str | None = None
    what: str | None = None
    volume: int | None = None
    override_mute: bool = False
    since: float | None = None

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Self:
        broadcast, volume = obj.get("broadcast"), obj.get("volume")
        ok = isinstance(volume, int) and not isinstance(volume, bool) and 0 <= volume <= 100
        klass, what, since = obj.get("class"), obj.get("what"), obj.get("since")
        if not (
            isinstance(since, int | float)
            and not isinstance(since, bool)
            and math.isfinite(since)
            and since > 0
        ):
            since = None
        return cls(
            None if broadcast is None else str(broadcast),
            klass if isinstance(klass, str) else None,
            what if isinstance(what, str) else None,
            volume if ok else None,
            obj.get("override_mute") is True,
            None if since is None else float(since),
        )

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "type": "playing",
            "broadcast": self.broadcast,
            "class": self.klass,
            "what": self.what,
            "volume": self.volume,
            "override_mute": self.override_mute,
        }
        if self.since is not None:
            obj["since"] = self.since
        return obj


Message = Hello | Welcome | Refusal | Status | Transport | Volume | Mute | Stop | Playing | Redirect
_TYPES: Final[dict[str, Any]] = {
    "hello": Hello,
    "welcome": Welcome,
    "redirect": Redirect,
    "error": Refusal,
    "status": Status,
    "transport": Transport,
    "volume": Volume,
    "mute": Mute,
    "stop": Stop,
    "playing": Playing,
}


def decode(text: str | bytes) -> Message:
    """One message from its JSON text; ValueError saying what is wrong with it."""
    try:
        obj = json.loads(text)
    except ValueError:
        raise ValueError(NOT_JSON) from None
    if not isinstance(obj, dict):
        raise ValueError(f"a message is a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UnknownType(kind)
    message: Message = cls.parse(obj)
    return message


def encode(message: Message) -> str:
    return json.dumps(message.to_json(), ensure_ascii=False)


class UnknownType(ValueError):
    """A message of a type this version does not know; newer peers may send more."""

    def __init__(self, kind: object) -> None:
        super().__init__(f"unknown message type {kind!r}")
        self.kind = kind
