"""A programme: what a schedule plays — ordered items, target zones and a class.

Items are described in the factory's own vocabulary (``loa.streamer.factory``), so a
programme's JSON and the playlist it becomes read the same:

- ``{"type": "media", "id": "<16 hex>"}`` — a file from the media library;
- ``{"type": "url", "url": "http://…", "duration_s": 1800}`` — a radio relay for a duration;
- ``{"type": "tts", "text": "…", "voice": "vi", "rate_wpm": 150}`` — text to speech (without
  ``voice``: the schedule's zone's voice, chosen when it plays);
- ``{"type": "silence", "duration_s": 5}`` — a gap.

Every item's end is an item boundary (DESIGN.md): a ``priority`` bulletin waiting behind a
scheduled programme takes the floor there. A programme is ``resumable`` (paused while no
endpoint hears it) unless it relays a radio channel, which runs on unheard.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loa.errors import BadRequest, NotFound
from loa.relay.core.priority import Priority

MAX_ITEMS = 100  # the factory's playlist limit
MAX_DURATION_S = 86400.0
MIN_GAP_S = 0.02  # one frame, as the factory's silence
MIN_RELAY_S = 1.0
MAX_TEXT = 5000
TTS_RATE_WPM = (80, 450)
CLASSES: dict[str, Priority] = {"scheduled": Priority.SCHEDULED, "background": Priority.BACKGROUND}

_MEDIA_ID = re.compile(r"^[a-f0-9]{16}$")  # as loa.media names library files
_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,40}$")  # as the factory checks espeak voices
_URL = re.compile(r"^(https?|rtsps?)://[^\s/?#]+", re.IGNORECASE)  # the relay's SCHEMES
_TTS_PAD_S = 0.5  # espeak's lead-in and trailing pause, roughly


def _duration(where: str, value: object, lo: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not lo <= value <= MAX_DURATION_S
    ):
        raise BadRequest(
            f"{where}: duration_s must be a number of seconds in [{lo:g}, {MAX_DURATION_S:g}], "
            f"got {value!r}",
            field="duration_s",
        )
    return float(value)


def _string(where: str, key: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}: {key} must be a non-empty string, got {value!r}", field=key)
    if len(value) > limit:
        raise BadRequest(f"{where}: {key} is longer than {limit} characters", field=key)
    return value


def _no_extra(where: str, desc: Mapping[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(desc) - allowed)
    if extra:
        known = ", ".join(sorted(allowed))
        raise BadRequest(f"{where}: unknown key(s) {', '.join(extra)}; expected {known}")


@dataclass(frozen=True, slots=True)
class MediaItem:
    media_id: str

    def describe(self) -> dict[str, Any]:
        return {"type": "media", "id": self.media_id}


@dataclass(frozen=True, slots=True)
class RelayItem:
    url: str
    duration_s: float
    # What plays while the upstream is down: a media, tone, silence or tts description.
    fallback: Mapping[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "url", "url": self.url, "duration_s": self.duration_s}
        if self.fallback is not None:
            out["fallback"] = dict(self.fallback)
        return out


@dataclass(frozen=True, slots=True)
class SpeechItem:
    text: str
    voice: str | None = None  # None: the zone's voice
    rate_wpm: int = 150

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "tts", "text": self.text, "rate_wpm": self.rate_wpm}
        if self.voice is not None:
            out["voice"] = self.voice
        return out

    @property
    def estimated_s(self) -> float:
        """espeak speaks ``rate_wpm`` words a minute; a Vietnamese word is one syllable."""
        return len(self.text.split()) * 60.0 / self.rate_wpm + _TTS_PAD_S


@dataclass(frozen=True, slots=True)
class SilenceItem:
    duration_s: float

    def describe(self) -> dict[str, Any]:
        return {"type": "silence", "duration_s": self.duration_s}


Item = MediaItem | RelayItem | SpeechItem | SilenceItem


def parse_item(desc: object, index: int) -> Item:
    """One item from its JSON description; errors name the item by index and type."""
    if not isinstance(desc, Mapping):
        raise BadRequest(f"items[{index}] must be an object with a 'type', got {desc!r}")
    kind = desc.get("type")
    where = f"items[{index}] ({kind})"
    match kind:
        case "media":
            _no_extra(where, desc, frozenset({"type", "id"}))
            media_id = desc.get("id")
            if not isinstance(media_id, str) or not _MEDIA_ID.match(media_id):
                raise BadRequest(
                    f"{where}: id must be a media library id (16 hex digits), got {media_id!r}",
                    field="id",
                )
            return MediaItem(media_id)
        case "url":
            _no_extra(where, desc, frozenset({"type", "url", "duration_s", "fallback"}))
            url = _string(where, "url", desc.get("url"), 2000)
            if not _URL.match(url):
                raise BadRequest(
                    f"{where}: url must be an http, https, rtsp or rtsps URL, got {url!r}",
                    field="url",
                )
            if "duration_s" not in desc:
                raise BadRequest(
                    f"{where}: a radio relay needs duration_s (a radio stream never ends)",
                    field="duration_s",
                )
            fallback = desc.get("fallback")
            if fallback is not None and (
                not isinstance(fallback, Mapping)
                or fallback.get("type") not in ("media", "tone", "silence", "tts")
            ):
                raise BadRequest(
                    f"{where}: fallback must be a media, tone, silence or tts source, "
                    f"got {fallback!r}",
                    field="fallback",
                )
            duration = _duration(where, desc["duration_s"], MIN_RELAY_S)
            return RelayItem(url, duration, dict(fallback) if fallback is not None else None)
        case "tts":
            _no_extra(where, desc, frozenset({"type", "text", "voice", "rate_wpm"}))
            text = _string(where, "text", desc.get("text"), MAX_TEXT)
            voice = desc.get("voice")
            if voice is not None and (not isinstance(voice, str) or not _VOICE.match(voice)):
                raise BadRequest(
                    f"{where}: voice must be an espeak voice name, got {voice!r}", field="voice"
                )
            rate = desc.get("rate_wpm", 150)
            lo, hi = TTS_RATE_WPM
            if isinstance(rate, bool) or not isinstance(rate, int) or not lo <= rate <= hi:
                raise BadRequest(
                    f"{where}: rate_wpm must be a whole number in [{lo}, {hi}], got {rate!r}",
                    field="rate_wpm",
                )
            return SpeechItem(text, voice, rate)
        case "silence":
            _no_extra(where, desc, frozenset({"type", "duration_s"}))
            return SilenceItem(_duration(where, desc.get("duration_s"), MIN_GAP_S))
        case _:
            raise BadRequest(
                f"items[{index}]: type must be one of media, url, tts, silence, got {kind!r}",
                field="type",
            )


def _ids(kind: str, value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise BadRequest(f"targets.{kind} must be a list of ids, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise BadRequest(f"targets.{kind} must hold non-empty string ids, got {item!r}")
    return frozenset(value)


def parse_class(value: object) -> Priority:
    if isinstance(value, Priority) and value in CLASSES.values():
        return value
    if isinstance(value, str) and value in CLASSES:
        return CLASSES[value]
    shown = value.name.lower() if isinstance(value, Priority) else value
    raise BadRequest(
        f"a schedule's class must be 'scheduled' or 'background', got {shown!r}", field="class"
    )


@dataclass(frozen=True, slots=True)
class Programme:
    """Items in order, where they play and at which class; validated on construction."""

    items: tuple[Item, ...]
    target_zones: frozenset[str] = frozenset()
    target_endpoints: frozenset[str] = frozenset()
    priority: Priority = Priority.SCHEDULED

    def __post_init__(self) -> None:
        if not isinstance(self.items, tuple) or not self.items:
            raise BadRequest("a programme needs at least one item", field="items")
        if len(self.items) > MAX_ITEMS:
            raise BadRequest(
                f"a programme has at most {MAX_ITEMS} items, got {len(self.items)}", field="items"
            )
        object.__setattr__(self, "priority", parse_class(self.priority))
        object.__setattr__(self, "target_zones", _ids("zones", self.target_zones))
        object.__setattr__(self, "target_endpoints", _ids("endpoints", self.target_endpoints))
        if not self.target_zones and not self.target_endpoints:
            raise BadRequest(
                "a programme needs targets: at least one zone or endpoint", field="targets"
            )

    @classmethod
    def from_json(cls, data: object) -> Programme:
        """``{"items": [...], "targets": {"zones": [...], "endpoints": [...]},
        "class": "scheduled"|"background"}`` (class defaults to scheduled)."""
        if not isinstance(data, Mapping):
            raise BadRequest(f"a programme must be an object, got {data!r}")
        items = data.get("items")
        if not isinstance(items, list):
            raise BadRequest(f"items must be a list, got {items!r}", field="items")
        targets = data.get("targets")
        if not isinstance(targets, Mapping):
            raise BadRequest(
                f"targets must be an object with zones and endpoints lists, got {targets!r}",
                field="targets",
            )
        _no_extra("targets", targets, frozenset({"zones", "endpoints"}))
        return cls(
            tuple(parse_item(desc, i) for i, desc in enumerate(items)),
            _ids("zones", targets.get("zones", [])),
            _ids("endpoints", targets.get("endpoints", [])),
            parse_class(data.get("class", "scheduled")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [item.describe() for item in self.items],
            "targets": {
                "zones": sorted(self.target_zones),
                "endpoints": sorted(self.target_endpoints),
            },
            "class": self.priority.name.lower(),
        }

    def to_source_description(self) -> dict[str, Any]:
        """The factory's playlist description (``build_source`` takes it as it is)."""
        return {"type": "playlist", "items": [item.describe() for item in self.items]}

    @property
    def resumable(self) -> bool:
        """False if any item relays a radio channel (the radio goes on unheard)."""
        return not any(isinstance(item, RelayItem) for item in self.items)

    def media_ids(self) -> frozenset[str]:
        return frozenset(i.media_id for i in self.items if isinstance(i, MediaItem))

    def item_durations(self, media_s: Mapping[str, float]) -> tuple[float, ...]:
        """Each item's length in seconds: relays and gaps as given, media from the library
        (``media_s``: id → duration_s), speech estimated from its words and rate."""
        out = []
        for index, item in enumerate(self.items):
            match item:
                case RelayItem(duration_s=d) | SilenceItem(duration_s=d):
                    out.append(d)
                case SpeechItem():
                    out.append(item.estimated_s)
                case MediaItem(media_id=media_id):
                    length = media_s.get(media_id)
                    if length is None:
                        raise NotFound(
                            f"items[{index}] (media): media {media_id!r} is not in the library",
                            media=media_id,
                        )
                    out.append(float(length))
        return tuple(out)
