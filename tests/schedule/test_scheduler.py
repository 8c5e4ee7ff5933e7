"""The sans-IO scheduler on a fake clock: firing, catching up, skipping, wake-ups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.schedule.programme import Programme, SilenceItem
from loa.schedule.rules import Recurrence
from loa.schedule.scheduler import CatchUp, Event, Fire, Schedule, Scheduler, Skipped

WEEKDAYS_5_17 = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0"
PROGRAMME = Programme((SilenceItem(60.0),), frozenset({"c0"}))


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


FIVE_MON = utc("2025-01-05T22:00")  # Monday 6 January 05:00 in Hà Nội


def schedule(sid: str = "news", rule: str = WEEKDAYS_5_17, **kw: Any) -> Schedule:
    return Schedule(
        sid, "Bản tin sáng", PROGRAMME, Recurrence.from_local("2025-01-06T00:00", rule), **kw
    )


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def advance_to(self, t: float) -> None:
        assert t >= self.now
        self.now = t


def test_fake_clock_fires_at_the_right_utc_instants_and_never_on_sunday() -> None:
    clock = FakeClock(utc("2025-01-05T12:00"))  # Sunday 19:00 local
    scheduler = Scheduler(last_run=clock.now)
    scheduler.add(schedule())
    fired: list[Event] = []
    while clock.now < utc("2025-01-19T12:00"):  # two weeks
        wake = scheduler.next_wakeup(clock.now)
        assert wake is not None and wake > clock.now
        clock.advance_to(wake + 0.2)  # an adapter wakes a little late
        fired += scheduler.due(clock.now)
        assert scheduler.last_run == clock.now
    assert all(isinstance(e, Fire) for e in fired)
    assert {datetime.fromtimestamp(e.at, UTC).strftime("%H:%M") for e in fired} == {
        "22:00",
        "10:00",
    }
    local_days = [e.schedule.recurrence.local(e.at) for e in fired]
    assert all(d.weekday() != 6 for d in local_days)
    assert len(fired) == 2 * 2 * 6 + 1  # two weeks of Mon–Sat twice a day, + Mon 20 at 05:00
    assert isinstance(fired[0], Fire) and fired[0].at == FIVE_MON
    assert fired[0].broadcast_id == f"sch-news-{int(FIVE_MON)}"
    assert fired[0].message == "[sch=news] starts 2025-01-06T05:00:00+07:00"


def test_nothing_fires_between_occurrences() -> None:
    scheduler = Scheduler(last_run=FIVE_MON + 1)
    scheduler.add(schedule())
    assert scheduler.due(FIVE_MON + 3600) == []
    assert scheduler.due(FIVE_MON + 11 * 3600) == []
    assert [e.at for e in scheduler.due(FIVE_MON + 12 * 3600)] == [FIVE_MON + 12 * 3600]


def test_down_over_five_and_up_at_five_oh_four_catches_up() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 30)  # persisted at 04:59:30, then the crash
    s = schedule()
    scheduler.add(s)
    events = scheduler.due(FIVE_MON + 240)
    assert events == [CatchUp(s, FIVE_MON, FIVE_MON + 240)]
    assert isinstance(events[0], CatchUp) and events[0].late_s == 240
    assert events[0].message == (
        "[sch=news] catching up 2025-01-06T05:00:00+07:00, 240 s late (grace 600 s)"
    )
    assert scheduler.due(FIVE_MON + 241) == []  # caught up once


def test_down_over_five_and_up_at_five_thirty_skips_and_says_so() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 30)
    s = schedule()
    scheduler.add(s)
    events = scheduler.due(FIVE_MON + 1800)
    assert events == [
        Skipped(s, FIVE_MON, FIVE_MON + 1800, "missed by 1800 s, past the 600 s grace window")
    ]
    assert events[0].message == (
        "[sch=news] skipped 2025-01-06T05:00:00+07:00: "
        "missed by 1800 s, past the 600 s grace window"
    )


def test_grace_window_is_per_schedule() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 30)
    strict = schedule("strict", grace_s=60)
    lenient = schedule("lenient", grace_s=3600)
    scheduler.add(strict)
    scheduler.add(lenient)
    events = scheduler.due(FIVE_MON + 240)
    assert [type(e) for e in events] == [CatchUp, Skipped]  # same start: by schedule id
    assert [e.schedule.id for e in events] == ["lenient", "strict"]


def test_a_long_outage_catches_up_only_the_latest_start() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 30)
    s = schedule(rule="FREQ=MINUTELY;INTERVAL=5")
    scheduler.add(s)
    events = scheduler.due(FIVE_MON + 12 * 60)  # down 05:00 → 05:12; starts every 5 min
    assert [(type(e), e.at - FIVE_MON) for e in events] == [
        (Skipped, 0),
        (Skipped, 300),
        (CatchUp, 600),
    ]
    first, second = events[0], events[1]
    assert isinstance(first, Skipped) and isinstance(second, Skipped)
    assert first.reason == "missed by 720 s, past the 600 s grace window"
    assert second.reason == "superseded by the start at 2025-01-06T05:10:00+07:00"


def test_a_start_on_time_fires_even_after_an_outage() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 6 * 3600)
    s = schedule()
    scheduler.add(s)
    assert scheduler.due(FIVE_MON + 3) == [Fire(s, FIVE_MON, FIVE_MON + 3)]


def test_a_new_installation_has_nothing_to_catch_up() -> None:
    scheduler = Scheduler()
    scheduler.add(schedule())
    assert scheduler.last_run is None
    assert scheduler.due(FIVE_MON + 60) == []
    assert scheduler.last_run == FIVE_MON + 60


def test_a_clock_that_goes_back_fires_nothing_twice() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 1)
    scheduler.add(schedule())
    assert len(scheduler.due(FIVE_MON + 1)) == 1
    assert scheduler.due(FIVE_MON - 100) == []
    assert scheduler.last_run == FIVE_MON + 1
    assert scheduler.due(FIVE_MON + 2) == []


def test_next_wakeup_is_due_at_once_when_a_start_was_missed() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 30)
    scheduler.add(schedule())
    assert scheduler.next_wakeup(FIVE_MON + 240) == FIVE_MON  # in the past: call due now


def test_next_wakeup_is_none_when_nothing_will_start_again() -> None:
    scheduler = Scheduler(last_run=FIVE_MON - 30)
    assert scheduler.next_wakeup(FIVE_MON) is None
    scheduler.add(schedule(rule="FREQ=DAILY;COUNT=1;BYHOUR=5"))
    assert scheduler.next_wakeup(FIVE_MON - 30) == FIVE_MON
    scheduler.due(FIVE_MON)
    assert scheduler.next_wakeup(FIVE_MON) is None


def test_add_remove_and_preview() -> None:
    scheduler = Scheduler(last_run=0)
    s = schedule()
    scheduler.add(s)
    with pytest.raises(Conflict, match=r"^schedule 'news' already exists$"):
        scheduler.add(s)
    assert scheduler.schedules() == (s,)
    assert [o.at for o in scheduler.preview(s, 3, after=FIVE_MON)] == [
        FIVE_MON + 12 * 3600,
        FIVE_MON + 24 * 3600,
        FIVE_MON + 36 * 3600,
    ]
    assert scheduler.remove("news") is s
    with pytest.raises(NotFound, match=r"^no schedule 'news'$"):
        scheduler.remove("news")
    assert scheduler.due(FIVE_MON + 1) == []


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"last_run": float("inf")}, "last_run must be a finite Unix time, got inf"),
        ({"on_time_s": -1}, "on_time_s must be in [0, 60], got -1"),
    ],
)
def test_scheduler_settings_are_checked(kw: dict[str, float], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        Scheduler(**kw)
    assert str(info.value) == message


def test_schedule_becomes_a_broadcast_spec() -> None:
    s = schedule(origin_zone="p")
    assert s.broadcast_spec(FIVE_MON) == BroadcastSpec(
        id=f"sch-news-{int(FIVE_MON)}",
        priority=Priority.SCHEDULED,
        target_zones=frozenset({"c0"}),
        origin_zone="p",
        resumable=True,
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"id": "no spaces"}, "schedule id must be 1-40 letters, digits, '.', '_' or '-' "
         "(starting with a letter or digit), got 'no spaces'"),
        ({"id": "x" * 41}, "schedule id must be 1-40 letters, digits, '.', '_' or '-' "
         f"(starting with a letter or digit), got '{'x' * 41}'"),
        ({"name": "  "}, "schedule name must be 1-200 characters, got '  '"),
        ({"grace_s": -1}, "grace_s must be a number of seconds in [0, 86400], got -1"),
        ({"grace_s": float("nan")}, "grace_s must be a number of seconds in [0, 86400], got nan"),
        ({"origin_zone": ""}, "zone must be a zone id or null, got ''"),
    ],
)  # fmt: skip
def test_bad_schedules_are_refused(kw: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "id": "news",
        "name": "Bản tin",
        "programme": PROGRAMME,
        "recurrence": Recurrence.from_local("2025-01-06T00:00", "FREQ=DAILY"),
    }
    fields.update(kw)
    with pytest.raises(BadRequest) as info:
        Schedule(**fields)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_schedule_json_round_trips_in_the_table_shape() -> None:
    data = {
        "id": "news",
        "name": "Bản tin sáng",
        "zone": "p",
        "dtstart": 1736096400.0,
        "rrule": WEEKDAYS_5_17,
        "timezone": "Asia/Ho_Chi_Minh",
        "grace_s": 300.0,
        "items": [
            {"type": "tts", "text": "Xin chào bà con", "voice": "vi", "rate_wpm": 150},
            {"type": "silence", "duration_s": 2.0},
        ],
        "targets": {"zones": ["c0", "c1"], "endpoints": []},
        "class": "scheduled",
    }
    s = Schedule.from_json(data)
    assert s.to_json() == data
    assert Schedule.from_json(s.to_json()) == s


def test_schedule_json_names_what_is_missing() -> None:
    with pytest.raises(BadRequest, match=r"^schedule is missing 'rrule'$"):
        Schedule.from_json({"id": "x", "name": "x", "dtstart": 0})
