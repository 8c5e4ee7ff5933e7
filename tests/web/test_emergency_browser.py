"""The emergency dialog in headless Chromium, as a commune official would use it (issue 14
item 1, issue 10 item 6): on a 390×844 phone a prepared message goes on air in three taps
with the primary button visible without scrolling and the commune's speakers hear it; at
1366×900 a repeating emergency shows its next play between plays, the banner's DỪNG asks
whether to cancel the repeats, and the strip's button cancels them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.web.app import NODE, create_app
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.web.test_browser import SHOTS, browser, in_thread, loud_frames, online_rows, sign_in
from tests.web.test_browser import until as until_
from tests.web.test_pages import add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]
__all__ = ["browser"]  # the fixture, shared with test_browser.py


def visible_without_scrolling(driver: Any, element_id: str) -> bool:
    return bool(
        driver.execute_script(
            "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
            "return r.width > 0 && r.top >= 0 && r.bottom <= window.innerHeight"
            " && r.left >= 0 && r.right <= window.innerWidth;",
            element_id,
        )
    )


def three_taps(driver: Any) -> tuple[str, int]:
    """The red button, the typhoon message, PHÁT NGAY: returns the broadcast id and taps."""
    from selenium.webdriver.common.by import By

    taps = 0
    driver.find_element(By.ID, "em-open").click()
    taps += 1
    dialog = until_(driver, "the dialog", lambda d: d.find_element(By.ID, "em-dialog"))
    assert dialog.is_displayed()
    typhoon = until_(
        driver, "the prepared messages", lambda d: d.find_elements(By.CSS_SELECTOR, ".prepared")
    )
    titles = [b.text for b in typhoon]
    assert titles == ["Bão", "Lũ lụt", "Sạt lở đất", "Cháy", "Sơ tán"], titles
    assert visible_without_scrolling(driver, "em-next"), "the footer stays on screen"
    driver.save_screenshot(str(SHOTS / "loa-emergency-dialog-phone.png"))
    typhoon[0].click()
    taps += 1
    summary = until_(driver, "the confirmation", lambda d: d.find_element(By.ID, "em-summary").text)
    assert "Khu vực: Xã 1" in summary, summary
    assert "3 cụm loa (2 đang trực tuyến)" in summary, summary
    assert "1 cụm loa đang mất kết nối sẽ không nghe được." in summary, summary
    assert "Nội dung: Bão" in summary, summary
    assert visible_without_scrolling(driver, "em-go"), "PHÁT NGAY must show without scrolling"
    driver.save_screenshot(str(SHOTS / "loa-emergency-prepared-phone.png"))
    driver.find_element(By.ID, "em-go").click()
    taps += 1
    banner = until_(
        driver, "the ON AIR banner", lambda d: d.find_elements(By.CSS_SELECTOR, "#onair .onair")
    )
    return str(banner[0].get_attribute("data-id")), taps


def repeating_emergency(driver: Any) -> str:
    """Lũ lụt, repeat every 5 minutes until cancelled; returns the broadcast id."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "em-open").click()
    buttons = until_(
        driver, "the prepared messages", lambda d: d.find_elements(By.CSS_SELECTOR, ".prepared")
    )
    buttons[1].click()
    until_(driver, "the confirmation", lambda d: d.find_element(By.ID, "em-go").is_displayed())
    driver.find_element(By.CSS_SELECTOR, 'input[name="em-repeat"][value="cancel"]').click()
    every = driver.find_element(By.ID, "em-every")
    every.clear()
    every.send_keys("5")
    assert visible_without_scrolling(driver, "em-go")
    driver.save_screenshot(str(SHOTS / "loa-emergency-repeat-desktop.png"))
    driver.find_element(By.ID, "em-go").click()
    strip = until_(
        driver,
        "the repeat strip",
        lambda d: d.find_elements(By.CSS_SELECTOR, "#repeats .repeating"),
    )
    said = strip[0].text
    assert "mỗi 5 phút" in said and "cho đến khi huỷ" in said, said
    banner = until_(
        driver, "the ON AIR banner", lambda d: d.find_elements(By.CSS_SELECTOR, "#onair .onair")
    )
    return str(banner[0].get_attribute("data-id"))


def stop_this_play_only(driver: Any) -> str:
    """DỪNG asks; "only this play" ends the banner and the strip shows the next play."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#onair .btn-stop").click()
    question = until_(
        driver, "the question", lambda d: d.find_element(By.ID, "stop-dialog").is_displayed()
    )
    assert question
    text = driver.find_element(By.ID, "stop-text").text
    assert "lặp lại mỗi 5 phút" in text and "huỷ cả" in text, text
    driver.find_element(By.ID, "stop-once").click()
    until_(
        driver, "the banner to go", lambda d: not d.find_elements(By.CSS_SELECTOR, "#onair .onair")
    )
    strip = until_(
        driver,
        "the next play time",
        lambda d: (
            "Lần phát tiếp theo lúc" in d.find_element(By.ID, "repeats").text
            and d.find_element(By.ID, "repeats").text
        ),
    )
    driver.save_screenshot(str(SHOTS / "loa-emergency-between-plays-desktop.png"))
    return str(strip)


def cancel_from_the_strip(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.CSS_SELECTOR, "#repeats .btn-cancel-repeat")
    assert button.text == "HUỶ LẶP LẠI"
    button.click()
    until_(
        driver,
        "the strip to go",
        lambda d: not d.find_elements(By.CSS_SELECTOR, "#repeats .repeating"),
    )


async def test_prepared_message_in_three_taps_and_repeats(tmp_path: Path, browser: Any) -> None:
    config = tree_config(tmp_path, communes=3, per_commune=3)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    offline = "c1-e2"
    running = [e for e in config.endpoints if e.id != offline]
    fleet = Fleet(base, [(e.id, e.token or "") for e in running])
    try:
        await add_user(server.app, "xa1", "operator", zone="c1", emergency_right=True)
        await fleet.start()
        ids = [e.id for e in running]
        await wait_for(lambda: on_transport(server.app[NODE], ids), 15, "8 speakers on UDP")

        await in_thread(browser.set_window_size, 390, 844)
        await in_thread(sign_in, browser, base, "xa1")
        await in_thread(until_, browser, "speakers online", lambda d: online_rows(d) >= 2)
        t0 = time.monotonic()
        bc_id, taps = await in_thread(three_taps, browser)
        assert taps == 3
        hearing = ["c1-e0", "c1-e1"]
        await wait_for(
            lambda: all(loud_frames(fleet, i, t0, bc_id) >= 25 for i in hearing),
            10,
            "the commune's speakers playing the typhoon warning",
        )
        for ep_id in ids:
            if ep_id not in hearing:
                assert not fleet.heard[ep_id].since(t0, bc_id), ep_id
        async with ClientSession() as http:
            url = f"{base}/api/v1/broadcasts/{bc_id}"
            async with http.delete(url, headers=AUTH) as resp:
                assert resp.status == 200

            await in_thread(browser.set_window_size, 1366, 900)
            await in_thread(
                until_,
                browser,
                "the banner to go",
                lambda d: not d.find_elements("css selector", "#onair .onair"),
            )
            bc_id = await in_thread(repeating_emergency, browser)
            repeat_id = bc_id.rsplit(".", 1)[0]
            async with http.get(f"{base}/api/v1/repeats", headers=AUTH) as resp:
                listed = (await resp.json())["repeats"]
            assert [r["id"] for r in listed] == [repeat_id] and listed[0]["every_s"] == 300
            strip = await in_thread(stop_this_play_only, browser)
            assert "Lũ lụt" in strip and "Xã 1" in strip, strip
            async with http.get(f"{base}/api/v1/repeats/{repeat_id}", headers=AUTH) as resp:
                row = await resp.json()
            assert row["state"] == "active" and row["playing"] is None and row["next_at"]
            await in_thread(cancel_from_the_strip, browser)
            async with http.get(f"{base}/api/v1/repeats/{repeat_id}", headers=AUTH) as resp:
                row = await resp.json()
            assert row["state"] == "cancelled" and row["reason"] == "cancelled by xa1"
    finally:
        await fleet.close()
        await server.close()


def add_prepared(driver: Any) -> list[str]:
    """An admin adds "Lũ quét" for Xã 1 and edits the typhoon text; returns the list."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    items = until_(
        driver, "the prepared messages card", lambda d: d.find_elements(By.CSS_SELECTOR, ".pm-item")
    )
    assert len(items) == 5
    driver.find_element(By.ID, "pm-title").send_keys("Lũ quét")
    Select(driver.find_element(By.ID, "pm-zone")).select_by_value("c1")
    driver.find_element(By.ID, "pm-text").send_keys("Lũ quét trên suối Xã 1, tránh xa bờ suối.")
    driver.find_element(By.ID, "pm-position").clear()
    driver.find_element(By.ID, "pm-position").send_keys("5")
    driver.find_element(By.ID, "pm-save").click()
    until_(driver, "six messages", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".pm-item")) == 6)
    driver.find_element(By.CSS_SELECTOR, '.pm-item[data-id="bao"] .pm-edit').click()
    text = driver.find_element(By.ID, "pm-text")
    assert text.get_attribute("value").startswith("Thông báo khẩn cấp. Bão")
    text.clear()
    text.send_keys("Bão số 3 sắp đổ bộ.")
    driver.find_element(By.ID, "pm-save").click()
    until_(
        driver,
        "the edited text",
        lambda d: "Bão số 3 sắp đổ bộ." in d.find_element(By.ID, "pm-list").text,
    )
    return [i.text.split("\n")[0] for i in driver.find_elements(By.CSS_SELECTOR, ".pm-item")]


async def test_an_admin_edits_the_prepared_messages(tmp_path: Path, browser: Any) -> None:
    config = tree_config(tmp_path, communes=2, per_commune=1)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        await add_user(server.app, "quantri", "admin")
        await in_thread(browser.set_window_size, 1366, 900)
        await in_thread(sign_in, browser, base, "quantri")
        titles = await in_thread(add_prepared, browser)
        assert titles[0].startswith("Lũ quét · Xã 1"), titles
        async with (
            ClientSession(headers=AUTH) as http,
            http.get(base + "/api/v1/prepared") as resp,
        ):
            saved = {p["id"]: p for p in (await resp.json())["prepared"]}
        assert saved["lu-quet-c1"]["zone"] == "c1" and saved["lu-quet-c1"]["position"] == 5
        assert saved["lu-quet-c1"]["text"] == "Lũ quét trên suối Xã 1, tránh xa bờ suối."
        assert saved["bao"]["text"] == "Bão số 3 sắp đổ bộ." and saved["bao"]["updated_by"] == (
            "quantri"
        )
    finally:
        await server.close()
