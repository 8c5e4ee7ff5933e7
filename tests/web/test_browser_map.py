"""The dashboard's map in Chromium with many speakers close together (a province of 4
communes, 6 speakers each a few hundred metres apart): no two pins or numbered circles
overlap and no two shown labels do, at a desktop and on a phone; the numbered circles add up
to every speaker; tapping one zooms to its zone, where the pins spread out and get labels;
a label that did not fit shows on hover; everything the page loaded came from this server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from loa.config import Config, with_changes
from loa.web.app import NODE, create_app
from tests.conftest import tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.web.test_browser import in_thread, sign_in, until
from tests.web.test_browser_layout import SHOTS, browser, viewport  # noqa: F401 (fixture)
from tests.web.test_pages import add_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

COMMUNES, PER_COMMUNE = 4, 6

# Circles and shown labels of the map, in viewBox units, and what overlaps.
GEOMETRY_JS = """
const svg = document.querySelector('#map svg');
const circles = [...svg.querySelectorAll('circle.ep, circle.cluster')].map((c) => ({
  x: +c.getAttribute('cx'), y: +c.getAttribute('cy'), r: +c.getAttribute('r'),
  zone: c.dataset.zone || null, id: c.dataset.id || null,
  n: c.dataset.zone ? +c.parentNode.querySelector('text.count').textContent : 1,
}));
const labels = [...svg.querySelectorAll('text.label')]
  .filter((t) => getComputedStyle(t).display !== 'none')
  .map((t) => {
    const b = t.getBBox();
    return { x: b.x, y: b.y, w: b.width, h: b.height, text: t.textContent };
  });
const hidden = [...svg.querySelectorAll('text.label-hover')].length;
const bad = [];
for (let i = 0; i < circles.length; i += 1) for (let j = i + 1; j < circles.length; j += 1) {
  const [a, b] = [circles[i], circles[j]];
  if (Math.hypot(a.x - b.x, a.y - b.y) < a.r + b.r) bad.push(`circles ${i} and ${j}`);
}
const hit = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
for (let i = 0; i < labels.length; i += 1) {
  for (let j = i + 1; j < labels.length; j += 1) {
    if (hit(labels[i], labels[j])) bad.push(`labels ${labels[i].text} / ${labels[j].text}`);
  }
  for (const c of circles) {
    if (hit(labels[i], { x: c.x - c.r, y: c.y - c.r, w: 2 * c.r, h: 2 * c.r })) {
      bad.push(`label ${labels[i].text} on a pin`);
    }
  }
}
return { circles, labels: labels.map((l) => l.text), hidden, bad };
"""


def crowded(tmp_path: Path) -> Config:
    """Communes 0–2 have their speakers on a diagonal; commune 3's stand in a row along a
    road with long names, so zoomed in, their labels cannot all fit."""
    config = tree_config(tmp_path, communes=COMMUNES, per_commune=PER_COMMUNE)
    placed = []
    for i, ep in enumerate(config.endpoints):
        c, e = divmod(i, PER_COMMUNE)
        lat = 21.60 + 0.06 * (c % 2) + (0.0 if c == 3 else 0.002 * e)
        lon = 105.70 + 0.05 * c + 0.0015 * e
        name = f"Cụm loa nhà văn hoá thôn số {e + 1}" if c == 3 else ep.name
        placed.append(with_changes(ep, lat=lat, lon=lon, name=name))
    return with_changes(config, endpoints=tuple(placed))


def clusters(driver: Any) -> int:
    return len(driver.find_elements("css selector", "#map circle.cluster"))


def geometry(driver: Any) -> dict[str, Any]:
    result: dict[str, Any] = driver.execute_script(GEOMETRY_JS)
    return result


def check_map(driver: Any, size: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    viewport(driver, size)
    driver.get(driver.current_url)
    until(driver, "the map's pins", lambda d: d.find_elements(By.CSS_SELECTOR, "#map circle"))
    time.sleep(0.5)
    driver.execute_script("document.getElementById('map-card').scrollIntoView()")
    driver.save_screenshot(str(SHOTS / f"map-{size}.png"))
    geo = geometry(driver)
    assert not geo["bad"], f"{size}: {geo['bad']}"
    assert sum(c["n"] for c in geo["circles"]) == COMMUNES * PER_COMMUNE, geo["circles"]
    return geo


async def test_map_clusters_by_zone_and_zooms(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    config = crowded(tmp_path)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    ids = [e.id for e in config.endpoints]
    fleet = Fleet(base, [(e.id, e.token or "") for e in config.endpoints])
    try:
        await add_user(server.app, "tinh", "operator", zone="p", emergency_right=True)
        await fleet.start()
        await wait_for(lambda: on_transport(server.app[NODE], ids), 20, "24 speakers on UDP")
        await in_thread(sign_in, browser, base, "tinh")
        for size in ("phone", "desktop"):
            geo = await in_thread(check_map, browser, size)
            zones = {c["zone"] for c in geo["circles"] if c["zone"]}
            # Every commune's six pins would overlap: one numbered circle each, named.
            assert zones == {f"c{i}" for i in range(COMMUNES)}, geo["circles"]
            assert {f"Xã {i}" for i in range(COMMUNES)} <= set(geo["labels"]), geo["labels"]

        circle = browser.find_element(By.CSS_SELECTOR, '#map circle.cluster[data-zone="c2"]')
        assert "Xã 2: 6 cụm loa, 6 trực tuyến" in circle.find_element(
            By.TAG_NAME, "title"
        ).get_attribute("textContent")
        await in_thread(circle.click)
        await in_thread(
            until,
            browser,
            "the map zoomed to Xã 2",
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#map circle.ep")) == PER_COMMUNE,
        )
        row = browser.find_element(By.CSS_SELECTOR, '.zone-row[data-zone="c2"]')
        assert row.get_attribute("aria-selected") == "true"
        # The zone tree's badges are labelled: column heads, and each badge says what it counts.
        head = browser.find_element(By.CSS_SELECTOR, "#zones-card .tree-head, .tree-head")
        assert head.is_displayed() and head.text.split("\n") == [
            "Trực tuyến",
            "Mất kết nối",
            "Đang phát",
        ]
        badges = row.find_elements(By.CSS_SELECTOR, ".pill")
        assert [b.get_attribute("aria-label") for b in badges] == [
            "Trực tuyến: 6",
            "Mất kết nối: 0",
            "Đang phát: 0",
        ]
        geo = await in_thread(geometry, browser)
        assert not geo["bad"], geo["bad"]
        assert {c["id"] for c in geo["circles"]} == {i for i in ids if i.startswith("c2-")}
        assert len(geo["labels"]) + geo["hidden"] == PER_COMMUNE and geo["labels"], geo
        await in_thread(browser.save_screenshot, str(SHOTS / "map-zoomed-desktop.png"))

        # Along the road the long names cannot all fit: those left out show on hover.
        await in_thread(browser.find_element(By.ID, "map-all").click)
        await in_thread(
            until,
            browser,
            "the whole map",
            lambda d: d.find_elements(By.CSS_SELECTOR, "#map circle.cluster"),
        )
        road = browser.find_element(By.CSS_SELECTOR, '#map circle.cluster[data-zone="c3"]')
        await in_thread(road.click)
        await in_thread(
            until,
            browser,
            "the map zoomed to Xã 3",
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#map circle.ep")) == PER_COMMUNE,
        )
        geo = await in_thread(geometry, browser)
        assert not geo["bad"], geo["bad"]
        assert geo["labels"] and geo["hidden"], geo
        assert len(geo["labels"]) + geo["hidden"] == PER_COMMUNE, geo
        pin = browser.find_element(By.CSS_SELECTOR, "#map .pin:has(.label-hover) circle")
        label = pin.find_element(By.XPATH, "../*[contains(@class, 'label-hover')]")
        assert not label.is_displayed()
        await in_thread(lambda: ActionChains(browser).move_to_element(pin).perform())
        await in_thread(until, browser, "the label on hover", lambda d: label.is_displayed())
        await in_thread(browser.save_screenshot, str(SHOTS / "map-hover-desktop.png"))

        back = browser.find_element(By.ID, "map-all")
        await in_thread(back.click)
        await in_thread(
            until,
            browser,
            "the whole map again",
            lambda d: clusters(d) == COMMUNES,
        )
        # Nothing fetched from anywhere else: the map is drawn from this server's files.
        foreign = browser.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)"
            ".filter((u) => !u.startsWith(location.origin))"
        )
        assert foreign == [], foreign
    finally:
        await fleet.close()
        await server.close()
