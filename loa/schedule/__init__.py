"""Schedules ("lịch phát"): programmes, their RRULEs, the sans-IO scheduler and the
conflicts report. The adapter (store rows in, broadcasts out) lives with the node."""

from loa.schedule.conflicts import ConflictReport, EndpointOutcome, Run, RunReport, conflicts
from loa.schedule.programme import (
    Item,
    MediaItem,
    Programme,
    RelayItem,
    SilenceItem,
    SpeechItem,
)
from loa.schedule.rules import DEFAULT_TZ, Occurrence, Recurrence, zone_info
from loa.schedule.scheduler import CatchUp, Event, Fire, Schedule, Scheduler, Skipped

__all__ = [
    "DEFAULT_TZ",
    "CatchUp",
    "ConflictReport",
    "EndpointOutcome",
    "Event",
    "Fire",
    "Item",
    "MediaItem",
    "Occurrence",
    "Programme",
    "Recurrence",
    "RelayItem",
    "Run",
    "RunReport",
    "Schedule",
    "Scheduler",
    "SilenceItem",
    "Skipped",
    "SpeechItem",
    "conflicts",
    "zone_info",
]
