"""Icecast source ingest: a studio encoder pushing to ``/{mount}`` becomes a live broadcast.

Protocol. ``PUT /{mount}`` (Icecast ≥ 2.4, what ffmpeg's ``icecast://`` sends) and the legacy
``SOURCE /{mount}`` method (aiohttp's llhttp parser accepts it), Basic auth ``user:password``
from the mount's ``MountSpec``. Source clients send no Content-Length and no chunked encoding:
the body is everything until the connection closes, which HTTP parsers take for an empty
body. After authenticating, the handler therefore takes the raw bytes of the connection over
(``RequestHandler.set_parser``, the hook aiohttp's own WebSocket uses) and only then answers
``100 Continue`` (a PUT that asked for it) or ``200 OK`` (everything else, as Icecast does).
A body with Content-Length or chunked framing is read through aiohttp as usual.

Verified end to end (tests/streamer/test_icecast.py): ffmpeg 5.1 ``-f ogg`` (Opus) and
``-f mp3 -content_type audio/mpeg`` to ``icecast://``, ffmpeg's ``-legacy_icecast 1``
(SOURCE without waiting), and a raw ``SOURCE … HTTP/1.0`` client that waits for ``200 OK``
before streaming as libshout does. Not verified here (no such program installed): BUTT,
Mixxx (both libshout) and Liquidsoap (ocaml-cry). They speak the same two requests and wait
for the server's answer before streaming. A client that sends audio in the same packet as a
request head *without* waiting for any answer is refused 400 by aiohttp's parser before
this module sees it; no known source client does so.

The body becomes frames in ``loa.streamer.icecast.IcecastSource``; this module is the
HTTP side: auth, the mount's single publisher, the raw body, and the broadcast's life.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import re
import secrets

from aiohttp import StreamReader, web

from loa.config import MountSpec
from loa.relay.broadcast import Broadcast
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.streamer.icecast import FORMATS, PROBED, ByteStream, IcecastSource
from loa.web.keys import CONFIG, MOUNTS, NODE
from loa.web.middlewares import error_json

log = logging.getLogger(__name__)

_BODY_LIMIT = 1 << 16  # bytes aiohttp buffers for us before it stops reading the socket
_ICE_TEXT = re.compile(r"[\x00-\x1f\x7f]+")
_ICE_HEADERS = ("ice-name", "ice-description")


class _RawBody:
    """aiohttp's payload-parser hook: every byte after the request head, into a StreamReader."""

    def __init__(self, stream: StreamReader) -> None:
        self.stream = stream

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.stream.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.stream.feed_eof()


class Mounts:
    """The configured mounts and which of them are live; one per app (``MOUNTS``)."""

    def __init__(self, mounts: tuple[MountSpec, ...]) -> None:
        self.specs = {m.name: m for m in mounts}
        self.live: dict[str, str] = {}  # mount name → id of the broadcast it feeds


def _unauthorized(message: str) -> web.Response:
    resp = error_json(401, "unauthorized", message)
    resp.headers["WWW-Authenticate"] = 'Basic realm="loa"'
    return resp


def _check_auth(request: web.Request, mount: MountSpec) -> web.Response | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return _unauthorized(f"mount /{mount.name} needs Basic auth")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return _unauthorized("malformed Basic credentials")
    ok_user = hmac.compare_digest(user.encode(), mount.user.encode())
    ok_password = hmac.compare_digest(password.encode(), mount.password.encode())
    if not (ok_user and ok_password):
        log.warning("[icecast /%s] bad credentials from %s", mount.name, request.remote)
        return _unauthorized(f"wrong user or password for mount /{mount.name}")
    return None


def _content_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _is_audio(ctype: str) -> bool:
    return ctype in FORMATS or ctype in PROBED or ctype.startswith("audio/")


def _ice_text(request: web.Request, header: str) -> str:
    return _ICE_TEXT.sub(" ", request.headers.get(header, "")).strip()[:120]


def describe(mount: MountSpec, request: web.Request) -> str:
    """``what`` in the broadcast log: the mount, then the encoder's ice-name/description."""
    extra = " — ".join(t for t in (_ice_text(request, h) for h in _ICE_HEADERS) if t)
    return f"{mount.name}: {extra}" if extra else mount.name


async def _no_expect(request: web.Request) -> None:
    """``100 Continue`` goes out only after auth succeeded and the body is ours to read."""


async def source_handler(request: web.Request) -> web.StreamResponse:
    mounts = request.app[MOUNTS]
    name = request.match_info["mount"]
    mount = mounts.specs.get(name)
    if mount is None:
        return error_json(404, "not_found", f"no mount /{name}", mount=name)
    if (refused := _check_auth(request, mount)) is not None:
        return refused
    if (holder := mounts.live.get(name)) is not None:
        message = f"mount /{name} is already live ({holder})"
        return error_json(409, "conflict", message, mount=name, broadcast=holder)
    if not _is_audio(ctype := _content_type(request)):
        message = f"Content-Type {ctype!r} is not audio"
        return error_json(415, "unsupported_media_type", message)
    node = request.app[NODE]
    source = IcecastSource(
        _take_body(request),
        name=name,
        format=FORMATS.get(ctype),
        idle_timeout_s=mount.source_timeout_s,
        min_bytes_per_s=mount.source_min_bytes_per_s,
        rate_window_s=mount.source_rate_window_s,
    )
    spec = BroadcastSpec(
        id=f"icecast-{name}-{secrets.token_hex(3)}",
        priority=Priority.parse(mount.priority),
        origin_zone=mount.origin_zone,
        target_zones=frozenset(mount.zones),
        target_endpoints=frozenset(),
        resumable=False,
        live=True,
    )
    mounts.live[name] = spec.id  # before any await: a second source now gets 409
    try:
        bc = await node.start_broadcast(
            spec, source, what=describe(mount, request), source_kind="icecast",
            created_by=f"icecast:{name}",
        )  # fmt: skip
        log.info("[icecast /%s] source connected from %s: %s", name, request.remote, bc.id)
        return await _stream(request, name, bc, source)
    finally:
        if mounts.live.get(name) == spec.id:
            del mounts.live[name]


def _take_body(request: web.Request) -> ByteStream:
    if request.body_exists:  # Content-Length or chunked: aiohttp frames it
        return request.content
    stream = StreamReader(request.protocol, _BODY_LIMIT, loop=asyncio.get_running_loop())
    request.protocol.set_parser(_RawBody(stream))  # type: ignore[arg-type]
    return stream


async def _stream(
    request: web.Request, name: str, bc: Broadcast, source: IcecastSource
) -> web.StreamResponse:
    """Tell the client to go on, wait for the broadcast to end, then hang up."""
    resp = web.StreamResponse(status=200, headers={"Content-Length": "0"})
    resp.force_close()
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    else:
        await resp.prepare(request)  # the 200 that libshout-style clients wait for
    await bc.ended.wait()
    log.info(
        "[icecast /%s] source gone, %s %s: %s (%d bytes in, %d underruns)",
        name, bc.id, bc.log.state, bc.log.reason, source.bytes_in, source.underruns,
    )  # fmt: skip
    if request.transport is not None and not request.transport.is_closing():
        request.transport.close()  # e.g. an operator's stop: the encoder learns it at once
    return resp


async def _on_shutdown(app: web.Application) -> None:
    node = app[NODE]
    for bc_id in list(app[MOUNTS].live.values()):
        if bc_id in node.broadcasts:
            await node.stop_broadcast(bc_id, reason="shutdown")


def setup(app: web.Application) -> None:
    """Add ``PUT``/``SOURCE /{mount}`` for the config's mounts to the main app; a second
    call does nothing."""
    if MOUNTS in app:
        return
    app[MOUNTS] = Mounts(app[CONFIG].mounts)
    for method in ("PUT", "SOURCE"):
        app.router.add_route(method, "/{mount}", source_handler, expect_handler=_no_expect)
    app.on_shutdown.append(_on_shutdown)
