"""The reports page: behind a session, rendered in Vietnamese with its controls, and the API
calls its script makes answer for a signed-in operator (zone-scoped) with JSON and CSV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from loa.web import pages, reports_page
from loa.web.app import create_app
from tests.conftest import tree_config
from tests.web.test_pages import add_user, sign_in


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path)))


async def test_the_page_needs_a_session(client: TestClient) -> None:
    resp = await client.get("/reports", allow_redirects=False)
    assert resp.status == 303
    assert URL(resp.headers["Location"]).query["next"] == "/reports"


async def test_the_page_renders_with_its_controls(client: TestClient) -> None:
    await add_user(client.app, "ops", zone="c0")
    await sign_in(client, "ops")
    resp = await client.get("/reports")
    assert resp.status == 200
    html = await resp.text()
    for marker in (
        'id="f-since"',
        'id="f-until"',
        'id="zone-rows"',
        'id="endpoint-rows"',
        'id="csv-zones"',
        "/static/js/reports.js",
        "Báo cáo",
    ):
        assert marker in html
    assert (pages.STATIC / "js" / "reports.js").is_file()


async def test_the_calls_the_script_makes(client: TestClient) -> None:
    await add_user(client.app, "ops", zone="c0")
    await sign_in(client, "ops")
    now = time.time()
    query = f"since={now - 86400:.0f}&until={now:.0f}"
    zones = await (await client.get(f"/api/v1/reports/zones?{query}")).json()
    assert {z["zone"] for z in zones["zones"]} == {"c0"}  # an operator sees their subtree
    poles = await (await client.get(f"/api/v1/reports/endpoints?{query}")).json()
    assert {e["endpoint"] for e in poles["endpoints"]} == {"c0-e0", "c0-e1"}
    csv = await client.get(f"/api/v1/reports/endpoints?{query}&format=csv")
    assert csv.status == 200
    assert csv.content_type == "text/csv"
    assert (await csv.read()).startswith(b"\xef\xbb\xbf")


def test_setup_is_idempotent(tmp_path: Path) -> None:
    app = create_app(tree_config(tmp_path))
    before = len(app.router.routes())
    reports_page.setup(app)
    assert len(app.router.routes()) == before
