"""The log page in Chromium shows a broadcast a restart interrupted: when, and how long until
it came back (or that it did not)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from loa.web.app import create_app
from tests.conftest import tree_config
from tests.web.test_browser import browser, in_thread, sign_in, until  # noqa: F401 (fixture)
from tests.web.test_pages import add_user
from tests.web.test_restart import crashed_with, rec

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]


def row_text(driver: Any, bc_id: str) -> str:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f'#log-rows tr[data-id="{bc_id}"]')
    return rows[0].text if rows else ""


async def test_the_log_page_shows_the_interruption(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    config = tree_config(tmp_path)
    await crashed_with(
        config,
        {
            "bc-back": rec("scheduled", {"type": "tone", "freq_hz": 500}),
            "bc-whip": rec("live", None, live=True),
        },
    )
    await asyncio.sleep(1.1)  # so the gap shows as at least a second
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        await add_user(server.app, "tinh", "operator", zone="p")
        await in_thread(sign_in, browser, base, "tinh")
        await in_thread(browser.get, base + "/log")
        await in_thread(
            until, browser, "the interrupted rows", lambda d: row_text(d, "bc-whip") != ""
        )
        back, whip = row_text(browser, "bc-back"), row_text(browser, "bc-whip")
        assert "gián đoạn lúc" in back and "phát lại sau" in back, back
        assert "không phát lại" in whip and "interrupted" not in whip, whip
    finally:
        await server.close()
