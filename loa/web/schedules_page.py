"""The schedules page ("lịch phát"): a shell rendered like the dashboard (``pages``); its
script (``js/schedules.js``) does the work against ``/api/v1/schedules``: the list, creating and
editing a programme (library media, a relay URL for a duration, text to speech, silence), RRULE
presets or a raw RRULE, the next runs of a schedule and the conflicts report. The server adds
only whether the user may change schedules at all: a viewer gets a page without the editor."""

from __future__ import annotations

from aiohttp import web

from loa.web import pages
from loa.web.keys import USER


async def schedules_page(request: web.Request) -> web.Response:
    if USER not in request:  # the auth middleware redirects first; this guards a bare app
        raise web.HTTPSeeOther(f"/login?next={request.rel_url.path_qs}")
    user = request[USER]
    may_edit = user.role == "admin" or (user.role == "operator" and user.zone is not None)
    return pages._page(
        request, "schedules", page="schedules", editor_hidden="" if may_edit else "hidden"
    )


def setup(app: web.Application) -> None:
    """Add ``GET /schedules`` to the main app (after ``pages.setup``). Idempotent."""
    if "schedules_page" in app.router.named_resources():
        return
    pages.setup(app)
    app.router.add_get("/schedules", schedules_page, name="schedules_page")
