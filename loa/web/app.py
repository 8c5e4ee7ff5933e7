"""The aiohttp application: create_app(config) wires state, cleanup contexts and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from loa import __version__
from loa.bulletins.service import BulletinService
from loa.clustering import ClusterMember, LeaderJob
from loa.config import Config
from loa.inventory import load_inventory
from loa.media import MediaLibrary
from loa.onair import OnAirService
from loa.relay.broadcast import Broadcast, LogEntry
from loa.relay.node import Node
from loa.repeats import RepeatService
from loa.schedule.service import ScheduleService
from loa.store import Store
from loa.streamer.targets import TargetPolicy
from loa.web import (
    auth,
    bulletins_page,
    contract,
    cors,
    icecast,
    listen,
    live,
    middlewares,
    openapi,
    pages,
    proxies,
    reports_page,
    schedules_page,
    speaker,
    studio,
    whep,
    whip,
)
from loa.web.api import admin as admin_api
from loa.web.api import bulletins as bulletins_api
from loa.web.api import elsewhere as elsewhere_api
from loa.web.api import inbox as inbox_api
from loa.web.api import listening as listening_api
from loa.web.api import prepared as prepared_api
from loa.web.api import records as records_api
from loa.web.api import relay as relay_api
from loa.web.api import repeats as repeats_api
from loa.web.api import reports as reports_api
from loa.web.api import schedules as schedules_api
from loa.web.keys import (
    BULLETINS,
    CLUSTER,
    CONFIG,
    FIRST_RUN_PASSWORD,
    MEDIA,
    NODE,
    PREVIEWS,
    PUBLISHER,
    REPEATS,
    SCHEDULES,
    STARTED,
    WEBHOOKS,
)
from loa.web.views import endpoint_json
from loa.webhooks import Webhooks

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    body = {
        "status": "ok",
        "version": __version__,
        "uptime_s": round(time.monotonic() - request.app[STARTED], 3),
        "udp_port": node.udp_port if node.transport else None,
        "broadcasts": len(node.broadcasts),
        "endpoints_online": sum(1 for e in node.poles() if e.online),
    }
    if CLUSTER in request.app:
        body["cluster"] = request.app[CLUSTER].view()
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    # -- edges: web.metrics_token, when set, is required (loa.web.auth.metrics_refusal)
    refusal = auth.metrics_refusal(request, config.web.metrics_token, config.admin_token)
    if refusal is not None:
        return refusal
    # -- end edges
    node = request.app[NODE]
    active = Counter(b.spec.priority.name.lower() for b in node.broadcasts.values())
    text = node.metrics.render(
        endpoints_online=sum(1 for e in node.poles() if e.online),
        endpoints_total=len(node.poles()),
        active=active,
        drops=node.sessions.drops,
        receptions=[(e.id, e.reception) for e in node.poles() if e.reception is not None],
        playout_errors=[
            (e.id, error / 1000)
            for e in node.poles()
            if isinstance(error := e.status.get("playout_error_ms"), int | float)
            and not isinstance(error, bool)
        ],
    )
    if CLUSTER in request.app:
        text += "\n".join(request.app[CLUSTER].metrics()) + "\n"
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def write_log(
    node: Node,
    onair: OnAirService,
    queue: asyncio.Queue[LogEntry | Broadcast],
    webhooks: Webhooks,
) -> None:
    """Record each broadcast as it starts (on air, and its log row) and persist its log entry
    as it ends (with the zones of the poles that heard it, so an operator of a commune sees a
    province-wide broadcast that played there), handing that to the webhooks
    (``broadcast.logged``). One queue keeps a start before its end."""
    while True:
        item = await queue.get()
        try:
            if isinstance(item, Broadcast):
                await onair.started(item)
                continue
            webhooks.logged(item.as_json())
            zones = {node.endpoints[e].spec.zone for e in item.heard_s if e in node.endpoints}
            await onair.ended(item, frozenset(zones))
        except Exception:  # the log must not take the relay down; say so once per entry
            log.exception("[bc=%s] could not write the broadcast log entry", item.id)
        finally:
            queue.task_done()


def create_app(config: Config) -> web.Application:
    store = Store.for_config(config)
    app = web.Application(
        middlewares=[
            # -- edges: the real client behind web.trusted_proxies, before anything reads it
            proxies.middleware(proxies.TrustedProxies(config.web.trusted_proxies)),
            cors.middleware,  # WHIP/WHEP from pages on web.cors_origins
            middlewares.errors,
            auth.auth_middleware(store, config.admin_token),
        ]
    )
    app[CONFIG] = config
    app[STARTED] = time.monotonic()
    app[PREVIEWS] = asyncio.Semaphore(inbox_api.MAX_PREVIEWS)
    cors.setup(app, config.web.cors_origins)
    app[NODE] = node = Node(config)
    app[MEDIA] = media = MediaLibrary.for_config(config)
    app[WEBHOOKS] = webhooks = Webhooks(  # presence intervals: this node's own in a cluster
        store, node_id=config.cluster.node_id if config.cluster is not None else ""
    )
    app[BULLETINS] = service = BulletinService(node, store, media=media)
    app[SCHEDULES] = schedules = ScheduleService(node, store, media=media)
    onair = OnAirService(
        node,
        store,
        media_path=media.path,
        url_targets=TargetPolicy(config.relay.url_allow_networks),
        node_id=config.cluster.node_id if config.cluster is not None else None,
    )
    app[REPEATS] = repeats = RepeatService(node, store, media=media)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        await store.start()
        await store.seed_from_config(config)
        password = await auth.ensure_admin(store, config.admin_token)
        if password:
            app[FIRST_RUN_PASSWORD] = password
            print(f"loa: first run: user 'admin', password {password} (shown once)", flush=True)
        yield
        await store.close()

    async def node_ctx(app: web.Application) -> AsyncIterator[None]:
        await load_inventory(node, store)
        queue: asyncio.Queue[LogEntry | Broadcast] = asyncio.Queue()
        node.on_log = node.on_start = queue.put_nowait
        if CLUSTER in app:  # announce what starts and ends here; relayed ones are not logged
            app[CLUSTER].hook()
        await node.start()
        writer = asyncio.create_task(write_log(node, onair, queue, webhooks), name="loa-log-writer")
        await onair.restore()  # what was on air when the server stopped, before it listens
        await onair.start()
        yield
        await onair.close()
        await node.close()  # ends every broadcast, which queues their log entries
        await queue.join()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def bulletins_ctx(app: web.Application) -> AsyncIterator[None]:
        if config.cluster is None:  # in a cluster: the leader's job (below)
            await service.start()
        yield
        await service.close()  # before the node closes: no repeat starts on a closing node

    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(reports_api.webhooks_ctx)  # presence + outbox, outlives the node
    app.cleanup_ctx.append(node_ctx)
    if config.cluster is not None:
        app[CLUSTER] = member = ClusterMember(config.cluster, node, store)
        member.adopt = onair.adopt  # the leader restarts what a gone node had on air
        # every run claimed and last_run saved with the leader's token: fenced in the store
        schedules.fence, schedules.node_id = (lambda: member.bus.token), member.id
        service.leads = repeats.leads = member.bus.is_leader  # only the leader follows them
        # Only the leader runs the scheduler (rereading the schedules every 2 s: an edit
        # may come through another node's API) and plays and follows bulletins and repeats
        # (taking those begun through another node's API every second). See DESIGN
        # "Cluster protocol".
        seen: list[object] = []

        async def schedules_changed() -> None:  # maybe through another node's API
            rows = await store.schedules.list()
            if seen != [rows]:
                seen[:] = [rows]
                schedules.reload()

        member.jobs += [
            LeaderJob("scheduler", schedules.start, schedules.close, every_s=2.0,
                      tick=schedules_changed),
            LeaderJob("bulletins", service.start, service.close, every_s=1.0,
                      tick=service.follow_new),
            LeaderJob("repeats", repeats.start, repeats.close, every_s=1.0,
                      tick=repeats.follow_new),
        ]  # fmt: skip

        async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
            await member.start()  # after the node: the leader counts its poles
            yield
            await member.close()  # gives up the lease and the presence key at once

        app.cleanup_ctx.append(cluster_ctx)
    app.cleanup_ctx.append(bulletins_ctx)

    async def repeats_ctx(app: web.Application) -> AsyncIterator[None]:
        if config.cluster is None:  # in a cluster: the leader's job (below)
            await repeats.start()  # after the node: it starts plays on it
        yield
        await repeats.close()  # before the node: no play starts on a closing node

    app.cleanup_ctx.append(repeats_ctx)

    async def schedules_ctx(app: web.Application) -> AsyncIterator[None]:
        if config.cluster is None:  # in a cluster: the leader's job (below)
            await schedules.start()  # after the node: it starts broadcasts on it
        yield
        await schedules.close()  # before the node: no programme starts during shutdown

    app.cleanup_ctx.append(schedules_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)

    elsewhere_api.declare_all()  # the contract of routes whose handlers live outside web/api
    api = web.Application(
        middlewares=[middlewares.errors, records_api.audit, contract.declared_queries],
        client_max_size=config.web.max_upload_mb * 1024**2,
    )
    speaker.setup(api)  # GET /api/v1/speaker: the speakers' control channel
    if CLUSTER in app:  # a new assignment sends away the speakers of communes moved away
        app[CLUSTER].on_placement = partial(speaker.redirect_moved, api, app[CLUSTER])
    api.add_routes(relay_api.routes)
    api.add_routes(records_api.routes)
    whip.setup(api)  # POST /api/v1/whip: live from a browser or OBS
    whep.setup(api)  # POST /api/v1/whep: listen in a browser
    auth.setup(app, store, api)
    live.setup(api)  # GET /api/v1/status/ws: the dashboard's live status
    if CLUSTER in app:  # dashboards show every node's poles, whichever node they are on
        member = app[CLUSTER]
        api[PUBLISHER].remote = member.remote_endpoints
        member.status_view = lambda: {
            e.id: endpoint_json(node, e) for e in node.poles() if e.online
        }
    api.add_routes(admin_api.routes)  # zones, endpoints, users and their tokens
    api.add_routes(listening_api.routes)  # GET /zones/{id}/listen: Ogg and WHEP URLs
    api.add_routes(reports_api.routes)  # reports upward, webhook management
    api.add_routes(bulletins_api.routes)  # the bulletin inbox, JSON and CAP 1.2 ingest
    api.add_routes(inbox_api.routes)  # scheduling one (and when it is heard), its preview
    api.add_routes(repeats_api.routes)  # repeating emergencies: list, cancel
    api.add_routes(prepared_api.routes)  # prepared emergency messages
    api.add_routes(schedules_api.routes)  # schedules, their next runs, the conflicts report
    openapi.setup(api)  # GET /api/v1/openapi.json (public), describes every route above
    app.add_subapp("/api/v1", api)
    pages.setup(app)  # /, /log, GET /login, /static/…
    bulletins_page.setup(app)  # GET /bulletins: the inbox page
    schedules_page.setup(app)  # GET /schedules: programmes, presets, next runs, conflicts
    reports_page.setup(app)  # GET /reports: played vs requested, availability, CSV
    studio.setup(app)  # GET /studio (live from the microphone by WHIP), GET /listen (WHEP)
    icecast.setup(app)  # PUT|SOURCE /{mount}: studio encoders (Basic auth per [[mounts]])
    listen.setup(app)  # GET /listen/{zone}.ogg (?token= or Bearer)
    return app
