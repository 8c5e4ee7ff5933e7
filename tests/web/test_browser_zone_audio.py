"""In Chromium: a commune operator sets a village's packet duration on the dashboard; the server
stores it (the village's own), the running node routes on it, "as the zone above" names the
commune's effective value, and choosing it again makes the village inherit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from loa.web.app import create_app
from loa.web.keys import NODE, STORE
from tests.conftest import tree_config
from tests.relay.fleet import wait_for
from tests.web.test_browser import browser, in_thread, sign_in, until
from tests.web.test_browser_voices import pick_zone, village_shown
from tests.web.test_pages import add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]
__all__ = ["browser"]  # the fixture, used by name


def frame_box(driver: Any) -> tuple[bool, list[str], str]:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "zone-audio")
    select = driver.find_element(By.ID, "zone-frame-ms")
    options = [o.text for o in select.find_elements(By.TAG_NAME, "option")]
    return box.is_displayed(), options, select.get_attribute("value") or ""


def choose_frame(driver: Any, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "zone-frame-ms")).select_by_value(value)


async def test_an_operator_sets_a_villages_packet_duration(tmp_path: Path, browser: Any) -> None:
    server = TestServer(create_app(tree_config(tmp_path, communes=2)), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    store, node = server.app[STORE], server.app[NODE]
    try:
        c1 = await store.zones.update("c1", frame_ms=40)
        node.set_zone_audio("c1", c1.audio)
        await store.zones.add("v1", "Thôn Một", "c1")
        node.add_zone("v1", "c1")
        await add_user(server.app, "xa1", "operator", zone="c1")
        await in_thread(sign_in, browser, base, "xa1")
        await in_thread(until, browser, "the zone tree", village_shown)
        await in_thread(pick_zone, browser, "c1")
        assert not (await in_thread(frame_box, browser))[0]  # their own commune: not theirs
        await in_thread(pick_zone, browser, "v1")
        await in_thread(until, browser, "the packet controls", lambda d: frame_box(d)[0])
        _, options, value = await in_thread(frame_box, browser)
        assert value == ""  # inherits
        assert options == ["Theo khu vực cấp trên (40 ms)", "20 ms", "40 ms", "60 ms"]
        await in_thread(choose_frame, browser, "60")
        saved = "Đã đổi cài đặt âm thanh"
        await in_thread(until, browser, "the notice", lambda d: saved in d.page_source)
        assert (await store.zones.get("v1")).audio.frame_ms == 60
        assert node.zones.audio("v1").frame_ms == 60
        await in_thread(until, browser, "the new value", lambda d: frame_box(d)[2] == "60")
        await in_thread(choose_frame, browser, "")  # as the zone above again
        await wait_for(lambda: node.zones.audio("v1").frame_ms == 40, 10, "the inherited 40 ms")
        assert (await store.zones.get("v1")).audio.frame_ms is None
    finally:
        await server.close()
