"""The HTTP Ogg/Opus listen mount: ``GET /listen/{zone}.ogg`` plays what a pole in the zone hears.

One virtual endpoint per listener (``Node.attach_listener``): the router decides what each
listener hears exactly as for a pole in that zone, the broadcast log counts it among
``virtual_listeners``, and connecting or leaving needs no shared per-zone state. The cost is
a 12-byte header rewrite per packet per listener, as for a pole; the Ogg pages cannot be
shared anyway, since each listener's page sequence starts at its own join and skips nothing.

A slow listener never blocks the relay: its ``PacketSink`` (fed by the fan-out, never
awaiting) keeps the Opus payloads and drops those older than ``MAX_AGE_S``. Pages are made
only when the listener's own task writes, so its page sequence and granule positions stay
gapless whatever was dropped. A listener whose socket accepts nothing for ``STALL_S`` is
disconnected.

While nothing is on air for the zone, the stream carries the 20 ms Opus silence packet
(``SILENCE_PACKET``) per 20 ms (players and proxies time out on a silent socket, and a gap
would make a player rebuffer when the next broadcast starts). Silence is filled only when
the stream is more than ``LAG_FRAMES`` behind real time, so it never adds latency to live
audio.

Auth. This is emergency infrastructure on a government intranet, so listening is not public:
a listener presents the admin token or the zone's listen token (``listen_token``: derived
from the admin token, it opens only that zone's mount and gives no control), as
``Authorization: Bearer …`` or ``?token=…`` (players such as ffmpeg, VLC or an ``<audio>``
element cannot set headers). A wrong or missing token is refused before the zone is looked
up, so the mount does not reveal which zones exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable

from aiohttp import web

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.ogg_opus import OggOpusWriter
from loa.codecs.opus import SILENCE_PACKET
from loa.relay.sink import PacketSink
from loa.web.keys import LISTENERS, NODE
from loa.web.middlewares import error_json

log = logging.getLogger(__name__)

MAX_AGE_S = 1.0  # audio waits this long for a slow listener, then goes (oldest first)
LAG_FRAMES = 5  # fill silence once the stream is this many frames behind real time
RESYNC_S = 1.0  # further behind than this (a stalled socket): restart the clock, no flood
STALL_S = 10.0  # a listener that accepts nothing this long is cut off


def listen_token(admin_token: str, zone: str) -> str:
    """The token that opens ``/listen/{zone}.ogg`` and nothing else; changes with the admin
    token. Give it to whoever may listen to that zone (a commune office, a monitoring PC)."""
    digest = hmac.new(admin_token.encode(), f"loa-listen:{zone}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


class Listener:
    """One HTTP listener's sink and Ogg stream; the fan-out feeds ``sink.push``, the
    listener's handler drains ``pages``. Nothing here awaits; time comes in as ``now`` (and
    the sink's ``clock``)."""

    def __init__(
        self, zone: str, now: float, clock: Callable[[], float], *, max_age_s: float = MAX_AGE_S
    ) -> None:
        self.zone = zone
        self.writer = OggOpusWriter(secrets.randbits(32), tags=(f"ZONE={zone}",))
        self.wake = asyncio.Event()
        self.sink = PacketSink(clock, max_age_s=max_age_s, on_push=self.wake.set)
        self.closing = False
        self._start = now
        self._samples = 0  # 48 kHz samples written so far
        self.packets = self.silence = self.resyncs = 0

    def pages(self, now: float) -> bytes:
        """The Ogg pages to send now: every queued packet, then silence if behind real time."""
        out = []
        for payload in self.sink.drain():
            out.append(self.writer.write_packet(payload, FRAME_SAMPLES))
            self._samples += FRAME_SAMPLES
            self.packets += 1
        behind = round((now - self._start) * SAMPLE_RATE) - self._samples
        if behind > RESYNC_S * SAMPLE_RATE:
            self._start = now - self._samples / SAMPLE_RATE
            self.resyncs += 1
        elif behind >= LAG_FRAMES * FRAME_SAMPLES:
            for _ in range(int(behind // FRAME_SAMPLES) - 1):
                out.append(self.writer.write_packet(SILENCE_PACKET, FRAME_SAMPLES))
                self._samples += FRAME_SAMPLES
                self.silence += 1
        return b"".join(out)


def token_of(request: web.Request) -> str:
    """The token a listener presents: ``Authorization: Bearer …``, else ``?token=…``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("token", "")


def may_listen(token: str, zone: str, admin_token: str | None) -> bool:
    """Whether ``token`` opens listening to ``zone``: the admin token, or that zone's own
    listen token (not a parent's, not a child's). No admin token, no listening by token.
    Decided without looking the zone up, so a refusal says nothing about which exist."""
    if admin_token is None or not token:
        return False
    given = token.encode()
    ok_admin = hmac.compare_digest(given, admin_token.encode())
    ok_zone = hmac.compare_digest(given, listen_token(admin_token, zone).encode())
    return ok_admin or ok_zone


async def listen_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    zone = request.match_info["zone"]
    if not may_listen(token_of(request), zone, node.config.admin_token):
        refused = error_json(
            401, "unauthorized", "listening needs ?token= or Authorization: Bearer <token>"
        )
        refused.headers["WWW-Authenticate"] = 'Bearer realm="loa"'
        return refused
    if zone not in node.zones:
        return error_json(404, "not_found", f"zone {zone} not found", zone=zone)
    loop = asyncio.get_running_loop()
    listener = Listener(zone, loop.time(), loop.time)
    resp = web.StreamResponse(
        headers={"Content-Type": "audio/ogg", "Cache-Control": "no-cache, no-store"}
    )
    await resp.prepare(request)
    ep = node.attach_listener(zone, listener.sink.push)
    request.app[LISTENERS].add(listener)
    prefix = f"[listen {zone} ep={ep.id}]"
    log.info("%s connected from %s", prefix, request.remote)
    why = "server shutting down"
    try:
        data = listener.writer.header_pages()
        while not listener.closing:
            listener.wake.clear()
            data += listener.pages(loop.time())
            if data:
                async with asyncio.timeout(STALL_S):
                    await resp.write(data)
                data = b""
            try:
                async with asyncio.timeout(FRAME_SAMPLES / SAMPLE_RATE):
                    await listener.wake.wait()
            except TimeoutError:
                pass
    except TimeoutError:
        why = f"stalled for {STALL_S:g} s"
    except ConnectionError:
        why = "disconnected"
    finally:
        node.detach_listener(ep)
        request.app[LISTENERS].discard(listener)
        log.info(
            "%s %s: %d packets, %d silence, %d dropped, %d resyncs",
            prefix, why, listener.packets, listener.silence, listener.sink.dropped,
            listener.resyncs,
        )  # fmt: skip
    return resp


async def _on_shutdown(app: web.Application) -> None:
    listeners = app[LISTENERS]
    for listener in list(listeners):
        listener.closing = True
        listener.wake.set()


def setup(app: web.Application) -> None:
    """Add ``GET /listen/{zone}.ogg`` to the main app; a second call does nothing."""
    if LISTENERS in app:
        return
    listeners: set[Listener] = set()
    app[LISTENERS] = listeners
    app.router.add_get("/listen/{zone}.ogg", listen_handler, allow_head=False)
    app.on_shutdown.append(_on_shutdown)
