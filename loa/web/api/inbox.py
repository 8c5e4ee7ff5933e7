"""What the bulletin inbox page needs beyond the bulletins themselves: a preview of a bulletin
as it would sound (``GET /bulletins/{id}/audio``, Ogg Opus), and playing a normal one now or
at a time (``POST /bulletins/{id}/schedule``; played now, its answer says when the poles hear
it: ``plays``, from ``loa.web.api.plays``).

The preview is the play's own source (``BulletinService.sound_of``: the chime for an
emergency, the announcement, each variant in the zones' language order, with the voices a play
uses), read as fast as it renders — nothing goes on air — and encoded to Opus in Ogg pages as
it goes, so a player starts before the end is rendered. At most ``MAX_PREVIEW_S`` is rendered,
and at most ``MAX_PREVIEWS`` previews render at once (another is refused, 503).
"""

from __future__ import annotations

import asyncio
import secrets
import time

from aiohttp import web

from loa.codecs import FRAME_S
from loa.codecs.ogg_opus import OggOpusWriter
from loa.codecs.opus import OpusEncoder
from loa.errors import InPast, TooManySessions
from loa.store.bulletins import BulletinRow
from loa.web.api import answers
from loa.web.api.bodies import BulletinAt
from loa.web.api.bulletins import _may_send, _seen, service_of
from loa.web.api.plays import plays_json
from loa.web.api.relay import node_of
from loa.web.contract import Routes
from loa.web.keys import PREVIEWS

routes = Routes()
MAX_PREVIEWS = 4  # rendering at once, each with its own espeak-ng; more wait for none: 503
MAX_PREVIEW_S = 30 * 60.0
_YIELD_EVERY = 50  # frames rendered between two turns of the event loop (1 s of audio)
OGG = {"type": "string", "format": "binary", "description": "Ogg Opus (RFC 7845), mono 48 kHz"}


@routes.get(
    "/bulletins/{id}/audio",
    summary="A bulletin as one play of it would sound, as Ogg Opus (a preview: nothing plays)",
    tag="bulletins",
    content={"audio/ogg": OGG},
    errors=(404, 503),
)
async def bulletin_audio(request: web.Request) -> web.StreamResponse:
    row = await _seen(request, request.match_info["id"])
    previews = request.config_dict[PREVIEWS]
    if previews.locked():
        raise TooManySessions(
            f"{MAX_PREVIEWS} previews are being rendered; try again when one has ended",
            limit=MAX_PREVIEWS,
        )
    async with previews:
        return await _render(request, row)


async def _render(request: web.Request, row: BulletinRow) -> web.StreamResponse:
    node = node_of(request)
    source = await service_of(request).sound_of(row)
    try:
        frame = await source.read()  # a missing voice or media fails here, before any header
        answer = web.StreamResponse(
            headers={"Content-Type": "audio/ogg", "Cache-Control": "no-store"}
        )
        await answer.prepare(request)
        tags = (f"TITLE={row.title}",)  # a file, not a live stream: fuller pages
        writer = OggOpusWriter(secrets.randbits(32), tags=tags, packets_per_page=_YIELD_EVERY)
        encoder = OpusEncoder.from_config(node.config.opus)
        await answer.write(writer.header_pages())
        frames, limit = 0, round(MAX_PREVIEW_S / FRAME_S)
        while frame is not None and frames < limit:
            pages = writer.write_packet(encoder.encode(frame.pcm))
            if pages:
                await answer.write(pages)
            frames += 1
            if frames % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # rendering runs ahead of real time: let others in
            frame = await source.read()
        await answer.write(writer.close())
        await answer.write_eof()
        return answer
    finally:
        await source.aclose()


# -- playing one now or later ----------------------------------------------------------------
@routes.post(
    "/bulletins/{id}/schedule",
    summary="Play a normal bulletin from the inbox now, or at Unix time 'at' (not in the past); "
    "played now, 'plays' says when its poles hear it",
    tag="bulletins",
    returns=answers.ScheduledBulletin,
    errors=(403, 404, 409),
)
async def schedule_bulletin(request: web.Request, body: BulletinAt) -> web.Response:
    at = body.at
    if at is not None and at < time.time() - 60:
        raise InPast("at is in the past; leave it out to play now", field="at")
    row = await _seen(request, request.match_info["id"])
    _may_send(request, row.zones, row.level)
    node = node_of(request)
    plays = plays_json(node, row.zones, row.level) if at is None else None  # before it plays
    row = await service_of(request).schedule(row.id, at)
    return web.json_response({**row.as_json(), "plays": plays})
