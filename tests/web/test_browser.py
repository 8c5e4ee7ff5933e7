"""End to end in Chromium: sign in through the form, watch the speakers come online, press the
emergency button for one commune with a text to read, confirm; the commune's speakers hear it,
the others do not, and the broadcast log says so. Screenshots go to /tmp for a human to check."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.codecs.pcm import rms_dbfs
from loa.config import Config, with_changes
from loa.web.app import NODE, create_app
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.web.test_pages import PASSWORD, add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

SHOTS = Path(os.environ.get("LOA_SCREENSHOTS", "/tmp"))
WARNING = "Cảnh báo bão số ba. Bà con xã một di chuyển đến nơi an toàn ngay. " * 3


def config_with_places(tmp_path: Path) -> Config:
    """Three communes of three speakers, each speaker somewhere in Quảng Bình."""
    config = tree_config(tmp_path, communes=3, per_commune=3)
    placed = []
    for i, ep in enumerate(config.endpoints):
        c, e = divmod(i, 3)
        placed.append(
            with_changes(ep, lat=17.40 + 0.05 * c + 0.012 * e, lon=106.55 + 0.07 * c - 0.01 * e)
        )
    return with_changes(config, endpoints=tuple(placed))


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1000")
    options.add_argument("--lang=vi")
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks; the server under test runs on this loop, so drive it from a thread."""
    return await asyncio.to_thread(fn, *args)


def until(driver: Any, what: str, predicate: Callable[[Any], Any], timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)
    except Exception as exc:
        shot = SHOTS / "loa-failure.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"timed out waiting for {what} (screenshot {shot})") from exc


def sign_in(driver: Any, base: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    until(driver, "the login page", lambda d: "/login" in d.current_url)
    assert "Đăng nhập" in driver.find_element(By.TAG_NAME, "h1").text + driver.title
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    until(driver, "the dashboard", lambda d: d.current_url.rstrip("/") == base)


def online_rows(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, "#endpoint-rows tr.online"))


def emergency_flow(driver: Any, zone: str) -> str:
    """Button → typed text → zone (instead of the own one) → confirm (checking what it names)
    → ON AIR; returns the id."""
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.ID, "em-open")
    assert "PHÁT KHẨN CẤP" in button.text
    button.click()
    until(
        driver, "the emergency dialog", lambda d: d.find_element(By.ID, "em-dialog").is_displayed()
    )
    driver.find_element(By.CSS_SELECTOR, 'input[name="em-source"][value="tts"]').click()
    driver.find_element(By.ID, "em-text").send_keys(WARNING)
    driver.find_element(By.ID, "em-next").click()
    own = driver.find_element(By.CSS_SELECTOR, '#em-zones input[value="p"]')
    assert own.is_selected(), "the operator's own zone is ticked"
    own.click()
    driver.find_element(By.CSS_SELECTOR, f'#em-zones input[value="{zone}"]').click()
    driver.find_element(By.ID, "em-next").click()
    summary = until(driver, "the confirmation", lambda d: d.find_element(By.ID, "em-summary").text)
    assert "Xã 1" in summary and "3 cụm loa (3 đang trực tuyến)" in summary, summary
    driver.save_screenshot(str(SHOTS / "loa-emergency-confirm.png"))
    driver.find_element(By.ID, "em-go").click()
    banner = until(
        driver, "the ON AIR banner", lambda d: d.find_elements(By.CSS_SELECTOR, "#onair .onair")
    )
    assert "ĐANG PHÁT KHẨN CẤP" in banner[0].text
    until(
        driver,
        "3 speakers hearing",
        lambda d: "3 loa đang phát" in d.find_element(By.ID, "onair").text,
    )

    # The banner's clock ticks between pushes: two readings a second or more apart differ. (Not
    # "0:01" itself: on a loaded machine the banner can already say 0:02 when it is first read.)
    def clock(d: Any) -> str:
        return str(d.find_element(By.CSS_SELECTOR, "#onair .onair-elapsed").text)

    first = until(driver, "the elapsed time", lambda d: clock(d) not in ("", "–") and clock(d))
    until(driver, "the elapsed time ticking", lambda d: clock(d) not in ("", "–", first))
    return str(banner[0].get_attribute("data-id"))


def shoot(driver: Any, name: str, width: int, height: int, at: str | None = None) -> Path:
    driver.set_window_size(width, height)
    time.sleep(0.4)  # let the layout settle
    if at is not None:
        driver.execute_script(f"document.querySelector('{at}').scrollIntoView()")
        time.sleep(0.2)
    path = SHOTS / name
    driver.save_screenshot(str(path))
    return path


def stop_on_air(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    stop = driver.find_element(By.CSS_SELECTOR, "#onair .btn-stop")
    assert stop.text == "DỪNG"
    stop.click()
    until(
        driver, "the banner to go", lambda d: not d.find_elements(By.CSS_SELECTOR, "#onair .onair")
    )


def loud_frames(fleet: Fleet, ep_id: str, t0: float, bc_id: str) -> int:
    return sum(1 for pcm in fleet.heard[ep_id].since(t0, bc_id) if rms_dbfs(pcm) > -45)


async def test_emergency_from_the_dashboard(tmp_path: Path, browser: Any) -> None:
    config = config_with_places(tmp_path)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    ids = [e.id for e in config.endpoints]
    fleet = Fleet(base, [(e.id, e.token or "") for e in config.endpoints])
    try:
        await add_user(server.app, "tinh", "operator", zone="p", emergency_right=True)
        await fleet.start()
        await wait_for(lambda: on_transport(server.app[NODE], ids), 15, "9 speakers on UDP")

        await in_thread(sign_in, browser, base, "tinh")
        await in_thread(until, browser, "9 speakers online", lambda d: online_rows(d) == 9)
        await in_thread(shoot, browser, "loa-dashboard-desktop.png", 1280, 1000)
        await in_thread(shoot, browser, "loa-dashboard-phone.png", 390, 844)
        await in_thread(shoot, browser, "loa-speakers-phone.png", 390, 844, "#endpoints-card")
        await in_thread(shoot, browser, "loa-broadcast-phone.png", 390, 844, "#broadcast-card")
        await in_thread(browser.set_window_size, 1280, 1000)

        t0 = time.monotonic()
        bc_id = await in_thread(emergency_flow, browser, "c1")
        await in_thread(shoot, browser, "loa-onair-desktop.png", 1280, 1000)
        await in_thread(shoot, browser, "loa-onair-phone.png", 390, 844)
        await in_thread(
            shoot, browser, "loa-onair-speakers-desktop.png", 1280, 1000, "#endpoints-card"
        )

        target = [i for i in ids if i.startswith("c1-")]
        others = [i for i in ids if not i.startswith("c1-")]
        await wait_for(
            lambda: all(loud_frames(fleet, i, t0, bc_id) >= 25 for i in target),
            10,
            "the commune's speakers playing the warning",
        )
        for ep_id in others:
            assert not fleet.heard[ep_id].since(t0, bc_id), ep_id
        pcm = np.concatenate(fleet.heard[target[0]].since(t0, bc_id))
        assert rms_dbfs(pcm) > -40  # speech and chime, not silence

        await in_thread(stop_on_air, browser)

        async with ClientSession() as http, http.get(base + "/api/v1/log", headers=AUTH) as resp:
            entries = (await resp.json())["entries"]
        (entry,) = [e for e in entries if e["id"] == bc_id]
        assert entry["class"] == "emergency"
        assert entry["targets"]["zones"] == ["c1"]
        assert entry["created_by"] == "tinh"
        assert sorted(k for k, s in entry["heard_s"].items() if s > 0) == target
        assert entry["endpoints_heard"] == 3
    finally:
        await fleet.close()
        await server.close()
