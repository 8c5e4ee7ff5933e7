"""What loa does with a CAP alert: a bulletin to play, a cancellation, or nothing (and why).

``plan(alert, geocode_zones=…)`` is pure: it reads the ``Alert`` and the configuration it is
given and returns a ``BulletinPlan``, a ``Cancel`` or ``Ignored(reason)``. In order:

1. ``status`` must be in ``allow_status`` (only ``Actual`` by default: exercises, tests,
   system messages and drafts never reach a loudspeaker unless configured) and ``scope`` in
   ``allow_scope`` (``Public`` by default: loudspeakers are heard by everyone, so a
   Restricted or Private alert is not theirs to play).
2. ``msgType``: ``Cancel`` → ``Cancel(references)``; ``Ack`` and ``Error`` carry no bulletin;
   ``Alert`` and ``Update`` are planned, an Update naming in ``replaces`` the bulletins it
   supersedes (its ``references``).
3. With ``now`` (Unix time) given, info blocks already past their ``expires`` are dropped.
4. Zones: every area geocode ``(valueName, value)`` is looked up in ``geocode_zones``; unknown
   geocodes and areas with no geocode (polygons and circles are not mapped) go into the
   plan's warnings; when no area maps to a zone the alert is ``Ignored``.
5. Level (Circular 39), the highest over the info blocks, from CAP urgency × severity:

   ============  =========  =========  =========  =======  =======
   urgency       Extreme    Severe     Moderate   Minor    Unknown
   ============  =========  =========  =========  =======  =======
   Immediate     emergency  emergency  priority   normal   normal
   Expected      priority   priority   priority   normal   normal
   Future        normal     normal     normal     normal   normal
   Past          normal     normal     normal     normal   normal
   Unknown       normal     normal     normal     normal   normal
   ============  =========  =========  =========  =======  =======

   The table is monotone: a more urgent or more severe alert never gets a lower level.
   ``Level.priority`` is the broadcast class it plays at: normal → scheduled, priority →
   priority, emergency → emergency.
6. TTL: ``expires_at`` is the latest ``expires`` (Unix time) when every info block has one,
   else ``None`` (no limit); ``effective_at`` is the earliest ``effective`` (CAP's default
   is ``sent``).
7. Repeats (emergency level only; others play once): every ``repeat_every_s`` seconds,
   start to start, until the alert expires or is cancelled. The interval is the info
   parameter ``repeatIntervalMinutes`` (``<parameter><valueName>repeatIntervalMinutes
   </valueName><value>5</value></parameter>``; ``0`` plays once; the smallest when several
   info blocks say it), else the configured default (``relay.cap_repeat_every_s``, 600 s;
   ``0`` plays once). A value that is not a whole number of minutes from 0 to 1440 is
   refused (``CapError`` naming the parameter's path), never guessed at.
8. What to play: one variant per info block, ordered by ``languages`` (exact tag first, then
   the primary subtag: ``vi`` matches ``vi-VN``; unlisted languages follow in document
   order, with a warning). A variant plays the info's first audio resource (``audio/*``
   with a ``uri`` or ``derefUri``) if it has one, else speaks its text: headline,
   description and instruction, each ended as a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from loa.bulletins.cap import (
    Alert,
    CapError,
    Info,
    MsgType,
    Reference,
    Resource,
    Severity,
    Urgency,
)
from loa.relay.core.priority import Priority

REPEAT_PARAMETER = "repeatIntervalMinutes"
_MINUTES = re.compile(r"[0-9]{1,4}")  # ASCII digits: str.isdigit() takes "١" too
MAX_REPEAT_MINUTES = 1440
DEFAULT_REPEAT_S = 600.0


class Level(StrEnum):
    """The three bulletin levels of Circular 39."""

    NORMAL = "normal"
    PRIORITY = "priority"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @property
    def priority(self) -> Priority:
        """The broadcast class a bulletin of this level plays at."""
        return _CLASSES[self]


_RANKS = {Level.NORMAL: 0, Level.PRIORITY: 1, Level.EMERGENCY: 2}
_CLASSES = {
    Level.NORMAL: Priority.SCHEDULED,
    Level.PRIORITY: Priority.PRIORITY,
    Level.EMERGENCY: Priority.EMERGENCY,
}
_GRAVE = frozenset({Severity.EXTREME, Severity.SEVERE})
_NOTABLE = _GRAVE | {Severity.MODERATE}


def level_for(urgency: Urgency, severity: Severity) -> Level:
    """The level of one info block (the table in the module docstring)."""
    if urgency is Urgency.IMMEDIATE and severity in _GRAVE:
        return Level.EMERGENCY
    if urgency in (Urgency.IMMEDIATE, Urgency.EXPECTED) and severity in _NOTABLE:
        return Level.PRIORITY
    return Level.NORMAL


@dataclass(frozen=True, slots=True)
class Variant:
    """One language of a bulletin: audio to play, or (``audio is None``) ``text`` to speak.

    ``text`` is always there when the info block had any, for logs and the operator's page."""

    language: str
    text: str
    audio: Resource | None = None


@dataclass(frozen=True, slots=True)
class BulletinPlan:
    """A bulletin to put on air: where, at which level, until when, and what to say."""

    alert: Reference
    level: Level
    zones: frozenset[str]
    variants: tuple[Variant, ...]
    event: str
    expires_at: float | None = None
    effective_at: float | None = None
    replaces: tuple[Reference, ...] = ()
    warnings: tuple[str, ...] = ()
    repeat_every_s: float | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop and withdraw the bulletins of the referenced alerts."""

    alert: Reference
    references: tuple[Reference, ...]
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """Nothing goes on air; ``reason`` says why, ``warnings`` what else was noticed."""

    reason: str
    warnings: tuple[str, ...] = ()


def plan(
    alert: Alert,
    *,
    geocode_zones: Mapping[tuple[str, str], str],
    allow_status: Collection[str] = ("Actual",),
    allow_scope: Collection[str] = ("Public",),
    languages: Sequence[str] = ("vi",),
    now: float | None = None,
    repeat_every_s: float = DEFAULT_REPEAT_S,
) -> BulletinPlan | Cancel | Ignored:
    """Decide what loa does with ``alert`` (the rules are in the module docstring)."""
    if alert.status not in allow_status:
        allowed = ", ".join(allow_status) or "none"
        return Ignored(f"status {alert.status} is not allowed on air (allowed: {allowed})")
    if alert.scope not in allow_scope:
        allowed = ", ".join(allow_scope) or "none"
        return Ignored(f"scope {alert.scope} is not allowed on air (allowed: {allowed})")
    if alert.msg_type is MsgType.CANCEL:
        if not alert.references:
            return Ignored("Cancel names no earlier alert in references")
        return Cancel(alert.reference, alert.references, alert.note)
    if alert.msg_type not in (MsgType.ALERT, MsgType.UPDATE):
        return Ignored(f"msgType {alert.msg_type} carries no bulletin")
    if not alert.infos:
        return Ignored(f"{alert.msg_type} has no info block")
    warnings: list[str] = []
    infos = _current(alert.infos, now, warnings)
    if not infos:
        return Ignored("every info block has expired", tuple(warnings))
    zones = _zones(infos, geocode_zones, warnings)
    if not zones:
        return Ignored("no area maps to a zone", tuple(warnings))
    variants = _variants(infos, languages, warnings)
    if not variants:
        return Ignored("no info block has audio or text to play", tuple(warnings))
    replaces: tuple[Reference, ...] = ()
    if alert.msg_type is MsgType.UPDATE:
        replaces = alert.references
        if not replaces:
            warnings.append("Update names no earlier alert in references: nothing to replace")
    expiries = [info.expires.timestamp() for info in infos if info.expires is not None]
    level = max((level_for(i.urgency, i.severity) for i in infos), key=lambda lv: lv.rank)
    every = repeat_interval(infos, repeat_every_s)
    return BulletinPlan(
        alert=alert.reference,
        level=level,
        zones=frozenset(zones),
        variants=variants,
        event=infos[0].event,
        expires_at=max(expiries) if len(expiries) == len(infos) else None,
        effective_at=min((i.effective or alert.sent).timestamp() for i in infos),
        replaces=replaces,
        warnings=tuple(warnings),
        repeat_every_s=every if level is Level.EMERGENCY and every else None,
    )


def repeat_interval(infos: Sequence[Info], default_s: float) -> float:
    """Seconds between plays: the smallest ``repeatIntervalMinutes`` any info block states,
    else ``default_s``; 0 means play once. A malformed value raises ``CapError``."""
    stated = []
    for n, info in enumerate(infos, 1):
        for k, (name, value) in enumerate(info.parameters, 1):
            if name != REPEAT_PARAMETER:
                continue
            path = f"alert/info[{n}]/parameter[{k}]/value"
            if not _MINUTES.fullmatch(value) or int(value) > MAX_REPEAT_MINUTES:
                raise CapError(
                    f"{path}: {REPEAT_PARAMETER} must be a whole number of minutes from 0 "
                    f"to {MAX_REPEAT_MINUTES}, got {value!r}",
                    path=path,
                )
            stated.append(int(value) * 60.0)
    return min(stated) if stated else default_s


def _current(infos: Sequence[Info], now: float | None, warnings: list[str]) -> list[Info]:
    current = []
    for n, info in enumerate(infos, 1):
        if now is not None and info.expires is not None and info.expires.timestamp() <= now:
            warnings.append(f"info[{n}] ({info.language}) expired at {info.expires.isoformat()}")
        else:
            current.append(info)
    return current


def _zones(
    infos: Sequence[Info], geocode_zones: Mapping[tuple[str, str], str], warnings: list[str]
) -> set[str]:
    zones: set[str] = set()
    for info in infos:
        for area in info.areas:
            if not area.geocodes:
                _warn(
                    warnings,
                    f"area {area.area_desc!r} has no geocode "
                    "(polygons and circles are not mapped to zones)",
                )
            for code in area.geocodes:
                zone = geocode_zones.get((code.value_name, code.value))
                if zone is None:
                    _warn(
                        warnings,
                        f"unknown geocode {code.value_name}={code.value} "
                        f"in area {area.area_desc!r}",
                    )
                else:
                    zones.add(zone)
    return zones


def _warn(warnings: list[str], message: str) -> None:
    # Language variants usually repeat the same areas: say each thing once.
    if message not in warnings:
        warnings.append(message)


def _variants(
    infos: Sequence[Info], languages: Sequence[str], warnings: list[str]
) -> tuple[Variant, ...]:
    ranked = []
    for n, info in enumerate(infos, 1):
        text, audio = spoken_text(info), audio_resource(info)
        if not text and audio is None:
            warnings.append(f"info[{n}] ({info.language}) has neither audio nor text; skipped")
            continue
        rank = language_rank(info.language, languages)
        if rank == len(languages):
            listed = ", ".join(languages) or "none"
            warnings.append(
                f"info[{n}] language {info.language} is not among the zone languages "
                f"({listed}); it plays last"
            )
        ranked.append((rank, Variant(info.language, text, audio)))
    ranked.sort(key=lambda pair: pair[0])  # stable: document order within a rank
    return tuple(variant for _, variant in ranked)


def language_rank(tag: str, languages: Sequence[str]) -> int:
    """Where ``tag`` falls in ``languages``: an exact match (any case), else the first entry
    with the same primary subtag, else ``len(languages)``."""
    wanted = [lang.lower() for lang in languages]
    tag = tag.lower()
    if tag in wanted:
        return wanted.index(tag)
    primary = tag.split("-")[0]
    for i, lang in enumerate(wanted):
        if lang.split("-")[0] == primary:
            return i
    return len(languages)


def audio_resource(info: Info) -> Resource | None:
    """The info block's first audio resource that can be fetched or is inline."""
    for resource in info.resources:
        mime = (resource.mime_type or "").lower()
        if mime.startswith("audio/") and (resource.uri or resource.deref):
            return resource
    return None


def spoken_text(info: Info) -> str:
    """Headline, description and instruction, each ended as a sentence so TTS pauses."""
    parts = []
    for part in (info.headline, info.description, info.instruction):
        if part:
            part = " ".join(part.split())
            parts.append(part if part[-1] in ".!?…:;" else part + ".")
    return "\n".join(parts)
