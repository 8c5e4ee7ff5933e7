"""The web pages: dashboard, broadcast log and login rendered from local templates, and the
static files they use (served from this package: no CDN, no build step).

Templates are plain HTML with three kinds of placeholder: ``{{key}}`` is the Vietnamese text
of an i18n key (so a page reads right before any script runs), ``{{=name}}`` a value, both
HTML-escaped, and ``{{>name}}`` another template (the page header). Elements carry
``data-i18n="key"`` so the page's script can switch language."""

from __future__ import annotations

import html
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from loa.web.keys import PAGE_TEMPLATES, SESSION_CSRF, SIGN_IN, USER

STATIC = Path(__file__).parent / "static"
TEMPLATES = STATIC / "templates"
DEFAULT_LANG = "vi"
# Only these folders are served; templates are rendered, never sent as they are.
SERVED = ("css", "js", "i18n", "img")
CONTENT_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([=>]?)([A-Za-z0-9_.]+)\s*\}\}")
# Error codes the login handler may pass instead of a sentence.
LOGIN_ERRORS = (
    "invalid_credentials",
    "unauthorized",
    "rate_limited",
    "session_expired",
    "csrf",
    "forbidden",
)


@dataclass(frozen=True, slots=True)
class Templates:
    """The templates and the default language's dictionary, read once at start."""

    pages: dict[str, str]
    texts: dict[str, str]

    @classmethod
    def load(cls) -> Templates:
        pages = {p.stem: p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*.html")}
        texts = json.loads((STATIC / "i18n" / f"{DEFAULT_LANG}.json").read_text(encoding="utf-8"))
        return cls(pages, texts)

    def render(self, name: str, values: dict[str, Any]) -> str:
        def sub(m: re.Match[str]) -> str:
            kind, key = m.group(1), m.group(2)
            if kind == ">":
                return self.render(key, values)
            text = values[key] if kind == "=" else self.texts[key]
            return html.escape(str(text), quote=True)

        return _PLACEHOLDER.sub(sub, self.pages[name])


def user_json(request: web.Request) -> dict[str, Any] | None:
    """The signed-in user as the pages' scripts see it (the same shape as GET /api/v1/me)."""
    user = request.get(USER)
    return None if user is None else user.as_json()


def _page(request: web.Request, name: str, *, status: int = 200, **values: Any) -> web.Response:
    templates = request.config_dict[PAGE_TEMPLATES]
    values.setdefault("csrf", request.get(SESSION_CSRF) or request.get("csrf") or "")
    values.setdefault("user", json.dumps(user_json(request), ensure_ascii=False))
    values.setdefault("lang", DEFAULT_LANG)
    response = web.Response(
        text=templates.render(name, values),
        content_type="text/html",
        charset="utf-8",
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    # Everything is local: the browser is told to load nothing from anywhere else.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    return response


def safe_next(value: str | None) -> str:
    """Only a path on this site: never '//host' or 'https://…' (an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def render_login(
    request: web.Request,
    *,
    error: str | None = None,
    status: int = 200,
    next_path: str | None = None,
) -> web.Response:
    """The login page; ``error`` is one of LOGIN_ERRORS (shown in the reader's language) or a
    sentence shown as it is. ``next_path`` (where to go after signing in) defaults to the
    ``next`` query parameter; a handler re-rendering a failed POST passes the form's."""
    error_key = f"login.error.{error}" if error in LOGIN_ERRORS else ""
    templates = request.config_dict[PAGE_TEMPLATES]
    if error is None:
        error_text = ""
    elif error_key:
        error_text = templates.texts[error_key]
    else:
        error_text = error
    if next_path is None:
        next_path = request.query.get("next")
    username, password = _sign_in_here(request)
    return _page(
        request,
        "login",
        status=status,
        next=safe_next(next_path),
        error=error_text,
        error_key=error_key,
        error_hidden="" if error else "hidden",
        signin_user=username,
        signin_password=password,
        signin_hidden="" if password else "hidden",
    )


def _sign_in_here(request: web.Request) -> tuple[str, str]:
    """The demo's sign-in details, for a browser on this machine only (the demo prints them
    on its terminal too); ``("", "")`` for anyone else or when there are none."""
    details = request.config_dict.get(SIGN_IN)
    if details is None or not _loopback(request.remote):
        return "", ""
    return details


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _require_user(request: web.Request) -> None:
    if request.get(USER) is None:
        raise web.HTTPSeeOther(f"/login?next={request.rel_url.path_qs}")


async def login_page(request: web.Request) -> web.Response:
    return render_login(request)


async def dashboard_page(request: web.Request) -> web.Response:
    _require_user(request)
    return _page(request, "dashboard", page="dashboard")


async def log_page(request: web.Request) -> web.Response:
    _require_user(request)
    return _page(request, "log", page="log")


async def static_file(request: web.Request) -> web.FileResponse:
    rel = request.match_info["path"]
    parts = Path(rel).parts
    content_type = CONTENT_TYPES.get(Path(rel).suffix.lower())
    if (
        len(parts) < 2
        or parts[0] not in SERVED
        or any(p in ("..", ".") or p.startswith(".") for p in parts)
        or content_type is None
    ):
        raise web.HTTPNotFound()
    path = STATIC.joinpath(*parts)
    if not path.is_file():
        raise web.HTTPNotFound()
    textual = content_type.startswith("text/") or content_type == "application/json"
    headers = {
        "Content-Type": content_type + ("; charset=utf-8" if textual else ""),
        # Small files on an intranet: revalidate every time (ETag), so an upgrade shows at once.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return web.FileResponse(path, headers=headers)


def setup(app: web.Application) -> None:
    """Add the pages and static files to the main app. Idempotent. Public routes (the auth
    middleware must let them through): ``GET /login`` and ``/static/…``."""
    if PAGE_TEMPLATES in app:
        return
    app[PAGE_TEMPLATES] = Templates.load()
    app.router.add_get("/", dashboard_page, name="dashboard")
    app.router.add_get("/log", log_page, name="log_page")
    app.router.add_get("/login", login_page, name="login_page")
    app.router.add_get("/static/{path:.+}", static_file, name="static")
