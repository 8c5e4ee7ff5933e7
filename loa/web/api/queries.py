"""Every query string of the API, declared once: decoded into these Structs before a handler
runs (strings become the declared numbers and booleans), documented as the operation's
parameters. A parameter that is not declared is a 400 naming it; so is one given twice."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from loa.web.api.types import (
    AnyId,
    Class,
    Declared,
    Meta,
    Name,
    TimeZone,
    Unix,
    check_time_zone,
)

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
Page = Annotated[int, Meta(ge=1, le=1000)]
Offset = Annotated[int, Meta(ge=0, le=10**9)]


class _Zoned(Declared, frozen=True):
    tz: TimeZone = DEFAULT_TZ

    def __post_init__(self) -> None:
        check_time_zone(self.tz, "tz")


class LogQuery(Declared, frozen=True):
    """The broadcast log, narrowed to the caller's zones; since <= requested_at < until."""

    zone: AnyId | None = None
    since: Unix | None = None
    until: Unix | None = None
    klass: Class | None = msgspec.field(default=None, name="class")
    limit: Page = 100
    offset: Offset = 0


class LogCsvQuery(_Zoned, frozen=True):
    zone: AnyId | None = None
    since: Unix | None = None
    until: Unix | None = None
    klass: Class | None = msgspec.field(default=None, name="class")
    lang: Literal["vi", "en"] | None = None  # the CSV's words; default Accept-Language, vi


class AuditQuery(Declared, frozen=True):
    user: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    action: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    since: Unix | None = None
    until: Unix | None = None
    limit: Page = 100
    offset: Offset = 0


class UploadQuery(Declared, frozen=True):
    filename: Annotated[str, Meta(min_length=1, max_length=255)] = "upload.bin"
    # The owner zone: default the uploader's (an admin's: the top level); one the caller sees.
    zone: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class ReportQuery(_Zoned, frozen=True, kw_only=True):
    """A report over [since, until): until after since, at most the report period."""

    since: Unix
    until: Unix
    zone: AnyId | None = None
    format: Literal["json", "csv"] = "json"
    lang: Literal["vi", "en"] | None = None  # the CSV header's; default Accept-Language, vi


class DeliveriesQuery(Declared, frozen=True):
    state: Literal["pending", "delivered", "dead"] | None = None
    limit: Page = 100
    offset: Offset = 0


class BulletinsQuery(Declared, frozen=True):
    state: (
        Literal["inbox", "scheduled", "on_air", "done", "cancelled", "expired", "failed"] | None
    ) = None


class WindowQuery(Declared, frozen=True):
    """Runs starting in [since, until), at most 31 days."""

    since: Unix
    until: Unix


class PreviewQuery(Declared, frozen=True):
    n: Annotated[int, Meta(ge=1, le=100)] = 10
    after: Unix | None = None


# -- routes whose handlers live outside loa/web/api (see loa/web/api/elsewhere.py) -------------
class WhipQuery(Declared, frozen=True):
    """What the published broadcast is: as POST /broadcasts, in the query (the body is SDP)."""

    zones: Annotated[str, Meta(max_length=5000, description="comma-separated zone ids")] = ""
    endpoints: Annotated[str, Meta(max_length=5000, description="comma-separated ids")] = ""
    klass: Class = msgspec.field(default="live", name="class")
    origin_zone: AnyId | None = None
    interrupt: bool | None = None
    exclusive: bool | None = None
    expires_at: Unix | None = None
    chime: bool | None = None
    name: Name | None = None


ListenToken = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=256,
        description="the zone's listen token (GET /zones/{id}/listen), for players that "
        "cannot send Authorization: Bearer",
    ),
]


class WhepQuery(Declared, frozen=True):
    zone: AnyId
    token: ListenToken | None = None


class WhepSessionQuery(Declared, frozen=True):
    """A WHEP session's URL carries the listen token when the POST's URL did."""

    token: ListenToken | None = None
