"""The studio and listen pages: who gets which page, the Ogg links they carry, WHIP from a page
session (cookie + CSRF), and the pages' texts in both languages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from loa.config import with_changes
from loa.web import pages
from loa.web.app import NODE, create_app
from loa.web.listen import listen_token
from tests.conftest import ADMIN, tree_config
from tests.web.test_pages import add_user, dictionaries, sign_in
from tests.web.test_whip import offer_sdp

STATIC = pages.STATIC
MY_TEMPLATES = ("studio", "studio_viewer", "listen")
MY_SCRIPTS = ("studio.js", "listen.js", "webrtc.js", "meter.js", "page.js")


def make_app(tmp_path: Path, **changes: Any) -> web.Application:
    app = create_app(with_changes(tree_config(tmp_path), **changes))
    return app


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(make_app(tmp_path))


def ogg_of(text: str) -> dict[str, str]:
    raw = re.search(r'data-ogg="([^"]*)"', text)
    assert raw is not None
    links: dict[str, str] = json.loads(raw[1].replace("&quot;", '"').replace("&amp;", "&"))
    return links


# -- routes -------------------------------------------------------------------------------------
def test_setup_is_idempotent(tmp_path: Path) -> None:
    from loa.web import studio

    app = make_app(tmp_path)  # create_app already ran studio.setup
    before = len(app.router.routes())
    studio.setup(app)
    assert len(app.router.routes()) == before
    assert "/studio" in {r.resource.canonical for r in app.router.routes() if r.resource}


async def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/studio", "/listen"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303
        location = URL(resp.headers["Location"])
        assert location.path == "/login" and location.query["next"] == path


async def test_operator_gets_the_studio(client: TestClient) -> None:
    await add_user(client.server.app, "xa0", zone="c0")
    csrf = await sign_in(client, "xa0")
    resp = await client.get("/studio")
    assert resp.status == 200
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    text = await resp.text()
    assert f'<meta name="csrf-token" content="{csrf}">' in text
    assert '<script type="module" src="/static/js/studio.js">' in text
    assert 'id="talk"' in text and "BẮT ĐẦU PHÁT" in text  # the go-live control, in Vietnamese
    assert 'id="studio-zones"' in text and 'name="mode" value="ptt"' in text
    assert 'id="studio-record"' in text and 'id="studio-chime"' in text
    assert 'href="/studio" data-nav="studio"' in text and 'href="/listen"' in text
    # Emergency is offered by the script only to users with the right, never by the page.
    assert 'value="emergency"' not in text


async def test_viewer_gets_no_go_live_control(client: TestClient) -> None:
    await add_user(client.server.app, "xem", "viewer", zone="c1")
    await sign_in(client, "xem")
    resp = await client.get("/studio")
    assert resp.status == 200
    text = await resp.text()
    assert 'id="talk"' not in text and "studio.js" not in text and "BẮT ĐẦU PHÁT" not in text
    assert "Tài khoản chỉ xem không được phát trực tiếp" in text
    assert 'href="/listen"' in text
    # and the API agrees: a viewer's WHIP offer is refused
    offer = await offer_sdp()
    csrf = (await (await client.get("/api/v1/me")).json())["csrf"]
    resp = await client.post(
        "/api/v1/whip?zones=c1",
        data=offer,
        headers={"Content-Type": "application/sdp", "X-CSRF-Token": csrf},
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"


async def test_listen_page_links_the_ogg_mounts_of_visible_zones(client: TestClient) -> None:
    await add_user(client.server.app, "xa1", zone="c1")
    await sign_in(client, "xa1")
    resp = await client.get("/listen")
    assert resp.status == 200
    text = await resp.text()
    assert '<script type="module" src="/static/js/listen.js">' in text
    assert "Nghe một khu vực" in text and 'id="listen-play"' in text
    links = ogg_of(text)
    assert links == {"c1": f"/listen/c1.ogg?token={listen_token(ADMIN, 'c1')}"}
    # The link plays: the mount (GET /listen/{zone}.ogg) is not shadowed by the page.
    async with client.get(links["c1"]) as ogg:
        assert ogg.status == 200
        assert ogg.headers["Content-Type"] == "audio/ogg"
        assert (await ogg.content.readexactly(4)) == b"OggS"


async def test_unscoped_viewer_sees_every_zones_link(client: TestClient) -> None:
    await add_user(client.server.app, "tinhxem", "viewer")
    await sign_in(client, "tinhxem")
    links = ogg_of(await (await client.get("/listen")).text())
    assert sorted(links) == ["c0", "c1", "p"]


async def test_no_admin_token_means_no_ogg_links(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(tmp_path, admin_token=None))
    await add_user(client.server.app, "xa0", zone="c0")
    await sign_in(client, "xa0")
    text = await (await client.get("/listen")).text()
    assert ogg_of(text) == {}
    assert 'id="ogg-none"' in text


# -- WHIP from a page session ----------------------------------------------------------------------
async def test_whip_takes_the_page_session_with_csrf(client: TestClient) -> None:
    """What studio.js does: the cookie authenticates, X-CSRF-Token is required, the answer
    names the broadcast (the server's id) so the page can find itself in the status."""
    app = client.server.app
    await add_user(app, "xa0", zone="c0")
    csrf = await sign_in(client, "xa0")
    offer = await offer_sdp()
    query = "zones=c0&class=live&chime=0&name=Th%C3%B4ng%20b%C3%A1o"
    resp = await client.post(
        f"/api/v1/whip?{query}", data=offer, headers={"Content-Type": "application/sdp"}
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf"
    resp = await client.post(
        f"/api/v1/whip?{query}",
        data=offer,
        headers={"Content-Type": "application/sdp", "X-CSRF-Token": csrf},
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.text()).startswith("v=0")
    location = resp.headers["Location"]
    assert location.startswith("/api/v1/whip/")
    node = app[NODE]
    bc_id = resp.headers["X-Loa-Broadcast"]
    assert bc_id.startswith("bc-")
    bc = node.broadcasts[bc_id]
    assert bc.log.created_by == "xa0" and bc.log.what == "Thông báo" and bc.log.source == "whip"
    assert bc.spec.target_zones == frozenset({"c0"})
    # Outside the operator's zone: refused, and nothing starts.
    resp = await client.post(
        "/api/v1/whip?zones=c1",
        data=await offer_sdp(),
        headers={"Content-Type": "application/sdp", "X-CSRF-Token": csrf},
    )
    assert resp.status == 403
    assert list(node.broadcasts) == [bc_id]
    resp = await client.delete(location, headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    assert bc_id not in node.broadcasts


# -- texts -----------------------------------------------------------------------------------------
def test_templates_render_with_every_placeholder_filled() -> None:
    templates = pages.Templates.load()
    values = {"csrf": "c", "user": "null", "lang": "vi", "page": "studio", "ogg": "{}"}
    for name in MY_TEMPLATES:
        html = templates.render(name, values)
        assert "{{" not in html and "}}" not in html, name
        assert html.count("<html") == 1 and 'href="/static/css/studio.css"' in html, name


def test_every_studio_and_listen_text_is_in_both_languages() -> None:
    d = dictionaries()
    used: set[str] = set()
    for name in MY_TEMPLATES:
        text = (STATIC / "templates" / f"{name}.html").read_text(encoding="utf-8")
        used |= set(re.findall(r"\{\{\s*([a-z][A-Za-z0-9_.]*)\s*\}\}", text))
        used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([a-z][A-Za-z0-9_.]*)"', text))
    for name in MY_SCRIPTS:
        text = (STATIC / "js" / name).read_text(encoding="utf-8")
        used |= set(re.findall(r"""\bt\(\s*["']([a-z][A-Za-z0-9_.]*)["']""", text))
        # keys chosen by a condition: t(ptt ? "a" : "b") and {Name: "studio.err.x"} maps
        used |= set(re.findall(r"""["']((?:studio|listen)\.[a-z_.]+)["']""", text))
    used |= {f"error.{c}" for c in ("unsupported_offer", "too_many_sessions", "ice_failed")}
    used |= {"error.unsupported_media_type", "error.bad_answer", "nav.studio", "nav.listen"}
    assert len(used) > 60
    for lang in ("vi", "en"):
        missing = used - set(d[lang])
        assert not missing, (lang, sorted(missing))
    assert d["vi"]["studio.golive"] == "BẮT ĐẦU PHÁT"
