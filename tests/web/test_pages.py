"""The pages and their static files: rendering, sign-in, content types, nothing external, i18n."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from loa import errors
from loa.relay.broadcast import State
from loa.relay.core.priority import Priority
from loa.store import ROLES
from loa.web import auth, pages
from loa.web.app import create_app
from tests.conftest import tree_config

STATIC = pages.STATIC
PASSWORD = "mật-khẩu-dài-1"


# -- wiring ------------------------------------------------------------------------------------
async def add_user(
    app: web.Application,
    username: str,
    role: str = "operator",
    *,
    zone: str | None = None,
    emergency_right: bool = False,
) -> None:
    await auth.add_user(
        app[auth.STORE],
        username,
        PASSWORD,
        role,
        zone=zone,
        emergency_right=emergency_right,
        actor="test",
    )


async def sign_in(client: TestClient, username: str) -> str:
    """Log in through the form; returns the session's CSRF token from GET /api/v1/me."""
    resp = await client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "next": "/"},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/"
    me = await (await client.get("/api/v1/me")).json()
    assert me["username"] == username
    return str(me["csrf"])


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path)))


# -- pages -------------------------------------------------------------------------------------
async def test_login_page_is_vietnamese_and_sanitises_next(client: TestClient) -> None:
    resp = await client.get("/login", params={"next": "//evil.example/x"})
    assert resp.status == 200
    assert resp.content_type == "text/html"
    text = await resp.text()
    assert '<html lang="vi">' in text
    assert "Đăng nhập" in text and 'name="username"' in text and 'name="password"' in text
    assert 'name="next" value="/"' in text  # not the other site
    assert 'id="login-error"' in text and "hidden>" in text  # no error shown
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    resp = await client.get("/login", params={"next": "/log?zone=c0"})
    assert 'name="next" value="/log?zone=c0"' in await resp.text()


async def test_render_login_shows_error_codes_translated_and_sentences_escaped(
    client: TestClient,
) -> None:
    app = client.server.app
    request = make_request(app, "/login?next=/log")
    resp = pages.render_login(request, error="invalid_credentials", status=401)
    assert resp.status == 401
    assert resp.text is not None
    assert "Sai tên đăng nhập hoặc mật khẩu." in resp.text
    assert 'data-i18n="login.error.invalid_credentials"' in resp.text
    assert 'name="next" value="/log"' in resp.text
    resp = pages.render_login(request, error="<b>x</b> & y", next_path="/")
    assert resp.text is not None
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in resp.text and "<b>x</b>" not in resp.text
    assert 'name="next" value="/"' in resp.text


def make_request(app: web.Application, path: str) -> web.Request:
    from aiohttp.test_utils import make_mocked_request

    return make_mocked_request("GET", path, app=app)


async def test_pages_redirect_to_login_until_signed_in(client: TestClient) -> None:
    for path in ("/", "/log?zone=c0"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303
        location = URL(resp.headers["Location"])
        assert location.path == "/login" and location.query["next"] == path


async def test_signed_in_pages_carry_user_and_csrf(client: TestClient) -> None:
    app = client.server.app
    await add_user(app, "xa0", zone="c0", emergency_right=True)
    csrf = await sign_in(client, "xa0")
    resp = await client.get("/")
    assert resp.status == 200
    text = await resp.text()
    assert f'<meta name="csrf-token" content="{csrf}">' in text
    user = json.loads(re.search(r'data-user="([^"]*)"', text)[1].replace("&quot;", '"'))  # type: ignore[index]
    assert user == {"username": "xa0", "role": "operator", "zone": "c0", "emergency_right": True}
    assert "PHÁT KHẨN CẤP" in text and 'id="em-dialog"' in text
    assert '<script type="module" src="/static/js/dashboard.js">' in text
    assert resp.headers["Cache-Control"] == "no-store"
    text = await (await client.get("/log")).text()
    assert "Nhật ký phát" in text and 'href="/api/v1/log.csv"' in text
    assert '<script type="module" src="/static/js/log.js">' in text


async def test_logout_form_ends_the_session(client: TestClient) -> None:
    app = client.server.app
    await add_user(app, "viewer1", "viewer")
    csrf = await sign_in(client, "viewer1")
    resp = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303


# -- static files ------------------------------------------------------------------------------
def served_files() -> list[Path]:
    return sorted(p for d in pages.SERVED for p in (STATIC / d).rglob("*") if p.is_file())


async def test_every_static_file_is_served_with_its_content_type(client: TestClient) -> None:
    files = served_files()
    assert {p.suffix for p in files} >= {".css", ".js", ".json", ".svg"}
    for path in files:
        resp = await client.get("/static/" + path.relative_to(STATIC).as_posix())
        assert resp.status == 200, path
        expected = pages.CONTENT_TYPES[path.suffix]
        assert resp.content_type == expected, path
        assert await resp.read() == path.read_bytes()
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        etag = resp.headers["ETag"]
        again = await client.get(
            "/static/" + path.relative_to(STATIC).as_posix(), headers={"If-None-Match": etag}
        )
        assert again.status == 304, path
    resp = await client.get("/static/js/dashboard.js")
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/static/templates/dashboard.html",  # rendered, never sent raw
        "/static/js/../templates/login.html",
        "/static/js/%2e%2e/templates/login.html",
        "/static/js/nothing.js",
        "/static/app.css",
        "/static/js/.hidden.js",
        "/static/js",
    ],
)
async def test_static_refuses_what_is_not_a_served_file(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404


# -- nothing from outside ------------------------------------------------------------------------
# The SVG namespace is an identifier (in xmlns and createElementNS), never fetched.
NAMESPACES = {"http://www.w3.org/2000/svg"}
HOST_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'`)<>]*""")


def test_no_external_urls_in_static_files_and_templates() -> None:
    checked = 0
    for path in sorted(p for p in STATIC.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        checked += 1
        for m in re.finditer(r"https?://[^\s\"'`)<>]*", text):
            assert m.group(0) in NAMESPACES, f"{path.name}: external URL {m.group(0)}"
        for m in HOST_URL.finditer(text):  # protocol-relative //host/… too
            assert m.group(0) in NAMESPACES, f"{path.name}: external URL {m.group(0)}"
        assert "@import" not in text, path.name
    assert checked >= 15


def test_js_modules_import_only_local_relative_modules() -> None:
    for path in (STATIC / "js").glob("*.js"):
        for spec in re.findall(
            r"""^\s*import\s[^;]*?from\s+["']([^"']+)["']""", path.read_text(), re.M
        ):
            assert spec.startswith("./") and spec.endswith(".js"), f"{path.name}: import {spec}"
            assert (STATIC / "js" / spec[2:]).is_file(), f"{path.name}: {spec} missing"


# -- i18n ---------------------------------------------------------------------------------------
def dictionaries() -> dict[str, dict[str, str]]:
    return {
        lang: json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        for lang in ("vi", "en")
    }


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in (STATIC / "templates").glob("*.html"):
        text = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r"\{\{\s*([a-z][A-Za-z0-9_.]*)\s*\}\}", text))
        keys |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([a-z][A-Za-z0-9_.]*)"', text))
    for path in (STATIC / "js").glob("*.js"):
        text = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r"""\bt\(\s*["']([a-z][A-Za-z0-9_.]*)["']""", text))
        keys |= set(re.findall(r"""["'](voice\.[a-z]+)["']""", text))
    return keys


def dynamic_keys() -> set[str]:
    """Keys the scripts build from server values: every one the server can send must exist."""
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.LoaError)
    }
    codes |= {auth.CsrfError.code, "rate_limited", "too_large", "network", "timeout"}
    codes |= {"not_found", "method_not_allowed", "http_error", "internal", "unknown"}
    return (
        {f"class.{p.name.lower()}" for p in Priority}
        | {f"bcstate.{s.value}" for s in State}
        | {f"role.{r}" for r in ROLES}
        | {f"error.{c}" for c in codes - {"error"}}
        | {f"login.error.{c}" for c in pages.LOGIN_ERRORS}
        | {f"live.{s}" for s in ("connecting", "open", "closed")}
        | {f"state.{s}" for s in ("playing", "emergency", "idle", "offline")}
    )


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    d = dictionaries()
    assert set(d["vi"]) == set(d["en"]), set(d["vi"]) ^ set(d["en"])
    for key, text in d["vi"].items():
        assert text.strip() and d["en"][key].strip(), key
        names = set(re.findall(r"\{(\w+)\}", text))
        assert names == set(re.findall(r"\{(\w+)\}", d["en"][key])), key


def test_every_key_the_pages_use_is_translated() -> None:
    d = dictionaries()
    needed = used_keys() | dynamic_keys()
    assert len(needed) > 100
    missing = needed - set(d["vi"])
    assert not missing, sorted(missing)


def test_every_template_renders() -> None:
    templates = pages.Templates.load()
    values = {
        "csrf": "c",
        "user": "null",
        "lang": "vi",
        "page": "x",
        "next": "/",
        "error": "",
        "error_key": "",
        "error_hidden": "hidden",
        "signin_user": "",
        "signin_password": "",
        "signin_hidden": "hidden",
    }
    for name in ("login", "dashboard", "log"):
        html = templates.render(name, values)
        assert "{{" not in html and "}}" not in html, name
        assert html.count("<html") == 1


async def test_demo_sign_in_is_shown_to_this_machine_only(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """`loa demo` sets SIGN_IN: a signed-out browser on loopback sees it on the page GET /
    leads to; a client a trusted proxy forwards from elsewhere does not; nor does a server
    that is not the demo."""
    from loa.config import with_changes
    from loa.web.keys import SIGN_IN

    config = tree_config(tmp_path)
    app = create_app(
        with_changes(config, web=with_changes(config.web, trusted_proxies=("127.0.0.1",)))
    )
    app[SIGN_IN] = ("demo", "pw-<shown>")
    client = await aiohttp_client(app)
    text = await (await client.get("/")).text()  # → /login
    assert 'id="login-demo" class="info-box" >' in text
    assert "<code>demo</code>" in text and "<code>pw-&lt;shown&gt;</code>" in text
    assert "Bản chạy thử trên máy này" in text
    remote = await (await client.get("/", headers={"X-Forwarded-For": "198.51.100.7"})).text()
    assert "pw-&lt;shown&gt;" not in remote and 'id="login-demo" class="info-box" hidden>' in remote
    plain = await aiohttp_client(create_app(tree_config(tmp_path / "other")))
    assert 'id="login-demo" class="info-box" hidden>' in await (await plain.get("/login")).text()
