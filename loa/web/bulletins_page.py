"""The bulletin inbox page (``GET /bulletins``): bulletins by state, schedule a normal one,
cancel any; the page's script does everything through ``/api/v1/bulletins``."""

from __future__ import annotations

from aiohttp import web

from loa.web import pages
from loa.web.keys import USER


async def bulletins_page(request: web.Request) -> web.Response:
    if request.get(USER) is None:
        raise web.HTTPSeeOther(f"/login?next={request.rel_url.path_qs}")
    return pages._page(request, "bulletins", page="bulletins")


def setup(app: web.Application) -> None:
    """Add ``GET /bulletins`` to the main app (after ``pages.setup``, which loads the
    templates). Idempotent."""
    if "bulletins_page" in app.router.named_resources():
        return
    pages.setup(app)
    app.router.add_get("/bulletins", bulletins_page, name="bulletins_page")
