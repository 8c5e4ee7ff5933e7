"""Who is asking: passwords, login rate limits, page sessions with CSRF, the auth middleware,
and the /login, /logout and /api/v1/me handlers. What they may do once known is the access
policy's (``loa.access``)."""

from __future__ import annotations

import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

# The access policy is used through this module by the handlers that check a user's scope.
from loa.access import ADMIN, User
from loa.access import can_delete_media as can_delete_media
from loa.access import can_see_zone as can_see_zone
from loa.access import can_stop_from as can_stop_from
from loa.access import can_target as can_target
from loa.access import can_use_media as can_use_media
from loa.access import covers_zone as covers_zone
from loa.access import require_admin as require_admin
from loa.access import visible_zones as visible_zones
from loa.errors import BadRequest, Forbidden, Unauthorized
from loa.store import Account, Store
from loa.store.passwords import MIN_PASSWORD as MIN_PASSWORD
from loa.store.passwords import hash_password as hash_password
from loa.store.passwords import hash_password_async, verify_password_async
from loa.store.passwords import verify_password as verify_password
from loa.store.sessions import SESSION_TTL_S
from loa.web import listen
from loa.web.api.bodies import read_login
from loa.web.cors import is_cross_origin_path
from loa.web.keys import LIMITER, SESSION_CSRF, STORE, USER
from loa.web.login_limits import LoginLimiter as LoginLimiter
from loa.web.middlewares import error_json
from loa.web.pages import render_login

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "loa_session"
CSRF_HEADER = "X-CSRF-Token"
PUBLIC_PATHS = frozenset(
    {"/api/v1/speaker", "/api/v1/openapi.json", "/healthz", "/metrics", "/login"}
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WHEP_PATHS = re.compile(r"^/api/v1/whep(?:/[^/]+)?$")


class CsrfError(Forbidden):
    code = "csrf"


# -- login rate limiting: loa.web.login_limits (per account and client, with backoff) ------


# -- accounts (hashing off the loop, audited by the store) -------------------------------------


async def add_user(
    store: Store,
    username: str,
    password: str,
    role: str,
    *,
    zone: str | None = None,
    emergency_right: bool = False,
    actor: str,
    ip: str | None = None,
) -> Account:
    encoded = await hash_password_async(password)
    return await store.users.add(
        username, encoded, role, zone=zone, emergency_right=emergency_right, actor=actor, ip=ip
    )


async def set_password(
    store: Store, username: str, password: str, *, actor: str, ip: str | None = None
) -> Account:
    """A new password; the user's open sessions end (the store does that with the change)."""
    await store.users.get(username)  # NotFound before spending a hash on nobody
    encoded = await hash_password_async(password)
    return await store.users.update(username, password_hash=encoded, actor=actor, ip=ip)


async def ensure_admin(store: Store, admin_token: str | None) -> str | None:
    """First run only (no users at all): create user ``admin`` with a random password and
    return it, for ``loa serve`` to print once; ``admin_token`` becomes admin's API token.
    Later runs return None and change nothing."""
    if await store.users.count():
        return None
    password = secrets.token_urlsafe(12)
    created = await store.users.create_first_admin(await hash_password_async(password), admin_token)
    return password if created else None


# -- the middleware --------------------------------------------------------------------------


def is_public(path: str, method: str = "GET") -> bool:
    """Paths that authenticate themselves or need no user: the speaker socket (device token),
    listen mounts (listen token), Icecast source pushes (Basic auth per mount), static files,
    and the WHIP/WHEP preflights (a browser sends no credentials with OPTIONS)."""
    if path in PUBLIC_PATHS or path.startswith(("/static/", "/listen/")):
        return True
    if method == "OPTIONS" and is_cross_origin_path(path):
        return True
    return method in ("PUT", "SOURCE") and not path.startswith("/api/")


def by_listen_token(request: web.Request) -> bool:
    """A WHEP request with a token that is no API token: it may be a zone's listen token,
    which the WHEP handlers check against the zone (``loa.web.whep``); no user is set."""
    return WHEP_PATHS.match(request.path) is not None and bool(listen.token_of(request))


async def _bearer(store: Store, admin_token: str | None, header: str) -> User:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing Authorization: Bearer <token>")
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return ADMIN
    account = await store.users.by_token(token)
    if account is None:
        raise Unauthorized("invalid or revoked API token")
    return User.of(account)


def metrics_refusal(
    request: web.Request, token: str | None, admin_token: str | None
) -> web.Response | None:
    """``GET /metrics`` with ``web.metrics_token`` set: ``Authorization: Bearer <token>`` or
    ``?token=`` must be it (or the admin token), else this 401. Unset, /metrics stays open."""
    if token is None:
        return None
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        sent = request.query.get("token", "")
    given = sent.strip().encode()
    if given and any(
        hmac.compare_digest(given, good.encode()) for good in (token, admin_token) if good
    ):
        return None
    resp = error_json(
        401, "unauthorized", "/metrics needs the metrics token: Bearer <token> or ?token=<token>"
    )
    resp.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return resp


async def _check_csrf(request: web.Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type == "application/x-www-form-urlencoded":
        sent = str((await request.post()).get("csrf", "")) or None  # multipart: header only
    if sent is None:
        raise CsrfError(f"missing CSRF token: send the {CSRF_HEADER} header (or a csrf field)")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError("wrong CSRF token; reload the page")


def auth_middleware(
    store: Store, admin_token: str | None
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """For ``/api/v1/*``: a bearer API token, the config's admin token, or a session cookie
    (plus CSRF on every non-GET); WHEP may instead carry a zone's listen token, which its
    handlers check (``by_listen_token``). For pages: a session cookie, else 303 to /login.
    Install it on the root app, after the error middleware."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if is_public(path, request.method):
            return await handler(request)
        api = path == "/api/v1" or path.startswith("/api/v1/")
        header = request.headers.get("Authorization")
        if api and header is not None:
            try:
                request[USER] = await _bearer(store, admin_token, header)
            except Unauthorized:
                if not by_listen_token(request):
                    raise
            return await handler(request)
        sid = request.cookies.get(COOKIE)
        found = await store.sessions.get(sid) if sid else None
        if found is None:
            if api and by_listen_token(request):
                return await handler(request)
            if api:
                raise Unauthorized("missing Authorization: Bearer <token> or session cookie")
            target = request.path_qs if request.method in SAFE_METHODS else "/"
            raise web.HTTPSeeOther("/login?next=" + quote(target, safe=""))
        session, account = found
        if request.method not in SAFE_METHODS:
            await _check_csrf(request, session.csrf)
        request[USER] = User.of(account)
        request[SESSION_CSRF] = session.csrf
        return await handler(request)

    return auth


# -- handlers --------------------------------------------------------------------------------


def safe_next(value: str) -> str:
    """``next`` after login must be a path on this site, never another site (open redirect)."""
    parts = urlsplit(value)
    if (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or parts.scheme
        or parts.netloc
        or not value.isprintable()
    ):
        raise BadRequest(f"next must be a local path starting with a single '/', got {value!r}")
    return value


_dummy_hash: str | None = None


async def _check_login(store: Store, username: str, password: str) -> Account | None:
    """The account if the password is right; spends one scrypt either way (no timing oracle
    for which usernames exist)."""
    global _dummy_hash
    account = await store.users.find(username) if username else None
    if account is None:
        _dummy_hash = _dummy_hash or await hash_password_async(secrets.token_urlsafe(12))
        await verify_password_async(password, _dummy_hash)
        return None
    try:
        ok = await verify_password_async(password, account.password_hash)
    except ValueError as exc:
        log.error("user %s: unusable stored password hash: %s", username, exc)
        return None
    return account if ok and not account.disabled else None


async def login(request: web.Request) -> web.StreamResponse:
    """POST /login (form or JSON: username, password, next) → 303 to ``next`` with the
    session cookie; 401 ``bad_credentials``; 429 ``rate_limited`` with Retry-After."""
    store, limiter = request.config_dict[STORE], request.config_dict[LIMITER]
    data = await read_login(request)  # a form or declared JSON; 4xx otherwise
    username = str(data.get("username") or "").strip().lower()[:64]
    password = str(data.get("password") or "")
    target = safe_next(str(data.get("next") or "/"))
    ip = request.remote or "unknown"
    # A browser posting the form without JavaScript asks for HTML: answer with the page.
    form = request.content_type != "application/json" and "text/html" in request.headers.get(
        "Accept", ""
    )
    wait = limiter.check(username, ip, time.monotonic())
    if wait is not None:
        await store.audit.record(username or None, "login.limited", username, None, ip)
        seconds = math.ceil(wait)
        if form:
            page = render_login(request, error="rate_limited", status=429, next_path=target)
            page.headers["Retry-After"] = str(seconds)
            return page
        resp = error_json(
            429,
            "rate_limited",
            f"too many failed logins; try again in {seconds} s",
            retry_after_s=seconds,
        )
        resp.headers["Retry-After"] = str(seconds)
        return resp
    account = await _check_login(store, username, password)
    if account is None:
        limiter.failed(username, ip, time.monotonic())
        await store.audit.record(username or None, "login.failed", username, None, ip)
        if form:
            return render_login(request, error="invalid_credentials", status=401, next_path=target)
        raise Unauthorized("wrong username or password")
    limiter.succeeded(username, ip)
    sid, session = await store.sessions.new(account.username, SESSION_TTL_S)
    await store.audit.record(account.username, "login.ok", account.username, None, ip)
    body = {"user": User.of(account).as_json(), "csrf": session.csrf, "next": target}
    resp = web.json_response(body, status=303, headers={"Location": target})
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/", secure=request.secure)
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout (session + CSRF, checked by the middleware) → 303 to /login."""
    store = request.config_dict[STORE]
    sid = request.cookies.get(COOKIE)
    if sid:
        await store.sessions.end(sid)
    user = request.get(USER)
    await store.audit.record(user.username if user else None, "logout", None, None, request.remote)
    resp = web.Response(status=303, headers={"Location": "/login"})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def me(request: web.Request) -> web.Response:
    """GET /api/v1/me: who I am; ``csrf`` is the token a page sends back on non-GETs."""
    return web.json_response({**request[USER].as_json(), "csrf": request.get(SESSION_CSRF)})


def setup(app: web.Application, store: Store, api: web.Application) -> None:
    """Add POST /login and POST /logout to the root app and GET /me to the API sub-app (call
    before ``app.add_subapp("/api/v1", api)``); the store and a login limiter go in app keys."""
    app[STORE] = store
    app[LIMITER] = LoginLimiter()
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    api.router.add_get("/me", me)
