"""Both ends of the speaker protocol's control channel, sans-IO: fed texts and ``now``,
returning what to do (the messages are ``control.py``'s).

``ServerChannel`` is one speaker's channel as the relay sees it: fed the texts it receives,
it answers with actions — ``Authenticate`` a hello (the adapter looks the token up and calls
``accept`` or ``refuse_token``), ``Send`` a text, ``Close`` the socket, ``StatusReported``,
``TransportRequested``. ``ClientChannel`` is the speaker's end: it says hello, reads the
welcome, and keeps what the server last said about levels and what plays, returning an
event for each command. Neither reads a clock or touches a socket; the aiohttp handler
(``loa.web.speaker``) and ``loa.speaker.client`` move the bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from loa.relay.core.control import (
    CLOSE_AUTH,
    CLOSE_MOVED,
    CLOSE_PROTOCOL,
    HELLO_TIMEOUT_S,
    PROTOCOL_VERSION,
    Hello,
    Message,
    Mute,
    Playing,
    Redirect,
    Refusal,
    Status,
    Stop,
    Transport,
    UnknownType,
    Volume,
    Welcome,
    decode,
    encode,
)

# -- actions and events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """A hello arrived: look its token up, then ``accept`` or ``refuse_token``."""

    hello: Hello


@dataclass(frozen=True, slots=True)
class StatusReported:
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TransportRequested:
    mode: str  # "ws" or "udp"


@dataclass(frozen=True, slots=True)
class Ignored:
    """Something the other end sent that this version does not act on (logged, not fatal)."""

    what: str


ServerAction = Send | Close | Authenticate | StatusReported | TransportRequested | Ignored


class Phase(Enum):
    HELLO = "hello"  # waiting for the hello (server) or the welcome (client)
    AUTH = "auth"  # server: the hello is being checked
    OPEN = "open"
    CLOSED = "closed"


# -- the server's end --------------------------------------------------------------------------


class ServerChannel:
    """One speaker's control channel on the relay, driven by its adapter: ``on_text`` /
    ``on_binary`` for what arrives, ``on_timeout`` at ``deadline``, ``accept`` or
    ``refuse_token`` after ``Authenticate``, ``send`` for commands once open."""

    def __init__(self, now: float, *, hello_timeout_s: float = HELLO_TIMEOUT_S) -> None:
        self.phase = Phase.HELLO
        self.hello_timeout_s = hello_timeout_s
        self._deadline: float | None = now + hello_timeout_s
        self.refused: str | None = None  # the code, once refused

    @property
    def deadline(self) -> float | None:
        """When ``on_timeout`` must be called (None: nothing is timed)."""
        return self._deadline

    def on_text(self, text: str, now: float) -> list[ServerAction]:
        if self.phase is Phase.HELLO:
            return self._on_hello(text)
        if self.phase is not Phase.OPEN:
            return []
        try:
            message = decode(text)
        except UnknownType as exc:  # a newer speaker may send more: ignore, stay connected
            return [Ignored(f"message type {exc.kind!r}")]
        except ValueError as exc:
            return [Ignored(str(exc))]
        match message:
            case Status(fields=fields):
                return [StatusReported(fields)]
            case Transport(mode=("ws" | "udp") as mode):
                return [TransportRequested(mode)]
            case other:
                return [Ignored(f"{type(other).__name__.lower()} from a speaker")]

    def on_binary(self, now: float) -> list[ServerAction]:
        if self.phase is Phase.HELLO:
            return self._refuse("bad_hello", "the first message must be a JSON hello")
        return []  # speakers send no binary; ignore rather than drop the connection

    def on_timeout(self, now: float) -> list[ServerAction]:
        if self._deadline is None or now < self._deadline:
            return []
        return self._refuse("bad_hello", f"no hello within {self.hello_timeout_s:g} s")

    def accept(self, welcome: Welcome) -> list[ServerAction]:
        if self.phase is not Phase.AUTH:
            raise RuntimeError(f"accept() while {self.phase.value}: only after Authenticate")
        self.phase = Phase.OPEN
        return [Send(encode(welcome))]

    def redirect(self, servers: tuple[str, ...], reason: str) -> list[ServerAction]:
        """Cluster: send the speaker to ``servers`` (instead of ``accept``, or once open) and
        close; nothing once closed."""
        if self.phase not in (Phase.AUTH, Phase.OPEN):
            return []
        self.phase, self._deadline = Phase.CLOSED, None
        return [Send(encode(Redirect(servers, reason))), Close(CLOSE_MOVED, "moved")]

    def refuse_token(self) -> list[ServerAction]:
        return self._refuse("bad_token", "unknown device token", CLOSE_AUTH)

    def send(self, message: Message) -> list[ServerAction]:
        """A command for an open channel; nothing once it is closing."""
        return [Send(encode(message))] if self.phase is Phase.OPEN else []

    def _on_hello(self, text: str) -> list[ServerAction]:
        try:
            obj = json.loads(text)
        except ValueError:
            return self._refuse("bad_hello", "hello is not valid JSON")
        if not isinstance(obj, dict) or obj.get("type") != "hello":
            return self._refuse("bad_hello", 'expected {"type": "hello", ...}')
        message = Hello.parse(obj)
        if message.version != PROTOCOL_VERSION:
            return self._refuse("unsupported_version", f"protocol version {PROTOCOL_VERSION} only")
        if not message.token:
            return self.refuse_token()
        self.phase, self._deadline = Phase.AUTH, None
        return [Authenticate(message)]

    def _refuse(self, code: str, message: str, close: int = CLOSE_PROTOCOL) -> list[ServerAction]:
        self.phase, self._deadline, self.refused = Phase.CLOSED, None, code
        return [Send(encode(Refusal(code, message))), Close(close, message)]


# -- the speaker's end -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcomed:
    welcome: Welcome


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused the hello (or closed with 4401 before answering it)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class LevelsChanged:
    """``volume``, ``mute`` or ``playing``: the effective volume or mute may have changed;
    ``since``: a ``playing`` message's switch time (server Unix time), if it said one."""

    why: str
    since: float | None = None


@dataclass(frozen=True, slots=True)
class DropAudio:
    """``stop``: drop buffered audio now."""


@dataclass(frozen=True, slots=True)
class TransportLost:
    """The server stopped sending UDP (``transport: none``)."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class ServerError:
    message: str


@dataclass(frozen=True, slots=True)
class Redirected:
    """Cluster: another node serves this speaker; connect to ``servers`` in order."""

    servers: tuple[str, ...]
    reason: str


ClientEvent = (
    Welcomed
    | Refused
    | LevelsChanged
    | DropAudio
    | TransportLost
    | ServerError
    | Ignored
    | Redirected
)


class ClientChannel:
    """The speaker's end, one per speaker (levels outlive a reconnect): ``hello()`` opens each
    connection, ``on_text``/``on_close`` take what the server says. What plays and how loud
    are kept here; ``effective_volume`` and ``audible_muted`` are what the output applies."""

    def __init__(self, token: str, client: str) -> None:
        self.token = token
        self.client = client
        self.phase = Phase.CLOSED
        self.welcome: Welcome | None = None
        self.volume = 100
        self.muted = False
        self.broadcast: str | None = None
        self.broadcast_volume: int | None = None  # the playing broadcast's, while it plays
        self.override_mute = False

    @property
    def effective_volume(self) -> int:
        return self.volume if self.broadcast_volume is None else self.broadcast_volume

    @property
    def audible_muted(self) -> bool:
        """Muted, unless what plays is an emergency (which a muted pole still plays)."""
        return self.muted and not self.override_mute

    def hello(self, lost: str = "", *, red: bool = False) -> str:
        """The first text of a new connection; ``lost``: the server URL just lost, if any;
        ``red``: this speaker takes RFC 2198 RED packets."""
        self.phase, self.welcome = Phase.HELLO, None
        return encode(Hello(self.token, PROTOCOL_VERSION, self.client, lost, red))

    def status(self, **counters: Any) -> str:
        """A status report: the caller's counters plus the levels this end applies."""
        fields = {
            **counters,
            "volume": self.effective_volume,
            "muted": self.muted,
            "playing": self.broadcast,
        }
        return encode(Status(fields))

    @staticmethod
    def transport(mode: str) -> str:
        return encode(Transport(mode))

    def on_close(self, code: int | None) -> list[ClientEvent]:
        waiting = self.phase is Phase.HELLO
        self.phase = Phase.CLOSED
        if waiting and code == CLOSE_AUTH:
            return [Refused("bad_token", "the server closed with 4401")]
        return []

    def on_text(self, text: str) -> list[ClientEvent]:
        """ValueError before the welcome for anything but a welcome or a refusal (the
        connection is useless); afterwards unknown or malformed commands are ``Ignored``."""
        if self.phase is Phase.HELLO:
            return self._on_welcome(decode(text))
        try:
            message = decode(text)
        except UnknownType as exc:
            return [Ignored(f"message type {exc.kind!r}")]
        except ValueError as exc:
            return [Ignored(str(exc))]
        return self._on_command(message)

    def _on_welcome(self, message: Message) -> list[ClientEvent]:
        match message:
            case Welcome() as welcome:
                self.phase, self.welcome = Phase.OPEN, welcome
                self.volume, self.muted = welcome.volume, welcome.muted
                return [Welcomed(welcome)]
            case Refusal(code=code, message=text):
                self.phase = Phase.CLOSED
                return [Refused(code, text)]
            case Redirect(servers=servers, reason=reason):
                self.phase = Phase.CLOSED
                return [Redirected(servers, reason)]
        raise ValueError(f"expected a welcome, got {type(message).__name__.lower()!r}")

    def _on_command(self, message: Message) -> list[ClientEvent]:
        match message:
            case Volume(volume=volume):
                self.volume = volume
                return [LevelsChanged(f"volume {volume}")]
            case Mute(muted=muted):
                self.muted = muted
                return [LevelsChanged("muted" if muted else "unmuted")]
            case Stop():
                return [DropAudio()]
            case Playing(broadcast=broadcast, volume=volume, override_mute=override, since=since):
                self.broadcast = broadcast
                self.broadcast_volume = volume if broadcast is not None else None
                self.override_mute = broadcast is not None and override
                return [LevelsChanged(f"playing {broadcast}", since)]
            case Transport(mode="none", reason=reason):
                return [TransportLost(reason)]
            case Refusal(message=text):
                return [ServerError(text)]
            case Redirect(servers=servers, reason=reason):
                return [Redirected(servers, reason)]
        return [Ignored(f"{type(message).__name__.lower()} from the server")]
