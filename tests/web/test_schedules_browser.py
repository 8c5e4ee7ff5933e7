"""The schedules page in headless Chromium, the browser's clock in New York: rules read in
plain Vietnamese at the zone's wall-clock times (Hà Nội), the next runs likewise, conflicts
named by programme (never a broadcast id), and a bad rule typed in the form refused in
Vietnamese words that say what is wrong."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.web.app import create_app
from tests.conftest import AUTH, tree_config
from tests.web.test_browser import SHOTS, browser, in_thread, sign_in, until
from tests.web.test_pages import add_user

__all__ = ["browser"]  # the Chromium fixture
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TWICE_MON_SAT = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0"


def schedule(schedule_id: str, name: str, zone: str, rrule: str) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "name": name,
        "zone": zone,
        "dtstart": "2025-03-03T05:00",  # a Monday, Hà Nội time (the zones' time zone)
        "rrule": rrule,
        "items": [{"type": "silence", "duration_s": 600}],
        "targets": {"zones": ["c0"]},
    }


def rows(driver: Any) -> dict[str, str]:
    """Schedule name → the rule as the list says it (read in one script: the list is redrawn
    after every save)."""
    found: dict[str, str] = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#sch-rows tr')]"
        ".map((tr) => [tr.cells[0].innerText, tr.cells[1].innerText]))"
    )
    return found


def tap(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.CSS_SELECTOR, css)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def check_page(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # The browser lives in New York: 05:00 in Hà Nội is 17:00 or 18:00 there.
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
    driver.get(base + "/schedules")
    until(driver, "the schedules", lambda d: len(rows(d)) == 2)
    assert driver.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone") == (
        "America/New_York"
    )
    got = rows(driver)
    assert got["Thời sự tỉnh"] == "Thứ 2–Thứ 7, 05:00 và 17:00 · từ 03/03/2025", got
    assert got["Tin xã"] == "Hằng ngày, 05:00 · từ 03/03/2025", got

    # The next runs, at Hà Nội's wall clock with the day of the week.
    tr = driver.find_element(By.CSS_SELECTOR, '#sch-rows tr[data-id="xa"]')
    tr.find_element(By.TAG_NAME, "button").click()
    items = until(
        driver,
        "the next runs",
        lambda d: [li.text for li in d.find_elements(By.CSS_SELECTOR, "#preview-list li")],
    )
    assert len(items) == 10 and all(i.endswith(" 05:00") for i in items), items
    assert items[0].startswith("Thứ ") or items[0].startswith("Chủ nhật"), items

    # Conflicts: both play in c0 at 05:00 each day; named by programme, never by id.
    conflicts = until(
        driver,
        "the conflicts",
        lambda d: [li.text for li in d.find_elements(By.CSS_SELECTOR, "#c-list li")],
    )
    assert conflicts, "two programmes at the same time in the same commune"
    for line in conflicts:
        assert "sch-" not in line and " 05:00 · " in line, line
        assert "Thời sự tỉnh" in line and "Tin xã" in line, line

    driver.save_screenshot(str(SHOTS / "loa-schedules.png"))

    # The editor says a rule in words as it is typed, and a bad rule is refused in Vietnamese.
    driver.find_element(By.ID, "s-name").send_keys("Thử")
    Select(driver.find_element(By.ID, "s-zone")).select_by_value("c0")
    driver.execute_script(
        "const d = document.getElementById('s-dtstart'); d.value = '2025-03-08T06:30';"
        "d.dispatchEvent(new Event('input'));"
    )
    box = driver.find_element(By.ID, "s-rrule")
    box.clear()
    box.send_keys("FREQ=WEEKLY;BYDAY=MO,WE,FR")
    assert driver.find_element(By.ID, "s-rule-words").text == "Thứ 2, Thứ 4 và Thứ 6, 06:30"
    tap(driver, '#s-targets input[value="c0"]')
    tap(driver, '[data-add="silence"]')
    box.clear()
    box.send_keys("FREQ=DAILY;BYHOUR=25")
    tap(driver, "#sch-form button[type=submit]")
    notice = until(
        driver,
        "the refusal",
        lambda d: (
            d.find_element(By.ID, "notice").is_displayed() and d.find_element(By.ID, "notice").text
        ),
    )
    assert notice == "Giá trị 25 của BYHOUR phải nằm trong khoảng 0–23.", notice
    box.clear()
    box.send_keys("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30")
    tap(driver, "#sch-form button[type=submit]")
    until(
        driver,
        "the second refusal",
        lambda d: "Không tháng nào trong BYMONTH" in d.find_element(By.ID, "notice").text,
    )
    # Typed in lower case, as RFC 5545 allows: read, saved and listed in words (the minute is
    # DTSTART's, 06:30, as BYMINUTE is not given).
    box.clear()
    box.send_keys("freq=weekly;byday=sa,su;byhour=7")
    assert driver.find_element(By.ID, "s-rule-words").text == "Thứ 7 và Chủ nhật, 07:30"
    tap(driver, "#sch-form button[type=submit]")
    until(driver, "the new schedule", lambda d: rows(d).get("Thử"))
    assert rows(driver)["Thử"] == "Thứ 7 và Chủ nhật, 07:30 · từ 08/03/2025"  # DTSTART minute


async def test_schedules_read_in_plain_vietnamese_in_the_zones_time_zone(
    tmp_path: Path, browser: Any
) -> None:
    server = TestServer(create_app(tree_config(tmp_path)), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        await add_user(server.app, "tinh", "operator", zone="p")
        async with ClientSession(headers=AUTH) as http:
            for body in (
                schedule("tinh", "Thời sự tỉnh", "p", TWICE_MON_SAT),
                schedule("xa", "Tin xã", "c0", "FREQ=DAILY;BYHOUR=5;BYMINUTE=0;BYSECOND=0"),
            ):
                async with http.post(base + "/api/v1/schedules", json=body) as resp:
                    assert resp.status == 201, await resp.text()
        await in_thread(sign_in, browser, base, "tinh")
        t0 = time.monotonic()
        await in_thread(check_page, browser, base)
        assert time.monotonic() - t0 < 60
    finally:
        await server.close()
