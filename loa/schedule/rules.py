"""When a schedule plays: DTSTART plus one RFC 5545 RRULE, read in the zone's time zone.

The rule is expanded in local wall-clock time (05:00 means 05:00 in Hà Nội whatever UTC
says) by ``dateutil.rrule``; each local time becomes a Unix time the way RFC 5545 §3.3.5
says: a time that does not exist (skipped by a DST jump) is read with the offset before the
jump, so it lands after it (02:30 → 03:30); an ambiguous one (repeated by a jump back)
means its first occurrence. Two rule times that land on the same instant count once, so
occurrences are strictly increasing in Unix time.

``Recurrence`` is validated when built; every error names the field (``rrule``,
``timezone`` or ``dtstart``): a refused rule is a ``BadRule`` (code ``bad_rrule``) whose
``reason`` is one of ``RULE_REASONS`` with that reason's parameters, so a page can say what
is wrong in the reader's language (docs/DESIGN.md, "Inbox and schedules in plain words").
Some of our own checks run before dateutil's because dateutil loops forever on
``INTERVAL=0`` and scans to the year 9999 on rules that name a day no month has
(``BYMONTH=2;BYMONTHDAY=30``).
"""

from __future__ import annotations

import math
import re
import warnings
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dateutil import rrule as du

from loa.errors import BadRequest, Unprocessable

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY")
KEYS = frozenset(
    {
        "FREQ",
        "UNTIL",
        "COUNT",
        "INTERVAL",
        "BYSECOND",
        "BYMINUTE",
        "BYHOUR",
        "BYDAY",
        "BYMONTHDAY",
        "BYYEARDAY",
        "BYWEEKNO",
        "BYMONTH",
        "BYSETPOS",
        "WKST",
    }
)
MAX_INTERVAL = 1000
MAX_COUNT = 100_000
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February at its longest
_SLACK = timedelta(days=1)  # more than any DST jump: wall order vs. UTC order near one
_FIRST_SPAN_S = 2 * 86400.0
_DAY_RE = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_RANGES = {"BYSECOND": (0, 59), "BYMINUTE": (0, 59), "BYHOUR": (0, 23)}
RULE_REASONS = frozenset(
    {
        "empty",  # no rule at all
        "lines",  # more than one line (DTSTART, RDATE, EXDATE …)
        "not_name_value",  # part
        "unknown_part",  # part
        "twice",  # part
        "no_freq",
        "secondly",
        "freq",  # value
        "range",  # part, value, low, high
        "count_and_until",
        "until_utc",  # value
        "numbers",  # part, value: not a list of whole numbers
        "days",  # value: not a list of MO…SU, optionally with an ordinal
        "no_month_day",  # BYMONTH × BYMONTHDAY: a day no listed month has
        "never",  # no occurrence at or after DTSTART
        "invalid",  # refused by the RRULE parser for another reason (its words in message)
    }
)


class BadRule(Unprocessable, ValueError):
    """An RRULE that is refused: ``reason`` (one of ``RULE_REASONS``) and its parameters."""

    code = "bad_rrule"


def zone_info(name: object) -> zoneinfo.ZoneInfo:
    """The IANA time zone, or ``BadRequest`` naming it."""
    if not isinstance(name, str) or not name:
        raise BadRequest(
            f"timezone must be an IANA name like {DEFAULT_TZ!r}, got {name!r}", field="timezone"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"unknown timezone {name!r}; use an IANA name like {DEFAULT_TZ!r}", field="timezone"
        ) from None


def _bad(text: str, why: str, reason: str, **params: object) -> BadRule:
    assert reason in RULE_REASONS, reason
    return BadRule(f"invalid RRULE {text!r}: {why}", field="rrule", reason=reason, **params)


def _int_list(text: str, key: str, value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise _bad(
            text,
            f"{key} must be a comma-separated list of integers, got {value!r}",
            "numbers",
            part=key,
            value=value,
        ) from None


def _split(text: str) -> dict[str, str]:
    """RRULE parts by upper-case name; checks the parts dateutil does not check or hangs on."""
    parts: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        key = name.strip().upper()
        if not eq or not key or not value.strip():
            raise _bad(text, f"{part!r} is not NAME=VALUE", "not_name_value", part=part)
        if key not in KEYS:
            raise _bad(
                text,
                f"unknown part {key}; expected {', '.join(sorted(KEYS))}",
                "unknown_part",
                part=key,
            )
        if key in parts:
            raise _bad(text, f"{key} is given twice", "twice", part=key)
        parts[key] = value.strip()
    freq = parts.get("FREQ", "").upper()
    if not freq:
        raise _bad(text, "FREQ is required", "no_freq")
    if freq == "SECONDLY":
        raise _bad(text, "FREQ=SECONDLY is not allowed; the finest is MINUTELY", "secondly")
    if freq not in FREQS:
        why = f"FREQ must be one of {', '.join(FREQS)}, got {freq}"
        raise _bad(text, why, "freq", value=freq)
    for key, top in (("INTERVAL", MAX_INTERVAL), ("COUNT", MAX_COUNT)):
        given = parts.get(key)
        if given is not None and not (given.isdigit() and 1 <= int(given) <= top):
            why = f"{key} must be a whole number in [1, {top}], got {given}"
            raise _bad(text, why, "range", part=key, value=given, low=1, high=top)
    if "COUNT" in parts and "UNTIL" in parts:
        raise _bad(text, "COUNT and UNTIL cannot both be given (RFC 5545)", "count_and_until")
    if "UNTIL" in parts and not parts["UNTIL"].upper().endswith("Z"):
        why = f"UNTIL must be a UTC time ending in Z, got {parts['UNTIL']}"
        raise _bad(text, why, "until_utc", value=parts["UNTIL"])
    _check_times_and_days(text, parts)
    _check_month_days(text, parts)
    return parts


def _check_times_and_days(text: str, parts: dict[str, str]) -> None:
    """The parts an operator types most, checked here so each refusal has a reason."""
    for key, (low, high) in _RANGES.items():
        if key in parts:
            for v in _int_list(text, key, parts[key]):
                if not low <= v <= high:
                    why = f"{key} values must be in {low}..{high}, got {v}"
                    raise _bad(text, why, "range", part=key, value=v, low=low, high=high)
    days = parts.get("BYDAY")
    if days is not None and not all(_DAY_RE.fullmatch(d.strip().upper()) for d in days.split(",")):
        why = f"BYDAY must list days MO, TU, WE, TH, FR, SA, SU, got {days}"
        raise _bad(text, why, "days", value=days)


def _check_month_days(text: str, parts: dict[str, str]) -> None:
    """Refuses BYMONTHDAY values that none of the BYMONTH months has (dateutil would scan
    to the year 9999 looking for one)."""
    if "BYMONTHDAY" not in parts:
        return
    days = _int_list(text, "BYMONTHDAY", parts["BYMONTHDAY"])
    for d in days:
        if d == 0 or not -31 <= d <= 31:
            why = f"BYMONTHDAY values must be in 1..31 or -31..-1, got {parts['BYMONTHDAY']}"
            raise _bad(text, why, "range", part="BYMONTHDAY", value=d, low=1, high=31)
    months = _int_list(text, "BYMONTH", parts["BYMONTH"]) if "BYMONTH" in parts else range(1, 13)
    for m in months:
        if not 1 <= m <= 12:
            why = f"BYMONTH values must be in 1..12, got {parts['BYMONTH']}"
            raise _bad(text, why, "range", part="BYMONTH", value=m, low=1, high=12)
    if not any(abs(d) <= _MONTH_DAYS[m - 1] for d in days for m in months):
        why = "no month in BYMONTH has a day in BYMONTHDAY: it never occurs"
        raise _bad(text, why, "no_month_day")


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One start: the Unix time and the local wall-clock time it is in the zone."""

    at: float
    local: datetime


@dataclass(frozen=True, slots=True)
class Recurrence:
    """DTSTART (a Unix time, whole seconds) and an RRULE, expanded in ``timezone``."""

    dtstart: float
    rrule: str
    timezone: str = DEFAULT_TZ
    _tz: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)
    _rule: du.rrule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tz = zone_info(self.timezone)
        start = self.dtstart
        if (
            isinstance(start, bool)
            or not isinstance(start, int | float)
            or not math.isfinite(start)
        ):
            raise BadRequest(f"dtstart must be a Unix time, got {start!r}", field="dtstart")
        if start != int(start):
            raise BadRequest(f"dtstart must be whole seconds, got {start!r}", field="dtstart")
        text = self.rrule
        if not isinstance(text, str) or not text.strip():
            why = f"rrule must be a non-empty string, got {text!r}"
            raise BadRule(why, field="rrule", reason="empty")
        if "\n" in text or "\r" in text:
            why = "give one RRULE line; DTSTART, RDATE and EXDATE are not accepted"
            raise _bad(text, why, "lines")
        body = text.strip()
        if body.upper().startswith("RRULE:"):
            body = body[len("RRULE:") :]
        _split(body)
        local_start = datetime.fromtimestamp(start, tz)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # dateutil warns about what RFC 5545 forbids
                rule = du.rrulestr(body, dtstart=local_start, cache=True)
        except (ValueError, TypeError, UserWarning, DeprecationWarning) as exc:
            raise _bad(text, str(exc), "invalid") from None
        if not isinstance(rule, du.rrule):  # pragma: no cover - one line gives one rule
            raise _bad(text, "expected a single rule", "invalid")
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_rule", rule)
        if rule.after(local_start, inc=True) is None:
            raise _bad(text, "it has no occurrence at or after DTSTART", "never")

    @classmethod
    def from_local(cls, dtstart: str, rrule: str, timezone: str = DEFAULT_TZ) -> Recurrence:
        """DTSTART as local ISO time in the zone ("2025-03-03T05:00"), as operators write it."""
        tz = zone_info(timezone)
        try:
            naive = datetime.fromisoformat(dtstart)
        except (TypeError, ValueError):
            raise BadRequest(
                f"dtstart must be a local ISO time like '2025-03-03T05:00', got {dtstart!r}",
                field="dtstart",
            ) from None
        if naive.tzinfo is not None:
            raise BadRequest(
                f"dtstart must be local time without an offset, got {dtstart!r}", field="dtstart"
            )
        return cls(float(int(naive.replace(tzinfo=tz).timestamp())), rrule, timezone)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return self._tz

    def local(self, at: float) -> datetime:
        return datetime.fromtimestamp(at, self._tz)

    def between(self, start: float, end: float) -> list[Occurrence]:
        """Occurrences with ``start < at <= end``, in order."""
        if end <= start:
            return []
        lo = datetime.fromtimestamp(start, UTC) - _SLACK
        hi = datetime.fromtimestamp(end, UTC) + _SLACK
        times = {d.timestamp() for d in self._rule.between(lo, hi, inc=True)}
        return [Occurrence(t, self.local(t)) for t in sorted(times) if start < t <= end]

    def after(self, t: float, n: int = 1) -> list[Occurrence]:
        """The first ``n`` occurrences strictly after ``t`` (fewer if the rule ends)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise BadRequest(f"n must be a whole number >= 1, got {n!r}", field="n")
        found: list[Occurrence] = []
        cursor, span = t, _FIRST_SPAN_S
        while len(found) < n:
            found += self.between(cursor, cursor + span)
            cursor += span
            if self._rule.after(datetime.fromtimestamp(cursor, UTC) - _SLACK) is None:
                break  # the rule has ended: nothing lands after the cursor
            span *= 2
        return found[:n]

    def next_after(self, t: float) -> float | None:
        found = self.after(t, 1)
        return found[0].at if found else None
