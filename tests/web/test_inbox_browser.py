"""The bulletin inbox in headless Chromium, as a province operator: each bulletin shows its
texts, its languages by name and its zones by name; a bulletin written in the page's form
lands in the inbox; "Phát ngay" over a commune's programme says it plays after the current
item, about when (Hà Nội time); the preview plays the bulletin as audio; a refused bulletin
is worded in Vietnamese."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.web.app import NODE, create_app
from loa.web.keys import BULLETINS
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import wait_for
from tests.web.test_api_admin import account
from tests.web.test_browser import SHOTS, browser, in_thread, sign_in, until
from tests.web.test_pages import add_user
from tests.web.test_schedules_browser import tap

__all__ = ["browser"]  # the Chromium fixture
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")
TWO_LANGUAGES = {
    "level": "normal",
    "zones": ["c0"],
    "title": "Lịch tiêm chủng",
    "variants": [
        {"language": "vi", "text": "Tiêm chủng cho trẻ tại trạm y tế xã vào sáng thứ bảy."},
        {"language": "en", "text": "Vaccination at the commune clinic on Saturday morning."},
    ],
}


def row_of(driver: Any, title: str) -> Any:
    """The row of the bulletin titled so, or None (also while the rows are being redrawn)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        for tr in driver.find_elements(By.CSS_SELECTOR, "#bulletin-rows tr"):
            titles = tr.find_elements(By.CSS_SELECTOR, ".bulletin-title")
            if titles and titles[0].text == title:
                return tr
    except StaleElementReferenceException:
        pass
    return None


def row_text(driver: Any, title: str) -> str:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        tr = row_of(driver, title)
        return "" if tr is None else str(tr.text)
    except StaleElementReferenceException:
        return ""


def notice_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "notice")
    return str(box.text) if box.is_displayed() else ""


def read_inbox(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/bulletins")
    tr = until(driver, "the bulletin", lambda d: row_of(d, "Lịch tiêm chủng"))
    body = tr.find_element(By.CSS_SELECTOR, ".bulletin-body").text
    assert "Tiếng Việt: Tiêm chủng cho trẻ tại trạm y tế xã vào sáng thứ bảy." in body, body
    assert "Tiếng Anh: Vaccination at the commune clinic" in body, body
    assert tr.find_element(By.CSS_SELECTOR, ".bulletin-languages").text == "Tiếng Việt, Tiếng Anh"
    assert tr.find_element(By.CSS_SELECTOR, ".bulletin-zones").text == "Xã 0"

    # The preview: an audio player that loads the bulletin spoken.
    tr.find_element(By.CSS_SELECTOR, '[data-act="preview"]').click()
    ready = """
    const a = document.querySelector('#bulletin-rows audio');
    if (a && a.error) return 'error ' + a.error.code;
    return a && a.readyState >= 2 ? a.src : null;
    """
    src = until(driver, "the preview to load", lambda d: d.execute_script(ready))
    assert src.endswith("/audio") and not src.startswith("error"), src


def compose(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    tap(driver, "#compose summary")  # folded under the inbox's title until asked for
    driver.find_element(By.ID, "b-title").send_keys("Thông báo cắt điện")
    tap(driver, '#b-zones input[value="p"]')  # the operator's own zone is ticked: untick it
    tap(driver, '#b-zones input[value="c1"]')
    driver.find_element(By.CSS_SELECTOR, '#b-variants [name="text"]').send_keys(
        "Thôn một mất điện từ tám giờ đến mười một giờ sáng mai."
    )
    # An expiry in the past is refused, in Vietnamese.
    driver.execute_script("document.getElementById('b-expires').value = '2020-01-01T00:00'")
    tap(driver, "#b-send")
    refused = until(driver, "the refusal", notice_text)
    assert refused == (
        "“thời điểm hết hiệu lực” đã qua; hãy chọn một thời điểm trong tương lai."
    ), refused
    driver.execute_script("document.getElementById('b-expires').value = ''")
    tap(driver, "#b-send")
    until(driver, "the new bulletin", lambda d: row_of(d, "Thông báo cắt điện"))
    assert notice_text(driver).startswith("Đã đưa bản tin “Thông báo cắt điện” vào hộp thư")
    tr = row_of(driver, "Thông báo cắt điện")
    assert tr.find_element(By.CSS_SELECTOR, ".bulletin-zones").text == "Xã 1"
    assert tr.find_element(By.CSS_SELECTOR, ".bulletin-languages").text == "Tiếng Việt"


def play_now(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    tr = row_of(driver, "Thông báo cắt điện")
    tr.find_element(By.CSS_SELECTOR, '[data-act="now"]').click()
    said = until(
        driver, "when it plays", lambda d: "bản tin phát" in notice_text(d) and notice_text(d)
    )
    in_row = "return document.querySelector('#bulletin-rows .bulletin-when')?.textContent"
    assert until(driver, "the row saying when", lambda d: d.execute_script(in_row)) == said
    driver.save_screenshot(str(SHOTS / "loa-inbox.png"))
    return str(said)


def send_priority(driver: Any) -> str:
    """A priority bulletin written in the form goes on air; the notice says when it is heard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    tap(driver, "#compose summary")
    driver.find_element(By.ID, "b-title").send_keys("Cảnh báo nước sông dâng")
    Select(driver.find_element(By.ID, "b-level")).select_by_value("priority")
    assert "ngay sau mục đang phát" in driver.find_element(By.ID, "b-level-hint").text
    tap(driver, '#b-zones input[value="c1"]')
    driver.find_element(By.CSS_SELECTOR, '#b-variants [name="text"]').send_keys(
        "Nước sông đang lên, bà con không ra bãi giữa."
    )
    tap(driver, "#b-send")
    return str(
        until(driver, "the notice", lambda d: "bản tin phát" in notice_text(d) and notice_text(d))
    )


def play_later(driver: Any) -> None:
    """ "Hẹn giờ phát" at 07:00 tomorrow, Hà Nội time (the zone's), whatever the browser's."""
    from selenium.webdriver.common.by import By

    tomorrow = datetime.fromtimestamp(time.time() + 86400, HANOI).strftime("%Y-%m-%d")
    tr = until(driver, "the first bulletin", lambda d: row_of(d, "Lịch tiêm chủng"))
    when = tr.find_element(By.CSS_SELECTOR, 'input[type="datetime-local"]')
    driver.execute_script("arguments[0].value = arguments[1]", when, f"{tomorrow}T07:00")
    driver.execute_script("arguments[0].nextElementSibling.click()", when)
    day = datetime.fromtimestamp(time.time() + 86400, HANOI).strftime("%d/%m/%Y")
    until(driver, "its time", lambda d: f"phát lúc {day} 07:00" in row_text(d, "Lịch tiêm chủng"))


async def test_the_inbox_shows_texts_languages_zone_names_and_when_play_now_plays(
    tmp_path: Path, browser: Any
) -> None:
    server = TestServer(create_app(tree_config(tmp_path)), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        await add_user(server.app, "tinh", "operator", zone="p")
        async with (
            ClientSession(headers=AUTH) as http,
            http.post(base + "/api/v1/bulletins", json=TWO_LANGUAGES) as resp,
        ):
            assert resp.status == 201, await resp.text()
        await in_thread(sign_in, browser, base, "tinh")
        await in_thread(read_inbox, browser, base)
        await in_thread(compose, browser)

        # The commune's own programme: a 120 s item on c1's poles.
        xa = await account(server.app, "xa1", "operator", "c1")
        body = {
            "name": "Chương trình của xã",
            "source": {"type": "tone", "freq_hz": 440, "duration_s": 120},
            "targets": {"zones": ["c1"]},
            "class": "scheduled",
            "chime": False,
        }
        async with (
            ClientSession(headers=xa) as http,
            http.post(base + "/api/v1/broadcasts", json=body) as resp,
        ):
            assert resp.status == 201, await resp.text()
            programme = (await resp.json())["id"]
        node = server.app[NODE]
        await wait_for(lambda: node.router.holder("c1-e0") == programme, 5, "the programme")
        t0 = time.time()
        said = await in_thread(play_now, browser)
        about = {datetime.fromtimestamp(t0 + s, HANOI).strftime("%H:%M") for s in range(100, 125)}
        assert said.startswith(
            "2 cụm loa đang phát “Chương trình của xã”: bản tin phát sau mục "
        ), said
        assert said[-6:-1] in about, (said, about)
        sent = await in_thread(send_priority, browser)
        assert sent.startswith(
            "Đã gửi bản tin “Cảnh báo nước sông dâng”. 2 cụm loa đang phát "
            "“Chương trình của xã”: bản tin phát sau mục hiện tại, khoảng "
        ), sent
        await in_thread(play_later, browser)
        row = await server.app[BULLETINS].store.bulletins.list(("scheduled",))
        at = datetime.fromtimestamp(row[0].scheduled_at or 0, HANOI)
        assert (at.hour, at.minute) == (7, 0), at
    finally:
        await server.close()
