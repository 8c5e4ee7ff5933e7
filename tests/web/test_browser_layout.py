"""Every page in headless Chromium at a desktop (1366×900) and a phone (390×844, mobile
viewport): nothing scrolls sideways (``scrollWidth > clientWidth`` fails, naming the elements
that stick out), a PNG of each is saved for a human (``LOA_SCREENSHOTS``, default /tmp), the
phone menu stays compact and opens, no page loads a file from another origin, and — the
page in Vietnamese — no visible text is a string that exists only in en.json (English
leaking into the Vietnamese UI) or a bare i18n key (a text never translated). Speakers are
online, a programme is on air and one has ended, so the pages show real rows; an operator
walks every page at both sizes, an admin and a viewer at the phone's."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.web import pages
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

INBOX_BULLETIN = {
    "level": "normal",
    "zones": ["c0"],
    "title": "Thông báo lịch tiêm chủng cho trẻ dưới năm tuổi",
    "variants": [{"language": "vi", "text": "Sáng thứ bảy tiêm chủng tại trạm y tế xã. " * 8}],
}
SCHEDULE = {
    "name": "Thời sự sáng và chiều",
    "zone": "p",
    "dtstart": "2025-03-03T05:00",
    "rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA;BYHOUR=5,17;BYMINUTE=0;BYSECOND=0",
    "items": [{"type": "silence", "duration_s": 600}],
    "targets": {"zones": ["c0", "c1"]},
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


FOREIGN_JS = """
return performance.getEntriesByType('resource').map((e) => e.name)
  .filter((url) => !url.startsWith(location.origin));
"""

TEXTS_JS = """
const out = [document.title];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  const el = node.parentElement;
  const text = node.textContent.trim();
  if (!el || !text || el.closest('script, style, [hidden]')) continue;
  if (el.closest('svg')) { out.push(text); continue; }  // map labels and pin tooltips
  if (el.getClientRects().length) out.push(text);
}
for (const el of document.querySelectorAll('[placeholder], [title], [aria-label], img[alt]')) {
  if (el.closest('[hidden]')) continue;
  for (const name of ['placeholder', 'title', 'aria-label', 'alt']) {
    const value = el.getAttribute(name);
    if (value && value.trim()) out.push(value.trim());
  }
}
for (const option of document.querySelectorAll('option')) out.push(option.textContent.trim());
return out;
"""


def _dictionary(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((pages.STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return data


def english_only() -> list[tuple[str, str]]:
    """(key, fragment): the literal parts of every en.json text that vi.json does not also
    have, split at {placeholders}."""
    vi_texts = set(_dictionary("vi").values())
    out = []
    for key, text in _dictionary("en").items():
        if text in vi_texts:
            continue
        for part in re.split(r"\{[a-z_]+\}", text):
            part = part.strip(" .,:;·—-–()/…")
            if re.search(r"[A-Za-z]{2}", part):
                out.append((key, part))
    return out


ENGLISH = english_only()
KEYS = set(_dictionary("vi"))


def leaks(texts: list[str]) -> list[str]:
    """English-only strings and bare keys among the visible texts. One word must be a whole
    text (``Stop``); longer English must appear as whole words."""
    found = set()
    for text in texts:
        if text in KEYS:
            found.add(f"untranslated key {text!r}")
        for key, part in ENGLISH:
            if " " not in part or len(part) < 8:
                hit = text == part
            else:
                hit = re.search(rf"(?<![\w]){re.escape(part)}(?![\w])", text) is not None
            if hit:
                found.add(f"{part!r} (en.json {key}) in {text[:80]!r}")
    return sorted(found)


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
    foreign = driver.execute_script(FOREIGN_JS)
    if foreign:  # the intranet has no Internet: every file comes from this server
        problem = (problem or "") + f" loaded from elsewhere: {foreign}"
    english = leaks(driver.execute_script(TEXTS_JS))
    if english:
        problem = (problem or "") + " English in the Vietnamese page: " + "; ".join(english)
    return None if problem is None else f"{name} at {size}: {problem}"


def phone_menu_and_dialog(driver: Any, base: str) -> list[str]:
    """On the phone: the top bar is one compact line; its menu button opens every link; the
    emergency dialog fits (the README's phone screenshots come from here)."""
    from selenium.webdriver.common.by import By

    problems = []
    driver.get(base + "/")
    until(driver, "the dashboard", lambda d: d.find_elements(By.CSS_SELECTOR, "#endpoint-rows tr"))
    time.sleep(0.6)
    height = driver.execute_script("return document.querySelector('.topbar').offsetHeight")
    if height > SIZES["phone"][1] / 8:  # an eighth of the screen at most
        problems.append(f"the phone's top bar is {height} px tall")
    links = driver.find_elements(By.CSS_SELECTOR, ".nav a")
    if any(a.is_displayed() for a in links):
        problems.append("the phone shows the menu's links before the menu is opened")
    toggle = driver.find_element(By.ID, "menu-toggle")
    toggle.click()
    until(driver, "the menu open", lambda d: all(a.is_displayed() for a in links))
    assert toggle.get_attribute("aria-expanded") == "true"
    driver.save_screenshot(str(SHOTS / "menu-phone.png"))
    if problem := overflow(driver):
        problems.append(f"the open menu: {problem}")
    driver.find_element(By.CSS_SELECTOR, '.nav a[data-nav="log"]').click()
    until(driver, "the log page", lambda d: d.current_url.endswith("/log"))
    driver.get(base + "/")
    until(driver, "the dashboard", lambda d: d.find_elements(By.CSS_SELECTOR, "#endpoint-rows tr"))
    time.sleep(0.6)
    driver.save_screenshot(str(SHOTS / "dashboard-top-phone.png"))
    driver.find_element(By.ID, "em-open").click()
    until(
        driver, "the emergency dialog", lambda d: d.find_element(By.ID, "em-dialog").is_displayed()
    )
    time.sleep(0.4)
    driver.save_screenshot(str(SHOTS / "emergency-dialog-phone.png"))
    if problem := overflow(driver):
        problems.append(f"the emergency dialog: {problem}")
    if english := leaks(driver.execute_script(TEXTS_JS)):
        problems.append("the emergency dialog in Vietnamese: " + "; ".join(english))
    return problems


def in_english(driver: Any, base: str) -> list[str]:
    from selenium.webdriver.common.by import By

    viewport(driver, "desktop")
    driver.get(base + "/")
    driver.execute_script("localStorage.setItem('loa.lang', 'en')")
    driver.get(base + "/")
    until(driver, "the dashboard", lambda d: d.find_elements(By.CSS_SELECTOR, "#endpoint-rows tr"))
    time.sleep(0.6)
    found = leaks(driver.execute_script(TEXTS_JS))
    driver.execute_script("localStorage.removeItem('loa.lang')")
    return found


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
        await add_user(server.app, "quan-tri", "admin")
        await add_user(server.app, "nguoi-xem", "viewer", zone="c1")
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
            ended = {**body, "targets": {"zones": ["c1"]}, "name": "Thông báo lịch tiêm chủng"}
            async with http.post(base + "/api/v1/broadcasts", json=ended) as resp:
                bc_id = (await resp.json())["id"]
            async with http.delete(f"{base}/api/v1/broadcasts/{bc_id}") as resp:
                assert resp.status in (200, 204), await resp.text()
            # A bulletin in the inbox and a schedule: their pages show real rows too.
            for path, made in (("/bulletins", INBOX_BULLETIN), ("/schedules", SCHEDULE)):
                async with http.post(base + "/api/v1" + path, json=made) as resp:
                    assert resp.status == 201, await resp.text()

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
                problems.extend(await in_thread(phone_menu_and_dialog, browser, base))
        # The check can fail: the same page in English is full of en.json strings.
        english = await in_thread(in_english, browser, base)
        assert any("(en.json em.button)" in e for e in english), english
        # What other roles see on a phone: an admin gets every editor, a viewer no studio.
        for user in ("quan-tri", "nguoi-xem"):
            await in_thread(browser.delete_all_cookies)
            await in_thread(sign_in, browser, base, user)
            for name, (path, ready) in PAGES.items():
                shot = f"{name}-{user}"
                problems.append(await in_thread(visit, browser, base, path, ready, "phone", shot))
        failed = [p for p in problems if p]
        assert not failed, "\n".join(failed)
    finally:
        await fleet.close()
        await server.close()
