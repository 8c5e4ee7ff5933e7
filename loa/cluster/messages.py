"""Control messages between nodes: broadcast lifecycle, speaker commands, the commune
assignment and node status. JSON text (rare, and readable in ``redis-cli monitor``) inside an
envelope ``<seq> <json object>``:

- ``seq``: on the lifecycle channel, a number Redis assigns atomically with the publish
  (``INCR`` + ``PUBLISH`` in one script), so every node sees lifecycle events in one order
  and notices a gap (messages missed while disconnected, or Redis restarted) and resyncs.
  Elsewhere 0.
- the object: ``type``, ``sender`` (node id), ``fence`` (the leader's fencing token on what
  the leader sends, else null), and the message's own fields.

``Envelope.parse`` refuses anything else with a precise ``ValueError``: unknown types,
unknown or missing fields, wrong types.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self, get_args

from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.core.router import StopReason

CLASSES = tuple(p.name.lower() for p in Priority)
COMMANDS = ("volume", "mute", "stop")


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


_KINDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "str": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "num": (_is_num, "a finite number"),
    "ids": (lambda v: isinstance(v, tuple) and all(isinstance(i, str) and i for i in v),
            "a list of ids"),
    "map": (lambda v: isinstance(v, dict), "an object"),
    "any": (lambda v: True, "anything"),
}  # fmt: skip


def _check(name: str, value: object, kind: str) -> None:
    """``kind`` from ``_KINDS``; a trailing ``?`` also allows null."""
    test, expected = _KINDS[kind.rstrip("?")]
    if kind.endswith("?") and value is None:
        return
    if not test(value):
        suffix = " or null" if kind.endswith("?") else ""
        raise ValueError(f"field {name!r} must be {expected}{suffix}, got {value!r}")


class Message:
    """Base of the message shapes; ``TYPE`` is the wire name, ``KINDS`` the field checks."""

    __slots__ = ()
    TYPE: ClassVar[str]
    KINDS: ClassVar[Mapping[str, str]]

    def validate(self) -> None:
        for name, kind in self.KINDS.items():
            _check(name, getattr(self, name), kind)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ValueError(f"{cls.TYPE}: unknown field {unknown[0]!r}")
        missing = sorted(names - set(obj))
        if missing:
            raise ValueError(f"{cls.TYPE}: missing field {missing[0]!r}")
        values = {k: tuple(v) if cls.KINDS[k] == "ids" and isinstance(v, list) else v
                  for k, v in obj.items()}  # fmt: skip
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{cls.TYPE}: {exc}") from None


@dataclass(frozen=True, slots=True)
class BroadcastStarted(Message):
    """A broadcast started on ``node`` (which encodes it); every router adds it.
    ``expires_at`` is Unix time on the wire: each node's router runs on its own monotonic
    clock, so ``of`` and ``spec`` convert with the node's offset (wall − loop)."""

    TYPE: ClassVar[str] = "broadcast.started"
    KINDS: ClassVar[Mapping[str, str]] = {
        "id": "str", "klass": "str", "origin_zone": "str?", "target_zones": "ids",
        "target_endpoints": "ids", "interrupt": "bool?", "exclusive": "bool",
        "expires_at": "num?", "resumable": "bool", "live": "bool", "node": "str",
        "at": "num", "what": "str",
    }  # fmt: skip

    id: str
    klass: str
    origin_zone: str | None
    target_zones: tuple[str, ...]
    target_endpoints: tuple[str, ...]
    interrupt: bool | None
    exclusive: bool
    expires_at: float | None
    resumable: bool
    live: bool
    node: str
    at: float
    what: str

    def __post_init__(self) -> None:
        self.validate()
        if self.klass not in CLASSES:
            raise ValueError(f"field 'klass' must be one of {', '.join(CLASSES)}")
        self.spec()  # the router's own checks (targets, flags)

    @classmethod
    def of(
        cls, spec: BroadcastSpec, *, node: str, at: float, what: str, wall_offset: float = 0.0
    ) -> BroadcastStarted:
        """From the sender's spec; ``wall_offset``: its wall clock minus its loop clock."""
        expires = None if spec.expires_at is None else spec.expires_at + wall_offset
        return cls(
            spec.id, spec.priority.name.lower(), spec.origin_zone,
            tuple(sorted(spec.target_zones)), tuple(sorted(spec.target_endpoints)),
            spec.interrupt, spec.exclusive, expires, spec.resumable, spec.live,
            node, at, what,
        )  # fmt: skip

    def spec(self, wall_offset: float = 0.0) -> BroadcastSpec:
        """The spec for a router whose wall clock is ``wall_offset`` ahead of its loop's."""
        expires = None if self.expires_at is None else self.expires_at - wall_offset
        try:
            return BroadcastSpec(
                self.id, Priority.parse(self.klass), frozenset(self.target_zones),
                frozenset(self.target_endpoints), self.origin_zone, self.interrupt,
                self.exclusive, expires, self.resumable, self.live,
            )  # fmt: skip
        except ValueError as exc:  # BadRequest is a ValueError
            raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ItemBoundary(Message):
    TYPE: ClassVar[str] = "broadcast.boundary"
    KINDS: ClassVar[Mapping[str, str]] = {"id": "str", "node": "str"}
    id: str
    node: str

    def __post_init__(self) -> None:
        self.validate()


@dataclass(frozen=True, slots=True)
class BroadcastStopped(Message):
    TYPE: ClassVar[str] = "broadcast.stopped"
    KINDS: ClassVar[Mapping[str, str]] = {"id": "str", "reason": "str", "node": "str"}
    id: str
    reason: str
    node: str

    def __post_init__(self) -> None:
        self.validate()
        if self.reason not in get_args(StopReason):
            raise ValueError(f"field 'reason' must be one of {', '.join(get_args(StopReason))}")


@dataclass(frozen=True, slots=True)
class SpeakerCommand(Message):
    """For the node serving ``endpoint``: volume (0-100), mute (bool) or stop (null)."""

    TYPE: ClassVar[str] = "speaker.command"
    KINDS: ClassVar[Mapping[str, str]] = {"endpoint": "str", "command": "str", "value": "any"}
    endpoint: str
    command: str
    value: int | bool | None = None

    def __post_init__(self) -> None:
        self.validate()
        ok = {
            "volume": lambda v: type(v) is int and 0 <= v <= 100,
            "mute": lambda v: isinstance(v, bool),
            "stop": lambda v: v is None,
        }
        if self.command not in ok:
            raise ValueError(f"field 'command' must be one of {', '.join(COMMANDS)}")
        if not ok[self.command](self.value):
            want = {"volume": "an integer 0-100", "mute": "true or false", "stop": "null"}
            raise ValueError(f"{self.command}: field 'value' must be {want[self.command]}")


@dataclass(frozen=True, slots=True)
class Assignment(Message):
    """The leader's commune placement (``loa.cluster.assign``), version increasing."""

    TYPE: ClassVar[str] = "assignment"
    KINDS: ClassVar[Mapping[str, str]] = {"version": "int", "placement": "map"}
    version: int
    placement: dict[str, str]

    def __post_init__(self) -> None:
        self.validate()
        for commune, node in self.placement.items():
            if not (isinstance(node, str) and node and commune):
                raise ValueError(f"field 'placement': commune {commune!r} → {node!r} is not ids")


@dataclass(frozen=True, slots=True)
class NodeStatus(Message):
    """What the dashboards show, whichever node they are on: per-endpoint status of the
    speakers this node serves and what its broadcasts are doing."""

    TYPE: ClassVar[str] = "status"
    KINDS: ClassVar[Mapping[str, str]] = {
        "node": "str", "at": "num", "endpoints": "map", "broadcasts": "map",
    }  # fmt: skip
    node: str
    at: float
    endpoints: dict[str, Any]
    broadcasts: dict[str, Any]

    def __post_init__(self) -> None:
        self.validate()


MESSAGES: dict[str, Callable[[Mapping[str, Any]], Message]] = {
    m.TYPE: m.from_json
    for m in (BroadcastStarted, ItemBoundary, BroadcastStopped, SpeakerCommand, Assignment,
              NodeStatus)
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Envelope:
    seq: int
    sender: str
    fence: int | None
    message: Message

    def __post_init__(self) -> None:
        _check("seq", self.seq, "int")
        _check("sender", self.sender, "str")
        if self.fence is not None and (type(self.fence) is not int or self.fence < 1):
            raise ValueError(f"field 'fence' must be an integer >= 1 or null, got {self.fence!r}")

    def body(self) -> bytes:
        """The JSON object alone (the lifecycle script prepends the sequence number)."""
        obj = {"type": self.message.TYPE, "sender": self.sender, "fence": self.fence}
        obj.update(self.message.to_json())
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def __bytes__(self) -> bytes:
        return b"%d %s" % (self.seq, self.body())

    @classmethod
    def parse(cls, data: bytes) -> Self:
        head, sep, body = bytes(data).partition(b" ")
        if not sep or not head.isdigit():
            raise ValueError("control message must be '<seq> <json object>'")
        try:
            obj = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"control message is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError("control message must be a JSON object")
        kind = obj.pop("type", None)
        if kind not in MESSAGES:
            raise ValueError(f"unknown control message type {kind!r}")
        if "sender" not in obj or "fence" not in obj:
            raise ValueError(
                f"{kind}: missing field {'sender' if 'sender' not in obj else 'fence'!r}"
            )
        sender, fence = obj.pop("sender"), obj.pop("fence")
        return cls(int(head), sender, fence, MESSAGES[kind](obj))
