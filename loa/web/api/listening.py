"""Where a zone can be heard: ``GET /api/v1/zones/{id}/listen`` gives its Ogg/Opus mount and
its WHEP endpoint as URLs a player takes as they are, each with the zone's listen token (an
HMAC of the admin token: it opens listening to that zone and nothing else). Any user who sees
the zone may ask, viewers included; the answer is what the listen page shows."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from aiohttp import web

from loa.web.api import answers
from loa.web.api.admin import see_zone
from loa.web.api.relay import node_of, user_of
from loa.web.contract import PREFIX, Routes
from loa.web.listen import listen_token

routes = Routes()


def listen_urls(base: str, zone: str, admin_token: str | None) -> dict[str, object]:
    """The zone's listen URLs under ``base`` (``scheme://host``). Without an admin token
    there are no listen tokens: the Ogg mount opens for no one and WHEP needs an API token."""
    token = listen_token(admin_token, zone) if admin_token else None
    whep = f"{base}{PREFIX}/whep?" + urlencode({"zone": zone} | ({"token": token} if token else {}))
    ogg = f"{base}/listen/{quote(zone, safe='')}.ogg?token={token}" if token else None
    return {"zone": zone, "ogg": ogg, "whep": whep, "token": token}


@routes.get(
    "/zones/{id}/listen",
    summary="The zone's listen URLs (Ogg/Opus mount, WHEP) with its listen token",
    tag="zones",
    returns=answers.ListenUrls,
    errors=(404,),
)
async def zone_listen(request: web.Request) -> web.Response:
    node = node_of(request)
    zone = see_zone(user_of(request), node, request.match_info["id"])
    base = f"{request.scheme}://{request.host}"
    return web.json_response(listen_urls(base, zone, node.config.admin_token))
