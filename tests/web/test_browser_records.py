"""In Chromium: a commune operator's dashboard shows the province's emergency on air on their
speakers, without a stop button in the banner or the active list (the province's to stop;
the server would answer 403), and only their own commune's speakers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.web.app import create_app
from tests.conftest import AUTH, tree_config
from tests.web.test_browser import browser, in_thread, sign_in, until
from tests.web.test_pages import add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]
__all__ = ["browser"]  # the fixture, used by name

TONE = {"type": "tone", "freq_hz": 800}


def banner_without_stop(driver: Any) -> bool:
    from selenium.webdriver.common.by import By

    banners = driver.find_elements(By.CSS_SELECTOR, "#onair .onair")
    return bool(banners) and not driver.find_elements(By.CSS_SELECTOR, "#onair .btn-stop")


def rows(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#endpoint-rows tr")]


def active_stop_buttons(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, "#active-list button"))


async def test_a_commune_sees_the_provinces_emergency_but_cannot_stop_it(
    tmp_path: Path, browser: Any
) -> None:
    server = TestServer(create_app(tree_config(tmp_path, communes=2)), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        await add_user(server.app, "xa1", "operator", zone="c1", emergency_right=True)
        body = {
            "source": TONE,
            "targets": {"zones": ["p"]},
            "class": "emergency",
            "origin_zone": "p",
            "chime": False,
        }
        async with (
            ClientSession() as http,
            http.post(base + "/api/v1/broadcasts", json=body, headers=AUTH) as resp,
        ):
            assert resp.status == 201, await resp.text()
        await in_thread(sign_in, browser, base, "xa1")
        await in_thread(until, browser, "the province's banner, no stop", banner_without_stop)
        shown = await in_thread(rows, browser)
        assert len(shown) == 2 and all("c1-" in r for r in shown), shown
        assert await in_thread(active_stop_buttons, browser) == 0
    finally:
        await server.close()
