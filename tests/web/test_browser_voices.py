"""In Chromium: a commune operator picks the South's voice for a village of their commune on
the dashboard; the server stores it (the village's own voice), the choice "as the zone above"
names the commune's voice, and the operator's own commune offers no such control (not theirs
to change)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from loa.web.app import create_app
from loa.web.keys import NODE, STORE
from tests.conftest import tree_config
from tests.web.test_browser import browser, in_thread, sign_in, until
from tests.web.test_pages import add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]
__all__ = ["browser"]  # the fixture, used by name


def village_shown(driver: Any) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_elements(By.CSS_SELECTOR, '#zone-tree button[data-zone="v1"]'))


def pick_zone(driver: Any, zone: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'#zone-tree button[data-zone="{zone}"]').click()


def voice_box(driver: Any) -> tuple[bool, list[str], str]:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "zone-voice")
    select = driver.find_element(By.ID, "zone-voice-select")
    options = [o.text for o in select.find_elements(By.TAG_NAME, "option")]
    return box.is_displayed(), options, select.get_attribute("value") or ""


def choose(driver: Any, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "zone-voice-select")).select_by_value(value)


async def test_an_operator_sets_a_villages_voice(tmp_path: Path, browser: Any) -> None:
    server = TestServer(create_app(tree_config(tmp_path, communes=2)), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    store = server.app[STORE]
    try:
        await store.zones.update("c1", voice="vi-vn-x-central")
        await store.zones.add("v1", "Thôn Một", "c1")
        server.app[NODE].add_zone("v1", "c1")
        await add_user(server.app, "xa1", "operator", zone="c1")
        await in_thread(sign_in, browser, base, "xa1")
        await in_thread(until, browser, "the zone tree", village_shown)
        await in_thread(pick_zone, browser, "c1")
        shown, _, _ = await in_thread(voice_box, browser)
        assert not shown  # their own commune: not theirs to change
        await in_thread(pick_zone, browser, "v1")
        await in_thread(until, browser, "the voice control", lambda d: voice_box(d)[0])
        _, options, value = await in_thread(voice_box, browser)
        assert value == ""  # inherits
        assert options == [
            "Theo khu vực cấp trên (Giọng miền Trung)",
            "Giọng miền Bắc",
            "Giọng miền Trung",
            "Giọng miền Nam",
        ]
        await in_thread(choose, browser, "vi-vn-x-south")
        await in_thread(until, browser, "the notice", lambda d: "Đã đổi giọng đọc" in d.page_source)
        assert (await store.zones.get("v1")).voice == "vi-vn-x-south"
        assert await store.zones.voice("v1") == "vi-vn-x-south"
    finally:
        await server.close()
