"""The aiohttp application: create_app(config) wires state, cleanup contexts and routes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from loa import __version__
from loa.config import Config
from loa.relay.node import Node
from loa.relay.websocket import speaker_handler
from loa.web import middlewares
from loa.web.api import relay as relay_api

CONFIG = web.AppKey("config", Config)
STARTED = web.AppKey("started", float)
NODE = web.AppKey("node", Node)
relay_api.NODE_KEY = NODE


async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.monotonic() - request.app[STARTED], 3),
            "udp_port": node.udp_port if node.transport else None,
            "broadcasts": len(node.broadcasts),
            "endpoints_online": sum(1 for e in node.poles() if e.online),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE]
    active = Counter(b.spec.priority.name.lower() for b in node.broadcasts.values())
    text = node.metrics.render(
        endpoints_online=sum(1 for e in node.poles() if e.online),
        endpoints_total=len(node.poles()),
        active=active,
        drops=node.sessions.drops,
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[middlewares.errors])
    app[CONFIG] = config
    app[STARTED] = time.monotonic()
    app[NODE] = Node(config)

    async def node_ctx(app: web.Application) -> AsyncIterator[None]:
        await app[NODE].start()
        yield
        await app[NODE].close()

    app.cleanup_ctx.append(node_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)

    api = web.Application(
        middlewares=[middlewares.errors, middlewares.bearer_auth(config.admin_token)],
        client_max_size=config.web.max_upload_mb * 1024**2,
    )
    api.router.add_get("/speaker", speaker_handler)
    api.add_routes(relay_api.routes)
    app.add_subapp("/api/v1", api)

    from loa.relay import http_ogg
    from loa.streamer import icecast

    icecast.setup(app)  # PUT|SOURCE /{mount}: studio encoders (Basic auth per [[mounts]])
    http_ogg.setup(app)  # GET /listen/{zone}.ogg (?token= or Bearer)
    return app
