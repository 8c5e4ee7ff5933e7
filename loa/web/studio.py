"""The studio and listen pages: speaking live from a browser (WHIP) and listening to a zone
(WHEP, or the zone's Ogg mount as a fallback).

Both pages are shells rendered like the dashboard (``pages``); their scripts do the work
against the API: ``js/studio.js`` publishes the microphone to ``POST /api/v1/whip`` and
records it, ``js/listen.js`` plays ``POST /api/v1/whep``. The server adds only what a
script cannot know: whether the user may broadcast at all (a viewer gets a page with no
go-live control in it, not a hidden one) and the Ogg mount URLs, each with the listen token
of a zone the user may see (an ``<audio>`` element or VLC cannot send the session cookie's
CSRF header or a bearer token, so the token rides in the URL)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from loa.access import User
from loa.web import auth, pages
from loa.web.keys import NODE, USER
from loa.web.listen import listen_token


def may_broadcast(user: User) -> bool:
    """Admins, and operators (who always have a zone); never viewers."""
    return user.role == "admin" or (user.role == "operator" and user.zone is not None)


def ogg_links(request: web.Request, user: User) -> dict[str, str]:
    """zone id → ``/listen/{zone}.ogg?token=…`` for every zone the user may see; empty when
    the server has no admin token (then the mounts open for no one)."""
    node = request.config_dict[NODE]
    admin_token = node.config.admin_token
    if not admin_token:
        return {}
    return {
        zone: f"/listen/{zone}.ogg?token={listen_token(admin_token, zone)}"
        for zone in sorted(node.zones)
        if auth.can_see_zone(user, node.zones, zone)
    }


def _signed_in(request: web.Request) -> User:
    if USER not in request:  # the auth middleware redirects first; this guards a bare app
        raise web.HTTPSeeOther(f"/login?next={request.rel_url.path_qs}")
    return request[USER]


async def studio_page(request: web.Request) -> web.Response:
    user = _signed_in(request)
    if not may_broadcast(user):
        return pages._page(request, "studio_viewer", page="studio")
    return pages._page(request, "studio", page="studio")


async def listen_page(request: web.Request) -> web.Response:
    user = _signed_in(request)
    links: dict[str, Any] = ogg_links(request, user)
    return pages._page(
        request, "listen", page="listen", ogg=json.dumps(links, separators=(",", ":"))
    )


def setup(app: web.Application) -> None:
    """Add ``GET /studio`` and ``GET /listen`` to the main app (after ``pages.setup``, whose
    templates they use). Idempotent. The Ogg mounts live at ``/listen/{zone}.ogg`` (``listen``): a
    different resource, and public to the auth middleware only under ``/listen/``."""
    if "studio_page" in app.router.named_resources():
        return
    pages.setup(app)
    app.router.add_get("/studio", studio_page, name="studio_page")
    app.router.add_get("/listen", listen_page, name="listen_page")
