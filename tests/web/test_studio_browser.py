"""End to end in Chromium: an operator opens the studio, picks one commune and goes live with a
(fake) microphone playing a 1 kHz tone. The commune's speakers decode 1 kHz and the page counts
them; the other commune's hear nothing of it; push-to-talk mutes and opens the microphone
without renegotiating; stopping logs the broadcast and files the recording in the library.
Then the listen page plays the commune over WHEP. Screenshots go to /tmp for a human to check."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.codecs.pcm import rms_dbfs
from loa.web.app import NODE, create_app
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.web.test_browser import in_thread, shoot, sign_in, until
from tests.web.test_pages import add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

TONE_HZ = 1000.0


def tone_wav(path: Path, seconds: float = 10.0, rate: int = 48000) -> Path:
    """A 1 kHz sine at -12 dBFS; Chromium loops it as the microphone."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.25 * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    wav = tone_wav(tmp_path / "tone.wav")
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,1000",
        "--lang=vi",
    ):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def go_live(driver: Any, base: str, zone: str) -> None:
    """Studio → choose the zone (toggle mode, recording on) → press the big button → on air."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/studio")
    box = until(
        driver,
        "the zone choices",
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#studio-zones input[value="{zone}"]'),
    )
    box[0].click()
    assert driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="toggle"]').is_selected()
    assert driver.find_element(By.ID, "studio-record").is_selected()
    options = [
        o.get_attribute("value")
        for o in driver.find_elements(By.CSS_SELECTOR, "#studio-class option")
    ]
    assert options == ["live"]  # no emergency right, no emergency class
    talk = driver.find_element(By.ID, "talk")
    assert "BẮT ĐẦU PHÁT" in talk.text
    talk.click()
    until(driver, "the microphone on air", lambda d: "MICRO ĐANG BẬT" in text_of(d, "talk"), 20)
    until(
        driver, "the on-air banner", lambda d: "ĐANG PHÁT TRỰC TIẾP" in text_of(d, "studio-onair")
    )


def loud(fleet: Fleet, ep_id: str, t0: float, bc_id: str) -> int:
    return sum(1 for pcm in fleet.heard[ep_id].since(t0, bc_id) if rms_dbfs(pcm) > -40)


def quiet_lately(fleet: Fleet, ep_id: str, bc_id: str, frames: int = 10) -> bool:
    recent = [pcm for _, bc, _, pcm in list(fleet.heard[ep_id].frames)[-frames:] if bc == bc_id]
    return len(recent) == frames and all(rms_dbfs(p) < -50 for p in recent)


def push_to_talk(driver: Any, fleet: Fleet, ep_id: str, bc_id: str) -> list[str]:
    """Switch to push-to-talk on air: muted; hold Space: sound; release: muted. Returns the
    talk button's texts seen (blocking: run it in a thread)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="ptt"]').click()
    driver.find_element(By.TAG_NAME, "h1").click()  # focus off the radio, as a user would
    seen = [text_of(driver, "talk")]
    deadline = time.monotonic() + 10
    while not quiet_lately(fleet, ep_id, bc_id):
        assert time.monotonic() < deadline, "push-to-talk did not mute the speakers"
        time.sleep(0.1)
    ActionChains(driver).key_down(Keys.SPACE).perform()
    try:
        until(driver, "speaking", lambda d: "ĐANG NÓI" in text_of(d, "talk"))
        seen.append(text_of(driver, "talk"))
        t0 = time.monotonic()
        deadline = t0 + 10
        while loud(fleet, ep_id, t0, bc_id) < 10:
            assert time.monotonic() < deadline, "holding Space did not open the microphone"
            time.sleep(0.1)
    finally:
        ActionChains(driver).key_up(Keys.SPACE).perform()
    until(driver, "muted again", lambda d: "NHẤN GIỮ ĐỂ NÓI" in text_of(d, "talk"))
    return seen


async def test_go_live_from_the_studio(tmp_path: Path, browser: Any) -> None:
    config = tree_config(tmp_path, communes=2, per_commune=2)
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    ids = [e.id for e in config.endpoints]
    c0, c1 = [i for i in ids if i.startswith("c0-")], [i for i in ids if i.startswith("c1-")]
    fleet = Fleet(base, [(e.id, e.token or "") for e in config.endpoints])
    node = server.app[NODE]
    try:
        await add_user(server.app, "tinh", "operator", zone="p")
        await fleet.start()
        await wait_for(lambda: on_transport(node, ids), 15, "4 speakers on UDP")
        await in_thread(sign_in, browser, base, "tinh")
        await in_thread(shoot, browser, "loa-studio-idle-phone.png", 390, 844)
        await in_thread(browser.set_window_size, 1280, 1000)

        t0 = time.monotonic()
        await in_thread(go_live, browser, base, "c0")
        (bc_id,) = list(node.broadcasts)
        await wait_for(
            lambda: all(loud(fleet, i, t0, bc_id) >= 25 for i in c0), 15, "c0 hearing the tone"
        )
        for ep_id in c0:
            freq = fleet.heard[ep_id].frequency(t0, bc_id)
            assert abs(freq - TONE_HZ) < 25, (ep_id, freq)
        for ep_id in c1:
            assert not fleet.heard[ep_id].since(t0, bc_id), ep_id
        await in_thread(
            until, browser, "2 speakers counted", lambda d: text_of(d, "hearing-n") == "2"
        )
        assert "/ 2 loa đang nghe bạn" in await in_thread(text_of, browser, "hearing")
        await in_thread(shoot, browser, "loa-studio-live-desktop.png", 1280, 1000)
        await in_thread(shoot, browser, "loa-studio-live-phone.png", 390, 844)
        await in_thread(browser.set_window_size, 1280, 1000)

        seen = await in_thread(push_to_talk, browser, fleet, c0[0], bc_id)
        assert "NHẤN GIỮ ĐỂ NÓI" in seen[0] and "ĐANG NÓI" in seen[1], seen
        await in_thread(shoot, browser, "loa-studio-ptt-phone.png", 390, 844)
        await in_thread(browser.set_window_size, 1280, 1000)

        await in_thread(lambda: browser.find_element("id", "stop").click())
        status = await in_thread(
            until,
            browser,
            "the recording in the library",
            lambda d: "Đã lưu bản ghi" in text_of(d, "upload-status") and text_of(d, "library"),
            30,
        )
        assert status
        await in_thread(shoot, browser, "loa-studio-after-desktop.png", 1280, 1000)
        for ep_id in c1:
            assert not fleet.heard[ep_id].since(t0, bc_id), ep_id

        async with ClientSession(headers=AUTH) as http:

            async def entry() -> dict[str, Any] | None:
                async with http.get(base + "/api/v1/log") as resp:
                    found = [e for e in (await resp.json())["entries"] if e["id"] == bc_id]
                return found[0] if found else None

            deadline = time.monotonic() + 10
            while (logged := await entry()) is None:
                assert time.monotonic() < deadline, "the broadcast was not logged"
                await asyncio.sleep(0.1)
            assert logged["source"] == "whip"
            assert logged["created_by"] == "tinh"
            assert logged["targets"]["zones"] == ["c0"]
            assert logged["class"] == "live"
            assert sorted(k for k, s in logged["heard_s"].items() if s > 0) == c0
            async with http.get(base + "/api/v1/media") as resp:
                media = (await resp.json())["media"]
        (recording,) = media
        assert recording["name"].startswith("ghi-am-") and recording["name"].endswith(".webm")
        assert recording["created_by"] == "tinh"
        assert recording["duration_s"] > 2
        assert recording["name"] in await in_thread(text_of, browser, "library")

        # The listen page plays c0 over WHEP: a 440 Hz tone on air there reaches the page.
        async with ClientSession(headers=AUTH) as http:
            body = {"source": {"type": "tone", "freq_hz": 440}, "targets": {"zones": ["c0"]}}
            async with http.post(base + "/api/v1/broadcasts", json=body) as resp:
                assert resp.status == 201, await resp.text()
        await in_thread(listen, browser, base)
        await wait_for(
            lambda: any(e.listener for e in node.endpoints.values()), 5, "a WHEP listener"
        )
        await in_thread(shoot, browser, "loa-listen-phone.png", 390, 844)
        await in_thread(shoot, browser, "loa-listen-desktop.png", 1280, 1000)
        await in_thread(lambda: browser.find_element("id", "listen-stop").click())
        await wait_for(
            lambda: not any(e.listener for e in node.endpoints.values()), 5, "WHEP ended"
        )
    finally:
        await fleet.close()
        await server.close()


def listen(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(base + "/listen")
    until(driver, "the zones", lambda d: d.find_elements(By.CSS_SELECTOR, "#listen-zone option"))
    Select(driver.find_element(By.ID, "listen-zone")).select_by_value("c0")
    link = driver.find_element(By.ID, "ogg-link")
    assert "/listen/c0.ogg?token=" in str(link.get_attribute("href"))
    driver.find_element(By.ID, "listen-play").click()
    until(driver, "listening", lambda d: "Đang nghe: Xã 0" in text_of(d, "listen-state"), 20)
    assert driver.find_element(By.ID, "listen-stop").is_displayed()
    assert driver.execute_script("return !document.getElementById('listen-audio').paused")
    until(driver, "what is on air", lambda d: "tone 440 Hz" in text_of(d, "listen-now"))
    level = "return Number(document.querySelector('#meter .meter-bar').ariaValueNow)"
    until(driver, "the tone in the meter", lambda d: d.execute_script(level) > -30, 10)
