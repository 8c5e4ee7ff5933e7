"""The reports page (``GET /reports``): what each zone and pole played, was asked to play
and how available it was over a period — the figures the source system collects — with CSV
downloads; the page's script reads ``/api/v1/reports/zones`` and ``/reports/endpoints``."""

from __future__ import annotations

from aiohttp import web

from loa.web import pages
from loa.web.keys import USER


async def reports_page(request: web.Request) -> web.Response:
    if request.get(USER) is None:
        raise web.HTTPSeeOther(f"/login?next={request.rel_url.path_qs}")
    return pages._page(request, "reports", page="reports")


def setup(app: web.Application) -> None:
    """Add ``GET /reports`` to the main app (after ``pages.setup``). Idempotent."""
    if "reports_page" in app.router.named_resources():
        return
    pages.setup(app)
    app.router.add_get("/reports", reports_page, name="reports_page")
