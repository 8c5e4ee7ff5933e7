"""What the API answers, declared for the OpenAPI document (and held to it by the
schemathesis test, tests/web/test_fuzz.py): every JSON answer is one of these shapes,
closed (a field that is not declared here is a contract violation)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from loa.web.api.types import Class, Count, Event, Level, Role, Seconds

UNSET: Any = msgspec.UNSET
Unset = msgspec.UnsetType
State = Literal["pending", "playing", "paused", "finished", "stopped", "expired", "failed"]


class Answer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A JSON answer: its fields are exactly these."""


class Error(Answer, frozen=True):
    error: ErrorDetail


class ErrorDetail(msgspec.Struct, frozen=True):
    """``code`` is stable; ``message`` names what is wrong; further fields name what the error
    is about (field, zone, holder, …)."""

    code: str
    message: str


class TargetsOut(Answer, frozen=True):
    zones: list[str]
    endpoints: list[str]


class LogEntry(Answer, frozen=True):
    id: str
    what: str
    source: str
    klass: Class = msgspec.field(name="class")
    origin_zone: str | None
    targets: TargetsOut
    created_by: str | None
    requested_at: float
    started_at: float | None
    ended_at: float | None
    state: State
    reason: str | None
    endpoints_heard: Count
    heard_s: dict[str, float]
    preemptions: Count
    interrupted_at: float | None  # a restart of the server cut it off then (Unix time) …
    resumed_at: float | None  # … and it came back then; null: it did not


class RepeatOut(Answer, frozen=True):
    """A repeating emergency: every ``every_s`` seconds until ``until_at`` (null: until
    cancelled); ``next_at`` is the next play's time (null when none is to come), ``playing``
    its play on air now. ``kind`` ``bulletin``: an emergency bulletin (CAP or API) that
    repeats, ``id`` its bulletin id (cancel it with ``POST /bulletins/{id}/cancel``)."""

    id: str
    kind: Literal["broadcast", "bulletin"]
    state: Literal["active", "cancelled", "done"]
    reason: str | None
    every_s: float
    until_at: float | None
    next_at: float | None
    playing: str | None
    plays: list[str]
    what: str
    klass: Class = msgspec.field(name="class")
    origin_zone: str | None
    targets: TargetsOut
    issued_at: float
    created_by: str


class Repeats(Answer, frozen=True):
    repeats: list[RepeatOut]


class Prepared(Answer, frozen=True):
    id: str
    title: str
    zone: str | None
    text: str | None
    media: str | None
    position: int
    updated_by: str
    updated_at: float


class PreparedList(Answer, frozen=True):
    prepared: list[Prepared]


class Broadcast(LogEntry, frozen=True):
    listeners: list[str]
    virtual_listeners: Count
    frames: Count
    repeat: RepeatOut | Unset = UNSET  # when it plays as part of a repeating emergency


class EffectiveAudio(Answer, frozen=True):
    """A zone's packet settings after inheritance (loa.relay.core.zones.AudioSettings)."""

    frame_ms: int
    redundancy: bool
    playout_delay_ms: int


class Zone(Answer, frozen=True):
    id: str
    name: str
    parent: str | None
    timezone: str
    languages: list[str]
    voice: str | None  # its own TTS voice; null: it speaks in its parent's
    frame_ms: int | None  # its own packet settings; null: its parent's
    redundancy: bool | None
    playout_delay_ms: int | None
    effective_voice: str | Unset = UNSET  # the voice its TTS sources use
    effective_audio: EffectiveAudio | Unset = UNSET  # the packet settings its endpoints get
    level: int | Unset = UNSET


class ListenUrls(Answer, frozen=True):
    """A zone's listen URLs, each usable as it is by a player: ``ogg`` (``<audio>``, VLC,
    ffplay) and ``whep`` (a WHEP player or a page) carry the zone's listen token in the
    query; ``token`` is the same token for ``Authorization: Bearer``. ``ogg`` and ``token``
    are null when the server has no admin token (no listen tokens exist then)."""

    zone: str
    ogg: str | None
    whep: str
    token: str | None


class EndpointCounts(Answer, frozen=True):
    here: Count
    total: Count
    online: Count


class ZoneDetail(Answer, frozen=True):
    id: str
    name: str
    parent: str | None
    timezone: str
    languages: list[str]
    voice: str | None
    frame_ms: int | None
    redundancy: bool | None
    playout_delay_ms: int | None
    effective_voice: str
    effective_audio: EffectiveAudio
    level: int
    children: list[str]
    endpoints: EndpointCounts


class Location(Answer, frozen=True):
    lat: float | None
    lon: float | None


class Reception(Answer, frozen=True):
    """What a pole (or a plain RTP receiver) last reported about the stream sent to it."""

    fraction_lost: float  # 0..1, since its previous report
    cumulative_lost: int
    highest_sequence: int
    jitter_ms: float
    rtt_ms: float | None  # null until it has seen one of our sender reports


class Endpoint(Answer, frozen=True):
    id: str
    name: str
    zone: str
    kind: Literal["managed", "rtp"]
    location: Location
    online: bool
    transport: Literal["udp", "ws", "none"] | None
    last_seen: float | None
    playing: str | None
    volume: Level
    emergency_volume: Level
    muted: bool
    status: dict[str, Any]
    reception: Reception | None  # its last RTCP receiver report; null before the first
    token: str | Unset = UNSET  # the device token: only in the answer that made it


class StoredEndpoint(Answer, frozen=True):
    id: str
    name: str
    zone: str
    kind: Literal["managed", "rtp"]
    address: str | None
    lat: float | None
    lon: float | None
    volume: Level
    emergency_volume: Level
    has_token: bool


class Media(Answer, frozen=True):
    id: str
    name: str
    file: str
    size: Count
    duration_s: float
    rms_dbfs: float
    peak_dbfs: float
    created_by: str
    created_at: float
    zone: str | None = None  # the owner zone; null: the top level (read-only to operators)


class AuditEntry(Answer, frozen=True):
    id: int
    ts: float
    user: str | None
    action: str
    target: str | None
    detail: Any
    ip: str | None


class User(Answer, frozen=True):
    username: str
    role: Role
    zone: str | None
    emergency_right: bool
    disabled: bool
    created_at: float


class Me(Answer, frozen=True):
    username: str
    role: Role
    zone: str | None
    emergency_right: bool
    csrf: str | None  # a page session's CSRF token: send it back as X-CSRF-Token


class ApiToken(Answer, frozen=True):
    id: int
    username: str
    label: str
    created_at: float
    last_used: float | None
    token: str | Unset = UNSET  # only in the answer that made it


class EndpointReport(Answer, frozen=True):
    endpoint: str
    name: str
    zone: str
    broadcasts: Count
    emergencies: Count
    played_s: Seconds
    requested_s: Seconds
    availability_pct: float | None


class ZoneReport(Answer, frozen=True):
    zone: str
    name: str
    endpoints: Count
    broadcasts: Count
    emergencies: Count
    played_s: Seconds
    requested_s: Seconds
    availability_pct: float | None


class Webhook(Answer, frozen=True):
    id: int
    url: str
    events: list[Event]
    enabled: bool
    created_at: float
    secret: str | Unset = UNSET  # only in the answer that made it


class Delivery(Answer, frozen=True):
    id: int
    hook: int
    event: Literal["broadcast.logged", "endpoint.online", "endpoint.offline", "webhook.test"]
    payload: Any
    state: Literal["pending", "delivered", "dead"]
    attempts: Count
    next_attempt_at: float
    last_error: str | None
    created_at: float
    delivered_at: float | None
    dead_at: float | None


BulletinState = Literal["inbox", "scheduled", "on_air", "done", "cancelled", "expired", "failed"]


class VariantOut(Answer, frozen=True):
    language: str
    text: str | Unset = UNSET
    media: str | Unset = UNSET


class Bulletin(Answer, frozen=True):
    id: str
    level: Literal["normal", "priority", "emergency"]
    zones: list[str]
    title: str
    variants: list[VariantOut]
    issued_at: float
    expires_at: float | None
    repeat_every_s: float | None
    state: BulletinState
    source: Literal["api", "cap"]
    cap_sender: str | None
    cap_identifier: str | None
    broadcasts: list[str]
    created_by: str
    created_at: float
    updated_at: float
    scheduled_at: float | None  # when it plays: the time chosen, or a CAP alert's effective


class PlayWait(Answer, frozen=True):
    """Poles a bulletin played now gets later: held by ``holder`` (``name``, what it plays)
    until its current item ends (``item_end``) or it ends (``end``); ``at``: about when, if
    the holder knows its item's length."""

    holder: str
    name: str
    endpoints: int
    until: Literal["item_end", "end"]
    at: float | None


class Plays(Answer, frozen=True):
    """When a bulletin played now is heard: ``now`` poles at once, the others after a wait."""

    now: int
    waits: list[PlayWait]


class ScheduledBulletin(Bulletin, frozen=True):
    """A bulletin just filed or scheduled; one that plays now (priority or emergency filed,
    normal scheduled without ``at``) has ``plays``, saying when it is heard; else null."""

    plays: Plays | None


class CapBulletin(Bulletin, frozen=True):
    """A CAP alert filed as a bulletin: what it superseded, and warnings about it."""

    superseded: list[str]
    warnings: list[str]


class CapCancelled(Answer, frozen=True):
    cancelled: list[str]
    unknown: list[str]


class CapIgnored(Answer, frozen=True):
    ignored: str
    warnings: list[str]


class ScheduleItem(Answer, frozen=True):
    type: Literal["media", "url", "tts", "silence"]
    id: str | Unset = UNSET
    url: str | Unset = UNSET
    duration_s: float | Unset = UNSET
    fallback: dict[str, Any] | Unset = UNSET
    text: str | Unset = UNSET
    voice: str | Unset = UNSET
    rate_wpm: int | Unset = UNSET


class Schedule(Answer, frozen=True):
    id: str
    name: str
    zone: str | None
    dtstart: float
    rrule: str
    timezone: str
    grace_s: float
    items: list[ScheduleItem]
    targets: TargetsOut
    klass: Literal["scheduled", "background"] = msgspec.field(name="class")
    enabled: bool
    created_by: str
    created_at: float


class Start(Answer, frozen=True):
    at: float
    local: str


class Preview(Answer, frozen=True):
    id: str
    timezone: str
    starts: list[Start]


class Contender(Answer, frozen=True):
    broadcast: str
    klass: Class = msgspec.field(name="class")
    why: str = ""


class Outcome(Answer, frozen=True):
    endpoint: str
    holder: str | None
    wins: bool
    heard_s: float
    others: list[Contender]


class Run(Answer, frozen=True):
    schedule: str
    broadcast: str
    start: float
    planned_s: float
    end: float | None
    outcomes: list[Outcome]
    contested: bool


class Conflicts(Answer, frozen=True):
    since: float
    until: float
    runs: list[Run]


# -- listings --------------------------------------------------------------------------------
class Zones(Answer, frozen=True):
    zones: list[Zone]


class Endpoints(Answer, frozen=True):
    endpoints: list[Endpoint]


class Broadcasts(Answer, frozen=True):
    broadcasts: list[Broadcast]


class Log(Answer, frozen=True):
    entries: list[LogEntry]
    total: Count


class Audit(Answer, frozen=True):
    entries: list[AuditEntry]


class MediaList(Answer, frozen=True):
    media: list[Media]


class Users(Answer, frozen=True):
    users: list[User]


class ApiTokens(Answer, frozen=True):
    tokens: list[ApiToken]


class EndpointReports(Answer, frozen=True):
    since: float
    until: float
    endpoints: list[EndpointReport]


class ZoneReports(Answer, frozen=True):
    since: float
    until: float
    zones: list[ZoneReport]


class Webhooks(Answer, frozen=True):
    webhooks: list[Webhook]


class Deliveries(Answer, frozen=True):
    deliveries: list[Delivery]


class Bulletins(Answer, frozen=True):
    bulletins: list[Bulletin]


class Schedules(Answer, frozen=True):
    schedules: list[Schedule]


# Answers that declarations name by "$ref" inside an "anyOf" (msgspec cannot make a union of
# untagged Structs): generated into the document's components all the same.
REFERRED = (Broadcast, LogEntry, CapCancelled, CapIgnored)
