"""The schedules page's RRULE → plain words (``static/js/rrule.js``), run by node on the
page's own module and dictionaries: Vietnamese and English, wall-clock times in the
schedule's time zone whatever the machine's, and a rule the words cannot say left as written."""

from __future__ import annotations

import pytest

from tests.support.node import run_script

# scripts/test installs Debian's nodejs: a missing node is a set-up error, not a skip.

MONDAY_5AM = 1_740_952_800  # 2025-03-03 05:00 in Hà Nội (UTC+7), a Monday
HCM = "Asia/Ho_Chi_Minh"
TWICE_MON_SAT = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0"

CASES = [
    # rrule, dtstart, time zone, language, words
    (TWICE_MON_SAT, MONDAY_5AM, HCM, "vi", "Thứ 2–Thứ 7, 05:00 và 17:00"),
    (TWICE_MON_SAT, MONDAY_5AM, HCM, "en", "Mon–Sat, 05:00 and 17:00"),
    ("FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0", MONDAY_5AM, HCM, "vi", "Hằng ngày, 05:00"),
    ("FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=6;BYMINUTE=30", MONDAY_5AM, HCM, "vi",
     "Thứ 2, Thứ 4 và Thứ 6, 06:30"),
    ("FREQ=WEEKLY;BYDAY=SA,SU,MO;BYHOUR=7", MONDAY_5AM, HCM, "vi",
     "Thứ 2, Thứ 7 và Chủ nhật, 07:00"),
    ("FREQ=WEEKLY", MONDAY_5AM, HCM, "vi", "Thứ 2, 05:00"),  # DTSTART's day and time
    ("FREQ=DAILY;COUNT=1", MONDAY_5AM, HCM, "vi", "Một lần, 03/03/2025 05:00"),
    ("FREQ=MONTHLY;BYDAY=1MO;BYHOUR=7;BYMINUTE=0", MONDAY_5AM, HCM, "vi",
     "Thứ 2 đầu tiên hằng tháng, 07:00"),
    ("FREQ=MONTHLY;BYMONTHDAY=1,15,-1", MONDAY_5AM, HCM, "vi",
     "Ngày 1, 15 và cuối tháng hằng tháng, 05:00"),
    ("FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=2", MONDAY_5AM, HCM, "vi", "Ngày 02/09 hằng năm, 05:00"),
    ("FREQ=DAILY;INTERVAL=2;UNTIL=20251231T165959Z", MONDAY_5AM, HCM, "vi",
     "2 ngày một lần, 05:00 (đến hết 31/12/2025)"),
    ("FREQ=DAILY;INTERVAL=2;UNTIL=20251231T165959Z", MONDAY_5AM, HCM, "en",
     "Every 2 days, 05:00 (until 31/12/2025)"),
    ("FREQ=HOURLY;INTERVAL=2;BYMINUTE=30", MONDAY_5AM, HCM, "vi", "2 giờ một lần, vào phút 30"),
    ("FREQ=MINUTELY;INTERVAL=15;COUNT=4", MONDAY_5AM, HCM, "vi", "15 phút một lần (4 lần)"),
    # The same instant read in another zone: its wall clock there, not Hà Nội's or the host's.
    ("FREQ=DAILY", MONDAY_5AM, "America/New_York", "vi", "Hằng ngày, 17:00"),
    ("FREQ=WEEKLY", MONDAY_5AM, "America/New_York", "vi", "Chủ nhật, 17:00"),
    # What the words cannot say is left to the caller (it shows the RRULE as written).
    ("FREQ=MONTHLY;BYSETPOS=1;BYDAY=MO", MONDAY_5AM, HCM, "vi", None),
    ("FREQ=MONTHLY;BYDAY=-2MO", MONDAY_5AM, HCM, "vi", None),
    ("not a rule", MONDAY_5AM, HCM, "vi", None),
]  # fmt: skip

SCRIPT = """
import { readFileSync } from "node:fs";
const [root, cases] = [process.argv[1], JSON.parse(readFileSync(0, "utf8"))];
const { describeRule, unixOfLocal, wallFromLocal } = await import(`${root}/js/rrule.js`);
const dicts = {};
const tr = (lang) => {
  dicts[lang] ??= JSON.parse(readFileSync(`${root}/i18n/${lang}.json`, "utf8"));
  return (key, p = {}) => {
    if (!(key in dicts[lang])) throw new Error(`no text for ${key}`);
    return dicts[lang][key].replace(/\\{(\\w+)\\}/g, (m, n) => (n in p ? String(p[n]) : m));
  };
};
const out = cases.map(([rule, start, tz, lang]) => describeRule(rule, start, tz, tr(lang)));
out.push(describeRule("FREQ=WEEKLY;BYHOUR=5", wallFromLocal("2025-03-08T05:00"), "UTC", tr("vi")));
out.push(unixOfLocal("2025-03-03T05:00", "Asia/Ho_Chi_Minh"));
out.push(unixOfLocal("2025-03-30T02:30", "Europe/Berlin"));  // skipped by DST: after the jump
out.push(unixOfLocal("2025-10-26T02:30", "Europe/Berlin"));  // repeated: the first one
process.stdout.write(JSON.stringify(out));
"""


def run_node(cases: list[tuple[object, ...]], tz: str) -> list[object]:
    result: list[object] = run_script(SCRIPT, [c[:4] for c in cases], tz=tz)
    return result


@pytest.mark.parametrize("host_tz", ["UTC", "America/Los_Angeles"])
def test_rules_read_in_plain_words_in_the_schedules_time_zone(host_tz: str) -> None:
    got = run_node(CASES, host_tz)
    assert got[: len(CASES)] == [c[4] for c in CASES]
    from_form, local_5am, berlin, berlin_fold = got[len(CASES) :]
    assert from_form == "Thứ 7, 05:00"  # the editor's datetime-local value, as typed
    assert local_5am == MONDAY_5AM
    assert berlin == 1_743_298_200  # 02:30 does not exist that night: read as 03:30 CEST
    assert berlin_fold == 1_761_438_600  # 02:30 comes twice that night: the first, CEST
