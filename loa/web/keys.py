"""Every key of the web app's state: ``web.AppKey``s (app-wide objects) and
``web.RequestKey``s (what the middlewares learn about a request), in one place.

The objects behind them are built in ``app.create_app`` (and the ``setup`` of the module
that owns each resource); a handler reads them from ``request.config_dict[KEY]``. Types
defined in the web layer itself are named for the type checker only, so that this module
imports no handler module and any of them can import it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from weakref import WeakSet

from aiohttp import web

from loa.access import User
from loa.bulletins.service import BulletinService
from loa.clustering import ClusterMember
from loa.config import Config
from loa.media import MediaLibrary
from loa.relay.node import Node
from loa.repeats import RepeatService
from loa.schedule.service import ScheduleService
from loa.store import Store
from loa.webhooks import Webhooks

if TYPE_CHECKING:
    from loa.web.cors import Cors
    from loa.web.icecast import Mounts
    from loa.web.listen import Listener
    from loa.web.live import StatusPublisher
    from loa.web.login_limits import LoginLimiter
    from loa.web.openapi import Document
    from loa.web.pages import Templates
    from loa.web.speaker import SpeakerPeer
    from loa.web.webrtc import Peers

# -- the app and its services ---------------------------------------------------------------
CONFIG = web.AppKey("config", Config)
STARTED = web.AppKey("started", float)  # time.monotonic() at create_app, for /healthz
NODE = web.AppKey("node", Node)
STORE = web.AppKey("store", Store)
MEDIA = web.AppKey("media", MediaLibrary)
FIRST_RUN_PASSWORD = web.AppKey("first_run_password", str)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
BULLETINS = web.AppKey("bulletins", BulletinService)
PREVIEWS = web.AppKey("previews", asyncio.Semaphore)  # bulletin previews rendering at once
REPEATS = web.AppKey("repeats", RepeatService)
SCHEDULES = web.AppKey("schedule_service", ScheduleService)
CLUSTER = web.AppKey("cluster", ClusterMember)  # only in cluster mode ([cluster])

# -- resources of single handler modules ----------------------------------------------------
PAGE_TEMPLATES: web.AppKey[Templates] = web.AppKey("page_templates")
LIMITER: web.AppKey[LoginLimiter] = web.AppKey("login_limiter")
PUBLISHER: web.AppKey[StatusPublisher] = web.AppKey("status_publisher")
SOCKETS = web.AppKey("status_sockets", WeakSet[web.WebSocketResponse])
LISTENERS: web.AppKey[set[Listener]] = web.AppKey("ogg_listeners")
MOUNTS: web.AppKey[Mounts] = web.AppKey("icecast_mounts")
PEERS: web.AppKey[Peers] = web.AppKey("webrtc_peers")
CORS: web.AppKey[Cors] = web.AppKey("cors_origins")
DOCUMENT: web.AppKey[Document] = web.AppKey("openapi_document")
SPEAKERS: web.AppKey[set[SpeakerPeer]] = web.AppKey("speaker_peers")
# Who may sign in, shown on the login page to a browser on this machine (the demo, a first run).
SIGN_IN = web.AppKey("sign_in", tuple[str, str])

# -- per request ----------------------------------------------------------------------------
USER = web.RequestKey("user", User)
SESSION_CSRF = web.RequestKey("session_csrf", str)  # set only for cookie sessions
