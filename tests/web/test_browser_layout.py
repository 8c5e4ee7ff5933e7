"""Every page in headless Chromium at a desktop (1366×900) and a phone (390×844, mobile
viewport): nothing scrolls sideways (``scrollWidth > clientWidth`` fails, naming the elements
that stick out), a PNG of each is saved for a human (``LOA_SCREENSHOTS``, default /tmp), and
the phone menu stays compact. Speakers are online and a programme is on air, so the pages
show real rows."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.web.app import NODE, create_app
from tests.conftest import AUTH
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.web.test_browser import config_with_places, in_thread, sign_in, until
from tests.web.test_pages import add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

SHOTS = Path(os.environ.get("LOA_SCREENSHOTS", "/tmp")) / "loa-layout"
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
# Every page a signed-in user can open, and an element that is there once its script ran.
PAGES = {
    "dashboard": ("/", "#endpoint-rows tr"),
    "studio": ("/studio", "#user-label:not(:empty)"),
    "listen": ("/listen", "#user-label:not(:empty)"),
    "bulletins": ("/bulletins", "#user-label:not(:empty)"),
    "log": ("/log", "#user-label:not(:empty)"),
    "schedules": ("/schedules", "#user-label:not(:empty)"),
    "reports": ("/reports", "#user-label:not(:empty)"),
}

OVERFLOW_JS = """
const de = document.documentElement;
const out = [];
if (de.scrollWidth > de.clientWidth) {
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > de.clientWidth + 0.5) {
      out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}` +
        `${el.className && el.className.baseVal === undefined ? '.' + el.className : ''}` +
        ` right=${Math.round(r.right)}`);
    }
  }
}
return [de.scrollWidth, de.clientWidth, out.slice(0, 10)];
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(arg)
    options.add_argument("--window-size=1366,900")
    options.add_argument("--lang=vi")
    options.add_argument("--hide-scrollbars")
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def viewport(driver: Any, size: str) -> None:
    """The exact CSS viewport; a phone is a mobile viewport (the meta viewport applies)."""
    width, height = SIZES[size]
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"},
    )


def overflow(driver: Any) -> str | None:
    """None, or what sticks out to the right of the viewport."""
    scroll_w, client_w, culprits = driver.execute_script(OVERFLOW_JS)
    if scroll_w <= client_w:
        return None
    return f"scrollWidth {scroll_w} > clientWidth {client_w}: {', '.join(culprits)}"


def visit(driver: Any, base: str, path: str, ready: str, size: str, name: str) -> str | None:
    from selenium.webdriver.common.by import By

    viewport(driver, size)
    driver.get(base + path)
    until(driver, f"{name} ready", lambda d: d.find_elements(By.CSS_SELECTOR, ready))
    time.sleep(0.6)  # the page's fetches and the live status fill in
    problem = overflow(driver)
    driver.save_screenshot(str(SHOTS / f"{name}-{size}.png"))
    return None if problem is None else f"{name} at {size}: {problem}"


def phone_menu_height(driver: Any) -> float:
    return float(
        driver.execute_script(
            "return document.querySelector('.topbar').getBoundingClientRect().height"
        )
    )


async def test_no_page_scrolls_sideways_at_desktop_or_phone_size(
    tmp_path: Path, browser: Any
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
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
        async with ClientSession(headers=AUTH) as http:
            body = {
                "source": {"type": "tone", "freq_hz": 440},
                "targets": {"zones": ["c0"]},
                "class": "scheduled",
                "chime": False,
                "name": "Chương trình thời sự buổi sáng của đài truyền thanh xã",
            }
            async with http.post(base + "/api/v1/broadcasts", json=body) as resp:
                assert resp.status in (200, 201), await resp.text()

        problems: list[str] = []
        for size in SIZES:
            await in_thread(viewport, browser, size)
            await in_thread(browser.delete_all_cookies)
            await in_thread(browser.get, base + "/login")
            problems.append(
                await in_thread(visit, browser, base, "/login", "#login-form", size, "login")
            )
        await in_thread(sign_in, browser, base, "tinh")
        for size in SIZES:
            for name, (path, ready) in PAGES.items():
                problems.append(await in_thread(visit, browser, base, path, ready, size, name))
            if size == "phone":
                await in_thread(browser.get, base + "/")
                await in_thread(
                    until, browser, "the dashboard", lambda d: d.find_elements("id", "em-open")
                )
                # A compact menu: the top bar takes at most an eighth of a phone's height.
                height = await in_thread(phone_menu_height, browser)
                assert height <= SIZES["phone"][1] / 6, (
                    f"the phone's top bar is {height:.0f} px tall"
                )
        failed = [p for p in problems if p]
        assert not failed, "\n".join(failed)
    finally:
        await fleet.close()
        await server.close()
