"""RRULE expansion in a zone's time zone: exact instants, DST, errors, and properties."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loa.errors import BadRequest
from loa.schedule.rules import RULE_REASONS, BadRule, Recurrence, zone_info

WEEKDAYS_5_17 = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0"
MONDAY = "2025-01-06T00:00"  # a Monday in Hà Nội


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_mon_to_sat_at_5_and_17_land_on_22_and_10_utc() -> None:
    rule = Recurrence.from_local(MONDAY, WEEKDAYS_5_17)
    got = [o.at for o in rule.after(rule.dtstart, 14)]
    # 05:00 ICT (UTC+7) is 22:00 UTC the day before; 17:00 ICT is 10:00 UTC.
    expected = []
    for day in range(5, 11):  # Sun 5 Jan 22:00 UTC = Mon 6 Jan 05:00 local, … Fri 10 Jan
        expected += [utc(f"2025-01-{day:02d}T22:00"), utc(f"2025-01-{day + 1:02d}T10:00")]
    # Sunday 12 Jan local has nothing: after Sat 11 Jan 17:00 comes Mon 13 Jan 05:00.
    expected += [utc("2025-01-12T22:00"), utc("2025-01-13T10:00")]
    assert got == expected
    assert all(
        o.local.weekday() != 6 for o in rule.between(rule.dtstart, rule.dtstart + 28 * 86400)
    )


def test_occurrences_carry_local_time_in_the_zone() -> None:
    rule = Recurrence.from_local(MONDAY, WEEKDAYS_5_17)
    first = rule.after(rule.dtstart, 1)[0]
    assert first.local.isoformat() == "2025-01-06T05:00:00+07:00"
    assert first.local.tzinfo == zone_info("Asia/Ho_Chi_Minh")


def test_between_is_open_at_start_and_closed_at_end() -> None:
    rule = Recurrence.from_local(MONDAY, WEEKDAYS_5_17)
    five = utc("2025-01-05T22:00")
    seventeen = utc("2025-01-06T10:00")
    assert [o.at for o in rule.between(five, seventeen)] == [seventeen]
    assert [o.at for o in rule.between(five - 1, seventeen - 1)] == [five]
    assert rule.between(seventeen, five) == []
    assert rule.next_after(five) == seventeen


def test_a_counted_rule_ends() -> None:
    rule = Recurrence.from_local(MONDAY, "FREQ=DAILY;COUNT=3;BYHOUR=5")
    got = rule.after(0, 10)
    assert [o.local.day for o in got] == [6, 7, 8]
    assert rule.next_after(got[-1].at) is None


def test_until_is_utc_and_inclusive() -> None:
    # 05:00 on 8 January in Hà Nội is 22:00 UTC on the 7th.
    before = Recurrence.from_local(MONDAY, "FREQ=DAILY;BYHOUR=5;UNTIL=20250107T215959Z")
    at = Recurrence.from_local(MONDAY, "FREQ=DAILY;BYHOUR=5;UNTIL=20250107T220000Z")
    assert [o.local.day for o in before.after(0, 10)] == [6, 7]
    assert [o.local.day for o in at.after(0, 10)] == [6, 7, 8]


def test_rrule_prefix_and_lower_case_are_accepted() -> None:
    a = Recurrence.from_local(MONDAY, "RRULE:freq=daily;byhour=5")
    b = Recurrence.from_local(MONDAY, "FREQ=DAILY;BYHOUR=5")
    assert [o.at for o in a.after(0, 3)] == [o.at for o in b.after(0, 3)]


def test_dst_gap_moves_a_start_past_the_jump_and_counts_it_once() -> None:
    # Berlin skips 02:00–03:00 on 30 March 2025: 02:00 and 02:30 do not exist.
    rule = Recurrence.from_local("2025-03-29T00:00", "FREQ=HOURLY;BYMINUTE=0,30", "Europe/Berlin")
    got = rule.between(utc("2025-03-29T23:59"), utc("2025-03-30T02:00"))
    assert [o.local.strftime("%H:%M%z") for o in got] == [
        "01:00+0100",
        "01:30+0100",
        "03:00+0200",  # 02:00 read with the offset before the gap is 03:00, once
        "03:30+0200",
        "04:00+0200",
    ]


def test_dst_overlap_plays_the_first_of_a_repeated_time() -> None:
    # Berlin repeats 02:00–03:00 on 26 October 2025.
    rule = Recurrence.from_local("2025-10-25T02:30", "FREQ=DAILY", "Europe/Berlin")
    got = rule.after(rule.dtstart - 1, 2)
    assert got[1].at == utc("2025-10-26T00:30")  # 02:30 CEST, not 02:30 CET an hour later
    assert got[1].at - got[0].at == 24 * 3600


def test_dst_keeps_wall_clock_time_across_a_change() -> None:
    rule = Recurrence.from_local("2025-03-28T05:00", "FREQ=DAILY", "Europe/Berlin")
    got = rule.after(rule.dtstart - 1, 4)
    assert [o.local.strftime("%d %H:%M") for o in got] == [
        "28 05:00",
        "29 05:00",
        "30 05:00",
        "31 05:00",
    ]
    assert got[2].at - got[1].at == 23 * 3600


INVALID = [
    ("", "rrule must be a non-empty string, got ''", {"reason": "empty"}),
    ("BYHOUR=5", "invalid RRULE 'BYHOUR=5': FREQ is required", {"reason": "no_freq"}),
    ("FREQ=FORTNIGHTLY", "invalid RRULE 'FREQ=FORTNIGHTLY': FREQ must be one of "
     "YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY, got FORTNIGHTLY",
     {"reason": "freq", "value": "FORTNIGHTLY"}),
    ("FREQ=SECONDLY", "invalid RRULE 'FREQ=SECONDLY': FREQ=SECONDLY is not allowed; "
     "the finest is MINUTELY", {"reason": "secondly"}),
    ("FREQ=DAILY;INTERVAL=0", "invalid RRULE 'FREQ=DAILY;INTERVAL=0': "
     "INTERVAL must be a whole number in [1, 1000], got 0",
     {"reason": "range", "part": "INTERVAL", "value": "0", "low": 1, "high": 1000}),
    ("FREQ=DAILY;COUNT=-1", "invalid RRULE 'FREQ=DAILY;COUNT=-1': "
     "COUNT must be a whole number in [1, 100000], got -1",
     {"reason": "range", "part": "COUNT", "value": "-1", "low": 1, "high": 100000}),
    ("FREQ=DAILY;COUNT=2;UNTIL=20250110T000000Z", "invalid RRULE "
     "'FREQ=DAILY;COUNT=2;UNTIL=20250110T000000Z': COUNT and UNTIL cannot both be given "
     "(RFC 5545)", {"reason": "count_and_until"}),
    ("FREQ=DAILY;UNTIL=20250110T000000", "invalid RRULE 'FREQ=DAILY;UNTIL=20250110T000000': "
     "UNTIL must be a UTC time ending in Z, got 20250110T000000",
     {"reason": "until_utc", "value": "20250110T000000"}),
    ("FREQ=DAILY;BYHOUR=5;BYHOUR=17", "invalid RRULE 'FREQ=DAILY;BYHOUR=5;BYHOUR=17': "
     "BYHOUR is given twice", {"reason": "twice", "part": "BYHOUR"}),
    ("FREQ=DAILY;;BYHOUR=5", "invalid RRULE 'FREQ=DAILY;;BYHOUR=5': '' is not NAME=VALUE",
     {"reason": "not_name_value", "part": ""}),
    ("FREQ=DAILY;BYHOUR=25", "invalid RRULE 'FREQ=DAILY;BYHOUR=25': BYHOUR values must be in "
     "0..23, got 25", {"reason": "range", "part": "BYHOUR", "value": 25, "low": 0, "high": 23}),
    ("FREQ=DAILY;BYHOUR=5,x", "invalid RRULE 'FREQ=DAILY;BYHOUR=5,x': BYHOUR must be a "
     "comma-separated list of integers, got '5,x'",
     {"reason": "numbers", "part": "BYHOUR", "value": "5,x"}),
    ("FREQ=DAILY;BYDAY=XX", "invalid RRULE 'FREQ=DAILY;BYDAY=XX': BYDAY must list days MO, TU, "
     "WE, TH, FR, SA, SU, got XX", {"reason": "days", "value": "XX"}),
    ("FREQ=DAILY;COLOR=RED", "invalid RRULE 'FREQ=DAILY;COLOR=RED': unknown part COLOR; expected "
     "BYDAY, BYHOUR, BYMINUTE, BYMONTH, BYMONTHDAY, BYSECOND, BYSETPOS, BYWEEKNO, BYYEARDAY, "
     "COUNT, FREQ, INTERVAL, UNTIL, WKST", {"reason": "unknown_part", "part": "COLOR"}),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "invalid RRULE 'FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30': "
     "no month in BYMONTH has a day in BYMONTHDAY: it never occurs", {"reason": "no_month_day"}),
    ("FREQ=MONTHLY;BYMONTHDAY=32", "invalid RRULE 'FREQ=MONTHLY;BYMONTHDAY=32': "
     "BYMONTHDAY values must be in 1..31 or -31..-1, got 32",
     {"reason": "range", "part": "BYMONTHDAY", "value": 32, "low": 1, "high": 31}),
    ("FREQ=HOURLY;INTERVAL=2;BYHOUR=3", "invalid RRULE 'FREQ=HOURLY;INTERVAL=2;BYHOUR=3': "
     "Invalid rrule byxxx generates an empty set.", {"reason": "invalid"}),
    ("FREQ=DAILY\nRRULE:FREQ=WEEKLY", "invalid RRULE 'FREQ=DAILY\\nRRULE:FREQ=WEEKLY': give one "
     "RRULE line; DTSTART, RDATE and EXDATE are not accepted", {"reason": "lines"}),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message", "fields"), INVALID)
def test_invalid_rrules_say_exactly_what_is_wrong(
    text: str, message: str, fields: dict[str, object]
) -> None:
    """The English words for logs and API clients; the reason and its parameters for the
    pages, which word them in the reader's language."""
    with pytest.raises(BadRule) as info:
        Recurrence.from_local(MONDAY, text)
    assert str(info.value) == message
    assert info.value.code == "bad_rrule"
    assert info.value.fields == {"field": "rrule", **fields}


def test_every_rule_reason_is_reached() -> None:
    reasons = {fields["reason"] for _, _, fields in INVALID} | {"never"}
    assert reasons == RULE_REASONS


def test_a_rule_that_ended_before_dtstart_is_refused() -> None:
    with pytest.raises(BadRule) as info:
        Recurrence.from_local(MONDAY, "FREQ=DAILY;BYHOUR=5;UNTIL=20250101T000000Z")
    assert str(info.value) == (
        "invalid RRULE 'FREQ=DAILY;BYHOUR=5;UNTIL=20250101T000000Z': "
        "it has no occurrence at or after DTSTART"
    )
    assert info.value.fields["reason"] == "never"


@pytest.mark.parametrize(
    ("tz", "message"),
    [
        ("Asia/Hanoi_Typo", "unknown timezone 'Asia/Hanoi_Typo'; use an IANA name like "
         "'Asia/Ho_Chi_Minh'"),
        ("../etc/passwd", "unknown timezone '../etc/passwd'; use an IANA name like "
         "'Asia/Ho_Chi_Minh'"),
        ("", "timezone must be an IANA name like 'Asia/Ho_Chi_Minh', got ''"),
        (7, "timezone must be an IANA name like 'Asia/Ho_Chi_Minh', got 7"),
    ],
)  # fmt: skip
def test_unknown_time_zones_are_refused(tz: object, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        Recurrence(1736096400, "FREQ=DAILY", tz)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert info.value.fields == {"field": "timezone"}


@pytest.mark.parametrize(
    ("dtstart", "message"),
    [
        (1736096400.5, "dtstart must be whole seconds, got 1736096400.5"),
        (float("nan"), "dtstart must be a Unix time, got nan"),
        (True, "dtstart must be a Unix time, got True"),
        ("2025-01-06", "dtstart must be a Unix time, got '2025-01-06'"),
    ],
)
def test_bad_dtstart_is_refused(dtstart: object, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        Recurrence(dtstart, "FREQ=DAILY")  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("06/01/2025 05:00", "dtstart must be a local ISO time like '2025-03-03T05:00', "
         "got '06/01/2025 05:00'"),
        ("2025-01-06T05:00+07:00", "dtstart must be local time without an offset, "
         "got '2025-01-06T05:00+07:00'"),
    ],
)  # fmt: skip
def test_bad_local_dtstart_is_refused(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        Recurrence.from_local(text, "FREQ=DAILY")
    assert str(info.value) == message


def test_after_needs_a_positive_count() -> None:
    rule = Recurrence.from_local(MONDAY, "FREQ=DAILY")
    with pytest.raises(BadRequest, match=r"^n must be a whole number >= 1, got 0$"):
        rule.after(0, 0)


DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
ZONES = ["Asia/Ho_Chi_Minh", "Asia/Bangkok", "UTC", "Europe/Berlin", "America/New_York"]


@settings(max_examples=60, deadline=None)
@given(
    days=st.sets(st.integers(0, 6), min_size=1),
    hours=st.sets(st.integers(4, 23), min_size=1, max_size=4),  # clear of DST jump hours
    minute=st.integers(0, 59),
    tz=st.sampled_from(ZONES),
    start=st.integers(1_500_000_000, 2_000_000_000),
    probe=st.integers(0, 400 * 86400),
    n=st.integers(1, 40),
)
def test_occurrences_increase_and_match_the_rule_in_local_time(
    days: set[int], hours: set[int], minute: int, tz: str, start: int, probe: int, n: int
) -> None:
    text = (
        f"FREQ=WEEKLY;BYDAY={','.join(DAYS[d] for d in sorted(days))};"
        f"BYHOUR={','.join(map(str, sorted(hours)))};BYMINUTE={minute};BYSECOND=0"
    )
    rule = Recurrence(start, text, tz)
    after = start + probe
    got = rule.after(after, n)
    assert len(got) == n  # an endless weekly rule always has n more
    times = [o.at for o in got]
    assert times[0] > after
    assert all(a < b for a, b in itertools.pairwise(times))
    for o in got:
        assert o.local.weekday() in days
        assert o.local.hour in hours
        assert (o.local.minute, o.local.second) == (minute, 0)
        assert o.local == datetime.fromtimestamp(o.at, zone_info(tz))
    # nothing the rule allows was skipped between them
    assert [o.at for o in rule.between(after, times[-1])] == times
