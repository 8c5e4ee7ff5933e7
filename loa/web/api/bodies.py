"""Every JSON request body of the API, declared once: the handler decodes the body into
these Structs (loa/web/contract.py) and the OpenAPI document is generated from them. An
unknown field is a 400 naming it; ``__post_init__`` holds the rules a type cannot say, and
``json_schema_extra`` says the same rules in the document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from aiohttp import web

from loa.schedule.programme import MAX_DURATION_S, MAX_ITEMS, MAX_TEXT, MIN_GAP_S, MIN_RELAY_S
from loa.schedule.scheduler import MAX_GRACE_S
from loa.store.passwords import MIN_PASSWORD
from loa.store.webhooks import MAX_URL, MIN_SECRET
from loa.streamer.tts import MAX_TEXT_CHARS
from loa.web.api.types import (
    NON_BLANK,
    PORT,
    WS,
    Address,
    AnyId,
    Class,
    Declared,
    Event,
    FrameMs,
    Id,
    LanguageTag,
    Lat,
    Level,
    Lon,
    Meta,
    Name,
    PlayoutDelayMs,
    Role,
    Text,
    TimeZone,
    Unix,
    Url,
    ZoneVoice,
    builtins,
    check_time_zone,
    check_url,
    invalid,
)
from loa.web.contract import parse_body

UNSET: Any = msgspec.UNSET
Unset = msgspec.UnsetType
Duration = Annotated[float, Meta(ge=0.02, le=86400)]
Voice = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,40}$")]
Password = Annotated[str, Meta(min_length=MIN_PASSWORD, max_length=1024)]
MediaId = Annotated[str, Meta(min_length=1, max_length=64, pattern=NON_BLANK)]


def _one_of(*names: str) -> dict[str, Any]:
    """JSON Schema for "at least one of these lists is non-empty"."""
    return {
        "anyOf": [
            {"required": [n], "properties": {n: {"type": "array", "minItems": 1}}} for n in names
        ]
    }


# -- broadcasts and their sources -------------------------------------------------------------
class Targets(Declared, frozen=True):
    zones: list[AnyId] = msgspec.field(default_factory=list)
    endpoints: list[AnyId] = msgspec.field(default_factory=list)


class BroadcastTargets(Targets, frozen=True):
    json_schema_extra: ClassVar[dict[str, Any] | None] = _one_of("zones", "endpoints")

    def __post_init__(self) -> None:
        if not self.zones and not self.endpoints:
            raise ValueError("a broadcast needs at least one target zone or endpoint")


class Source(Declared, frozen=True, tag_field="type"):
    """Where a broadcast's audio comes from; ``type`` picks the kind."""


class ToneSource(Source, frozen=True, tag="tone"):
    freq_hz: Annotated[float, Meta(ge=20, le=20000)] = 1000
    duration_s: Duration | None = None
    level_dbfs: Annotated[float, Meta(ge=-60, le=0)] = -12


class SilenceSource(Source, frozen=True, tag="silence"):
    duration_s: Duration | None = None


class TtsSource(Source, frozen=True, tag="tts"):
    text: Text
    voice: Voice | Unset = UNSET  # default: the target zone's voice
    rate_wpm: Annotated[float, Meta(ge=80, le=450)] = 150
    pitch: Annotated[float, Meta(ge=0, le=99)] = 50


class MediaSource(Source, frozen=True, tag="media"):
    id: MediaId
    name: Name | None = None


Fallback = MediaSource | ToneSource | SilenceSource | TtsSource


class UrlSource(Source, frozen=True, tag="url"):
    """A radio relay ("tiếp sóng"); ``fallback`` plays while its upstream is down."""

    url: Url
    duration_s: Annotated[float, Meta(ge=1, le=86400)] | None = None
    fallback: Fallback | None = None

    def __post_init__(self) -> None:
        check_url(self.url, "source.url")


class PlaylistSource(Source, frozen=True, tag="playlist"):
    items: Annotated[list[Fallback | UrlSource], Meta(min_length=1, max_length=100)]


AnySource = ToneSource | SilenceSource | TtsSource | MediaSource | UrlSource | PlaylistSource


IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[!-~]+$",
        description="printable ASCII without spaces, 1-128; scoped to the caller's account",
    ),
]


class Repeat(Declared, frozen=True):
    """Play an emergency again every ``every_s`` seconds (start to start) until it is
    cancelled, until ``until`` (Unix time) or for ``for_s`` seconds from now (not both)."""

    every_s: Annotated[float, Meta(ge=1, le=86400)]
    until: Unix | Unset = UNSET
    for_s: Annotated[float, Meta(ge=1, le=7 * 86400)] | Unset = UNSET
    json_schema_extra: ClassVar[dict[str, Any] | None] = {"not": {"required": ["until", "for_s"]}}

    def __post_init__(self) -> None:
        if self.until is not UNSET and self.for_s is not UNSET:
            raise invalid("repeat", "give repeat.until or repeat.for_s, not both")


class NewBroadcast(Declared, frozen=True):
    source: AnySource
    targets: BroadcastTargets
    klass: Class = msgspec.field(default="live", name="class")
    # The broadcast's id is the server's; a retry that sends the same key (per account)
    # gets the first answer back instead of a second broadcast.
    idempotency_key: IdempotencyKey | Unset = UNSET
    name: Name | Unset = UNSET
    origin_zone: AnyId | Unset = UNSET  # default: the operator's zone (an admin: national)
    interrupt: bool | Unset = UNSET  # default: by the class (live and emergency interrupt)
    exclusive: bool = False
    chime: bool | Unset = UNSET  # default: emergencies begin with the attention chime
    expires_at: Unix | Unset = UNSET
    repeat: Repeat | Unset = UNSET  # emergencies only: play again every so often
    json_schema_extra: ClassVar[dict[str, Any] | None] = {
        "if": {"required": ["repeat"]},
        "then": {"required": ["class"], "properties": {"class": {"const": "emergency"}}},
    }

    def __post_init__(self) -> None:
        if self.repeat is not UNSET and self.klass != "emergency":
            raise invalid("repeat", "repeat is for emergency broadcasts only")


class PreparedMessage(Declared, frozen=True):
    """A message the emergency dialog offers in one tap: a text to speak or a media id
    (exactly one), for every zone (``zone`` null) or one zone and what is below it."""

    title: Name
    zone: AnyId | None = None
    text: Text | Unset = UNSET
    media: MediaId | Unset = UNSET
    position: Annotated[int, Meta(ge=0, le=10000)] = 100
    json_schema_extra: ClassVar[dict[str, Any] | None] = {
        "oneOf": [{"required": ["text"]}, {"required": ["media"]}]
    }

    def __post_init__(self) -> None:
        if (self.text is UNSET) == (self.media is UNSET):
            raise invalid("text", "a prepared message has exactly one of text or media")


# -- zones, endpoints, users -----------------------------------------------------------------
class NewZone(Declared, frozen=True):
    id: Id
    name: Name
    parent: AnyId | None
    timezone: TimeZone | Unset = UNSET
    languages: list[LanguageTag] | Unset = UNSET
    voice: ZoneVoice | None = None  # None: the parent's (the North's at the top)
    # Packet settings, each None: the parent's (at the top: opus.frame_ms, off,
    # relay.playout_delay_ms).
    frame_ms: FrameMs | None = None  # ms of audio in one RTP packet
    redundancy: bool | None = None  # RFC 2198: each packet also carries the one before
    playout_delay_ms: PlayoutDelayMs | None = None  # D: a frame plays at capture + D

    def __post_init__(self) -> None:
        if isinstance(self.timezone, str):
            check_time_zone(self.timezone)


class ZoneChange(Declared, frozen=True):
    name: Name | Unset = UNSET
    timezone: TimeZone | Unset = UNSET
    languages: list[LanguageTag] | Unset = UNSET
    parent: AnyId | Unset | None = UNSET
    voice: ZoneVoice | Unset | None = UNSET  # null: inherit the parent's again
    frame_ms: FrameMs | Unset | None = UNSET  # null: inherit the parent's again
    redundancy: bool | Unset | None = UNSET
    playout_delay_ms: PlayoutDelayMs | Unset | None = UNSET

    def __post_init__(self) -> None:
        if isinstance(self.timezone, str):
            check_time_zone(self.timezone)


class NewEndpoint(Declared, frozen=True):
    id: Id
    name: Name
    zone: AnyId
    kind: Literal["managed", "rtp"] = "managed"
    address: Address | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    volume: Level = 80
    emergency_volume: Level = 100
    json_schema_extra: ClassVar[dict[str, Any] | None] = {
        "if": {"required": ["kind"], "properties": {"kind": {"const": "rtp"}}},
        "then": {"required": ["address"], "properties": {"address": {"type": "string"}}},
        "else": {"properties": {"address": {"type": "null"}}},
    }

    def __post_init__(self) -> None:
        if self.kind == "rtp" and self.address is None:
            raise invalid("address", "an rtp endpoint needs address: 'host:port'")
        if self.kind == "managed" and self.address is not None:
            raise invalid("address", "only an rtp endpoint has an address")


class EndpointChange(Declared, frozen=True):
    name: Name | Unset = UNSET
    zone: AnyId | Unset = UNSET
    address: Address | Unset | None = UNSET
    lat: Lat | Unset | None = UNSET
    lon: Lon | Unset | None = UNSET
    volume: Level | Unset = UNSET
    emergency_volume: Level | Unset = UNSET
    muted: bool | Unset = UNSET


Username = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,31}$")]
_ZONE_BY_ROLE = {
    "if": {"required": ["role"], "properties": {"role": {"const": "operator"}}},
    "then": {"required": ["zone"], "properties": {"zone": {"type": "string"}}},
    "else": {
        "if": {"required": ["role"], "properties": {"role": {"const": "admin"}}},
        "then": {"properties": {"zone": {"type": "null"}}},
    },
}


class NewUser(Declared, frozen=True):
    """An operator acts in a zone's subtree; an admin has no zone; a viewer may have one."""

    username: Username
    password: Password
    role: Role
    zone: AnyId | None = None
    emergency_right: bool = False
    json_schema_extra: ClassVar[dict[str, Any] | None] = _ZONE_BY_ROLE

    def __post_init__(self) -> None:
        if self.role == "operator" and self.zone is None:
            raise invalid("zone", "an operator needs a zone: the root of the subtree they act in")
        if self.role == "admin" and self.zone is not None:
            raise invalid("zone", "an admin is not scoped to a zone; leave zone out")


class UserChange(Declared, frozen=True):
    role: Role | Unset = UNSET
    zone: AnyId | Unset | None = UNSET
    emergency_right: bool | Unset = UNSET
    disabled: bool | Unset = UNSET
    password: Password | Unset = UNSET
    current_password: Annotated[str, Meta(max_length=1024)] | Unset = msgspec.field(default=UNSET)
    json_schema_extra: ClassVar[dict[str, Any] | None] = {
        "dependentRequired": {"current_password": ["password"]},
    }

    def __post_init__(self) -> None:
        if self.current_password is not UNSET and self.password is UNSET:
            raise invalid("current_password", "current_password is only used with password")


class NewToken(Declared, frozen=True):
    label: Annotated[str, Meta(min_length=1, max_length=100, pattern=NON_BLANK)]


# -- webhooks ---------------------------------------------------------------------------------
class NewWebhook(Declared, frozen=True):
    url: Annotated[
        str,
        Meta(
            max_length=MAX_URL,
            pattern=rf"^[Hh][Tt][Tt][Pp][Ss]?://[^{WS}/?#@:\[\]\x00-\x1f\x7f-\x9f]+"
            rf"(?::{PORT})?(?:[/?#][^{WS}\x00-\x1f\x7f-\x9f]*)?$",
            description="http:// or https://, no credentials",
        ),
    ]
    events: Annotated[list[Event], Meta(min_length=1)]
    secret: Annotated[str, Meta(min_length=MIN_SECRET, max_length=256)] | None = None
    enabled: bool = True


# -- bulletins --------------------------------------------------------------------------------
BulletinLevel = Literal["normal", "priority", "emergency"]


SpokenText = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS, pattern=NON_BLANK)]


class Variant(Declared, frozen=True):
    """One language of a bulletin: text to speak, or a media id to play (exactly one)."""

    language: LanguageTag
    text: (
        Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS, pattern=NON_BLANK)] | Unset
    ) = UNSET
    media: MediaId | Unset = UNSET
    json_schema_extra: ClassVar[dict[str, Any] | None] = {
        "oneOf": [{"required": ["text"]}, {"required": ["media"]}]
    }

    def __post_init__(self) -> None:
        if (self.text is UNSET) == (self.media is UNSET):
            raise ValueError("a variant has exactly one of text or media")


class NewBulletin(Declared, frozen=True):
    level: BulletinLevel
    zones: Annotated[list[AnyId], Meta(min_length=1)]
    title: Name
    variants: Annotated[list[Variant], Meta(min_length=1, max_length=10)]
    issued_at: Unix | None = None
    expires_at: Unix | None = None
    repeat_every_s: Annotated[float, Meta(ge=1, le=86400 * 7)] | None = None
    json_schema_extra: ClassVar[dict[str, Any] | None] = {
        "if": {
            "required": ["repeat_every_s"],
            "properties": {"repeat_every_s": {"type": "number"}},
        },
        "then": {"properties": {"level": {"const": "emergency"}}},
    }

    def __post_init__(self) -> None:
        if self.repeat_every_s is not None and self.level != "emergency":
            raise invalid("repeat_every_s", "repeat_every_s is for emergency bulletins only")


class BulletinAt(Declared, frozen=True):
    at: Unix | None = None


# -- schedules --------------------------------------------------------------------------------
ScheduleId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")]
LibraryId = Annotated[str, Meta(pattern=r"^[a-f0-9]{16}$", description="a media library id")]
Rrule = Annotated[
    str,
    Meta(
        max_length=1000,
        pattern=rf"^(RRULE:)?[A-Z]+=[^;{WS}]+(;[A-Z]+=[^;{WS}]+)*$",
        description="one RFC 5545 RRULE, e.g. FREQ=DAILY;BYHOUR=5; one that never occurs "
        "or that RFC 5545 forbids is refused with 422",
    ),
]


class MediaItem(Declared, frozen=True, tag_field="type", tag="media"):
    id: LibraryId


class UrlItem(Declared, frozen=True, tag_field="type", tag="url"):
    url: Url
    duration_s: Annotated[float, Meta(ge=MIN_RELAY_S, le=MAX_DURATION_S)]
    fallback: Fallback | None = None

    def __post_init__(self) -> None:
        check_url(self.url)


class TtsItem(Declared, frozen=True, tag_field="type", tag="tts"):
    text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT, pattern=NON_BLANK)]
    voice: Voice | Unset = UNSET  # default: the schedule's zone's voice
    rate_wpm: Annotated[int, Meta(ge=80, le=450)] = 150


class SilenceItem(Declared, frozen=True, tag_field="type", tag="silence"):
    duration_s: Annotated[float, Meta(ge=MIN_GAP_S, le=MAX_DURATION_S)]


Item = MediaItem | UrlItem | TtsItem | SilenceItem
LocalTime = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$",
        description="local ISO time in the timezone, e.g. 2025-03-03T05:00",
    ),
]
Dtstart = Annotated[int, Meta(ge=0, le=253402300799)] | LocalTime


class ScheduleChange(Declared, frozen=True):
    """Any field of a schedule but its id (PATCH)."""

    name: Name | Unset = UNSET
    zone: AnyId | Unset | None = UNSET
    dtstart: Dtstart | Unset = UNSET
    rrule: Rrule | Unset = UNSET
    timezone: TimeZone | Unset = UNSET
    grace_s: Annotated[float, Meta(ge=0, le=MAX_GRACE_S)] | Unset = UNSET
    items: Annotated[list[Item], Meta(min_length=1, max_length=MAX_ITEMS)] | Unset = UNSET
    targets: BroadcastTargets | Unset = UNSET
    klass: Literal["scheduled", "background"] | Unset = msgspec.field(default=UNSET, name="class")
    enabled: bool | Unset = UNSET

    def __post_init__(self) -> None:
        if isinstance(self.timezone, str):
            check_time_zone(self.timezone)


class NewSchedule(Declared, frozen=True):
    name: Name
    dtstart: Dtstart
    rrule: Rrule
    items: Annotated[list[Item], Meta(min_length=1, max_length=MAX_ITEMS)]
    targets: BroadcastTargets
    id: ScheduleId | Unset = UNSET
    zone: AnyId | Unset | None = UNSET
    timezone: TimeZone | Unset = UNSET
    grace_s: Annotated[float, Meta(ge=0, le=MAX_GRACE_S)] | Unset = UNSET
    klass: Literal["scheduled", "background"] | Unset = msgspec.field(default=UNSET, name="class")
    enabled: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.timezone, str):
            check_time_zone(self.timezone)


# -- /login (root app; not part of /api/v1) ----------------------------------------------------
class Login(Declared, frozen=True):
    username: Annotated[str, Meta(max_length=200)] = ""
    password: Annotated[str, Meta(max_length=1024)] = ""
    next: Annotated[str, Meta(max_length=2000)] = "/"
    csrf: str | None = None  # a page's form may carry it; login needs none


async def read_login(request: web.Request) -> Mapping[str, Any]:
    """POST /login's body: the page's form, or JSON declared by ``Login`` (4xx otherwise)."""
    if request.content_type != "application/json":
        return await request.post()
    data: dict[str, Any] = builtins(await parse_body(request, Login))
    return data
