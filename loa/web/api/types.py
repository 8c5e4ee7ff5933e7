"""The small declared types every API declaration is built from: ids, names, Unix times,
levels, time zones, URLs. A type's bounds are both its validation and its JSON Schema."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import msgspec

from loa.web.contract import BadUrl

Meta = msgspec.Meta

# Patterns mean the same to msgspec (Python re) and to JSON Schema (ECMA-262): no \s, \S or
# \d, whose meanings differ; whitespace is spelled out as Python's str.isspace() knows it.
WS = r"\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NON_BLANK = rf"[^{WS}]"  # a string that is not all whitespace (what str.strip() keeps)
# Ids appear in URLs and logs: a slug of ASCII letters, digits, '.', '_' and '-'.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Id = Annotated[str, Meta(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 . _ -")]
# Whatever a path segment holds (ids made before the pattern above, or by the config file).
AnyId = Annotated[str, Meta(min_length=1, max_length=64)]
Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=NON_BLANK)]
Text = Annotated[str, Meta(min_length=1, max_length=5000, pattern=NON_BLANK)]
UNIX_MAX = 253402300799.0  # 9999-12-31T23:59:59Z
Unix = Annotated[float, Meta(ge=0, le=UNIX_MAX, description="Unix time in seconds")]
Level = Annotated[int, Meta(ge=0, le=100)]
Lat = Annotated[float, Meta(ge=-90, le=90)]
Lon = Annotated[float, Meta(ge=-180, le=180)]
Count = Annotated[int, Meta(ge=0)]
Seconds = Annotated[float, Meta(ge=0)]
LanguageTag = Annotated[
    str, Meta(min_length=2, max_length=35, pattern=r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
]
Class = Literal["background", "scheduled", "priority", "live", "emergency"]
# A zone's TTS voice (loa.config.ZONE_VOICES): North, Central, South of espeak-ng.
ZoneVoice = Literal["vi", "vi-vn-x-central", "vi-vn-x-south"]
# A zone's packet settings (loa.relay.core.zones.ZoneAudio; loa.config.FRAME_DURATIONS_MS,
# ZONE_PLAYOUT_DELAY_MS).
FrameMs = Literal[20, 40, 60]
PlayoutDelayMs = Annotated[int, Meta(ge=40, le=1000)]
Role = Literal["admin", "operator", "viewer"]
Event = Literal["broadcast.logged", "endpoint.online", "endpoint.offline"]
Limit = Annotated[int, Meta(ge=0, le=1000)]
Offset = Annotated[int, Meta(ge=0, le=10**9)]
PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# A static RTP endpoint: an IPv4 address and a port (a name would be resolved per packet).
Address = Annotated[
    str,
    Meta(
        pattern=rf"^{_OCTET}(\.{_OCTET}){{3}}:{PORT}$",
        description="IPv4 address:port of an rtp receiver",
    ),
]
URL_SCHEMES = ("http", "https", "rtsp", "rtsps")
_VISIBLE = rf"[^{WS}\x00-\x1f\x7f-\x9f]"
URL_PATTERN = (
    r"^(?:[Hh][Tt][Tt][Pp][Ss]?|[Rr][Tt][Ss][Pp][Ss]?)://"
    rf"(?:[^{WS}/?#@\x00-\x1f\x7f-\x9f]+@)?[^{WS}/?#@:\[\]\x00-\x1f\x7f-\x9f]+(?::{PORT})?"
    rf"(?:[/?#]{_VISIBLE}*)?$"
)
Url = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2000,
        description="an http(s) or rtsp(s) URL; one that does not parse is refused with 422",
        extra_json_schema={"format": "uri", "pattern": URL_PATTERN},
    ),
]


@cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone this machine can load (the ``TimeZone`` enum)."""
    out = []
    for name in sorted(zoneinfo.available_timezones()):
        try:
            zoneinfo.ZoneInfo(name)
        except (KeyError, ValueError):  # pragma: no cover - a broken tzdata entry
            continue
        out.append(name)
    return tuple(out)


TimeZone = Annotated[
    str,
    Meta(
        min_length=1,
        description="an IANA time zone name, e.g. Asia/Ho_Chi_Minh",
        extra_json_schema={"$ref": "#/components/schemas/TimeZone"},
    ),
]


def invalid(field: str, message: str) -> ValueError:
    """What a ``__post_init__`` raises: msgspec makes it a 400 at the Struct's path, and
    ``contract.refusal`` names ``field`` inside it."""
    return ValueError(f"[field={field}] {message}")


def check_time_zone(name: str, key: str = "timezone") -> None:
    """ValueError (a 400 through msgspec) unless ``name`` is a known IANA zone."""
    if name not in time_zones():
        raise invalid(key, f"{key} must be an IANA time zone like Asia/Ho_Chi_Minh, got {name!r}")


def check_url(url: str, key: str = "url") -> str:
    """A URL the relay can open: 422 ``bad_url`` naming the field otherwise."""
    if any(ch.isspace() or ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in url):
        raise BadUrl(f"{key} {url!r} contains whitespace or control characters", field=key)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise BadUrl(f"{key} {url!r} is not a URL: {exc}", field=key) from None
    if parts.scheme.lower() not in URL_SCHEMES:
        raise BadUrl(
            f"{key} {url!r} is not a URL of a stream: it must start with "
            f"{', '.join(s + '://' for s in URL_SCHEMES)}",
            field=key,
        )
    if not parts.hostname:
        raise BadUrl(f"{key} {url!r} has no host", field=key)
    return url


class Declared(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A request body or query string: frozen, and an unknown field is a 400 naming it.
    ``json_schema_extra`` adds to its JSON Schema what a type cannot say (e.g. "zones or
    endpoints"); its ``__post_init__`` checks the same."""

    json_schema_extra: ClassVar[dict[str, Any] | None] = None


def builtins(value: Any) -> dict[str, Any]:
    """A declaration as plain JSON data, without its unset fields (for the layers below)."""
    data: dict[str, Any] = msgspec.to_builtins(value)
    return data
