"""The aiohttp application: create_app(config) wires state, cleanup contexts and routes."""

from __future__ import annotations

import time

from aiohttp import web

from loa import __version__
from loa.config import Config

CONFIG = web.AppKey("config", Config)
STARTED = web.AppKey("started", float)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.monotonic() - request.app[STARTED], 3),
        }
    )


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=1024**2)
    app[CONFIG] = config
    app[STARTED] = time.monotonic()
    app.router.add_get("/healthz", healthz)
    return app
