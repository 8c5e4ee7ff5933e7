"""The core's reasons (``relay.core.priority.Reason``) in English words, for the API's
``why``; beside it go the code and parameters (``why_code``, ``why_params``), for a client
that words them in its own language."""

from __future__ import annotations

from typing import Any

from loa.relay.core.priority import NATIONAL_LEVEL, REASONS, Reason

ENGLISH = {
    "holds": "holds the floor",
    "holds_past_expiry": "holds the floor (past its expires_at: it gains no more endpoints)",
    "past_expiry": "past its expires_at: keeps what it holds but gains no endpoint",
    "equal_rank": "equal rank with {holder}, which holds the floor (equal rank never preempts)",
    "lower_class": "class {class} ranks below {holder}'s {holder_class}",
    "lower_origin": "same class as {holder} but from a lower origin ({level} vs {holder_level})",
    "at_boundary": (
        "outranks {holder} but does not interrupt: takes the floor at {holder}'s next item boundary"
    ),
    "interrupts": "outranks {holder} and interrupts: takes the floor at once",
    "waiting": "waiting",
}
assert set(ENGLISH) == REASONS, "every reason code has its English words"


def _level(level: Any) -> str:
    return "national" if level == NATIONAL_LEVEL else f"zone level {level}"


def english(reason: Reason) -> str:
    fields = reason.fields
    for key in ("level", "holder_level"):
        if key in fields:
            fields[key] = _level(fields[key])
    return ENGLISH[reason.code].format_map(fields)


def why_json(reason: Reason) -> dict[str, Any]:
    """The API's fields for a reason: the words, the code and its parameters."""
    return {"why": english(reason), "why_code": reason.code, "why_params": reason.fields}
