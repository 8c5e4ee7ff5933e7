"""Sources from their JSON description, as the API and the scheduler receive them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loa.config import DEFAULT_VOICE
from loa.errors import BadRequest
from loa.streamer.base import Source
from loa.streamer.file import FileSource
from loa.streamer.playlist import Playlist
from loa.streamer.relay import Fallback, Limited
from loa.streamer.tone import SilenceSource, ToneSource
from loa.streamer.tts import TtsSource
from loa.streamer.url import UrlSource, redact

if TYPE_CHECKING:
    from loa.streamer.targets import TargetPolicy

_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,40}$")
SOURCE_TYPES = ("tone", "silence", "tts", "media", "url", "playlist")


def _number(desc: Mapping[str, Any], key: str, default: float | None, lo: float, hi: float) -> Any:
    value = desc.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise BadRequest(f"source.{key} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return value


def _text(desc: Mapping[str, Any], key: str, *, required: bool = True, limit: int = 5000) -> Any:
    value = desc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"source.{key} must be a non-empty string")
    if len(value) > limit:
        raise BadRequest(f"source.{key} is longer than {limit} characters")
    return value


FALLBACK_TYPES = ("media", "tone", "silence", "tts")


def _with_fallback(
    relay: Source,
    what: str,
    desc: object,
    media_path: Callable[[str], Path],
    url_targets: TargetPolicy | None = None,
    voice: str = DEFAULT_VOICE,
) -> tuple[Source, str]:
    """The relay with ``fallback`` (a media, tone, silence or tts description) playing while
    its upstream is down; the fallback is built once now, so a bad one is refused at start."""
    if not isinstance(desc, Mapping) or desc.get("type") not in FALLBACK_TYPES:
        kind = desc.get("type") if isinstance(desc, Mapping) else desc
        raise BadRequest(
            f"source.fallback must be a source of type {', '.join(FALLBACK_TYPES)}; got {kind!r}"
        )

    def built() -> tuple[Source, str]:
        return build_source(desc, media_path=media_path, url_targets=url_targets, voice=voice)

    first, fallback_what = built()
    spare: list[Source] = [first]

    def make() -> Source:
        if spare:
            return spare.pop()
        return built()[0]

    return Fallback(relay, make), f"{what} (fallback: {fallback_what})"


def build_source(
    desc: Any,
    *,
    media_path: Callable[[str], Path],
    url_targets: TargetPolicy | None = None,
    voice: str = DEFAULT_VOICE,
) -> tuple[Source, str]:
    """Returns the source and a short human description of it ("what" in the log).
    ``url_targets``: where URL sources may connect (default: no loopback, link-local …);
    ``voice``: the TTS voice of a ``tts`` description that names none (the target zone's)."""
    if not isinstance(desc, Mapping):
        raise BadRequest("source must be an object with a 'type'")
    kind = desc.get("type")
    match kind:
        case "tone":
            freq = _number(desc, "freq_hz", 1000, 20, 20000)
            dur = _number(desc, "duration_s", None, 0.02, 86400)
            level = _number(desc, "level_dbfs", -12, -60, 0)
            return ToneSource(freq_hz=freq, level_dbfs=level, duration_s=dur), f"tone {freq:g} Hz"
        case "silence":
            return SilenceSource(
                duration_s=_number(desc, "duration_s", None, 0.02, 86400)
            ), "silence"
        case "tts":
            text = _text(desc, "text")
            named = desc.get("voice")
            speaker = voice if named is None else named
            if not isinstance(speaker, str) or not _VOICE.match(speaker):
                raise BadRequest(f"source.voice must be an espeak voice name, got {named!r}")
            rate = _number(desc, "rate_wpm", 150, 80, 450)
            pitch = _number(desc, "pitch", 50, 0, 99)
            what = text if len(text) <= 60 else text[:57] + "…"
            return TtsSource(text, voice=speaker, rate_wpm=rate, pitch=pitch), f"TTS: {what}"
        case "media":
            media_id = _text(desc, "id", limit=64)
            path = media_path(media_id)
            return FileSource(path, name=desc.get("name") or path.name), f"media {media_id}"
        case "url":
            url = _text(desc, "url", limit=2000)
            duration = _number(desc, "duration_s", None, 1, 86400)
            # UrlSource starts its reader thread on the first read: nothing to release if the
            # fallback is refused below
            source: Source = UrlSource(url, targets=url_targets)
            what = f"relay {redact(url)}"  # no password in the log
            if desc.get("fallback") is not None:
                source, what = _with_fallback(
                    source, what, desc["fallback"], media_path, url_targets, voice
                )
            if duration is not None:
                source = Limited(source, duration)
            return source, what
        case "playlist":
            items = desc.get("items")
            if not isinstance(items, list) or not 1 <= len(items) <= 100:
                raise BadRequest("source.items must be a list of 1..100 sources")
            built = [
                build_source(item, media_path=media_path, url_targets=url_targets, voice=voice)
                for item in items
            ]
            return Playlist([s for s, _ in built]), " + ".join(w for _, w in built)
        case _:
            raise BadRequest(f"source.type must be one of {', '.join(SOURCE_TYPES)}, got {kind!r}")
