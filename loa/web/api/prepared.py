"""API handlers for prepared emergency messages (the emergency dialog's one-tap choices).

Everyone signed in sees the messages for every zone and those of the zones they see (an
operator of a commune: the commune's and its villages'); only an admin creates, replaces or
deletes them. A message's media must exist in the library (404 naming it), its zone too."""

from __future__ import annotations

import time

from aiohttp import web

from loa.errors import Forbidden, NotFound
from loa.store.prepared import PreparedRow
from loa.web import auth
from loa.web.api import answers
from loa.web.api.bodies import PreparedMessage
from loa.web.api.types import builtins
from loa.web.contract import Routes
from loa.web.keys import NODE, STORE, USER

routes = Routes()


def _admin(request: web.Request) -> None:
    user = request[USER]
    if user.role != "admin":
        raise Forbidden(f"only an admin may edit prepared messages; {user.username} is {user.role}")


@routes.get(
    "/prepared",
    summary="Prepared emergency messages the caller may use",
    tag="broadcasts",
    returns=answers.PreparedList,
)
async def list_prepared(request: web.Request) -> web.Response:
    node, user = request.config_dict[NODE], request[USER]
    rows = await request.config_dict[STORE].prepared.list()
    seen = [
        r.as_json()
        for r in rows
        if r.zone is None or (r.zone in node.zones and auth.can_see_zone(user, node.zones, r.zone))
    ]
    return web.json_response({"prepared": seen})


@routes.route(
    "PUT",
    "/prepared/{id:[a-z0-9][a-z0-9-]{0,39}}",  # ids: a-z, 0-9, '-'; another is 404
    summary="Create or replace a prepared message (admin)",
    tag="broadcasts",
    returns=answers.Prepared,
    errors=(403, 404),
)
async def put_prepared(request: web.Request, body: PreparedMessage) -> web.Response:
    _admin(request)
    prepared_id = request.match_info["id"]
    data = builtins(body)
    store = request.config_dict[STORE]
    if body.zone is not None and body.zone not in request.config_dict[NODE].zones:
        raise NotFound(f"zone {body.zone} not found", zone=body.zone)
    if "media" in data:
        await store.media.get(data["media"])  # 404 naming it when it is not in the library
    row = PreparedRow(
        id=prepared_id,
        title=body.title,
        zone=body.zone,
        text=data.get("text"),
        media=data.get("media"),
        position=body.position,
        updated_by=request[USER].username,
        updated_at=time.time(),
    )
    await store.prepared.put(row)  # created or replaced: the same answer
    return web.json_response(row.as_json())


@routes.delete(
    "/prepared/{id:[a-z0-9][a-z0-9-]{0,39}}",
    summary="Delete a prepared message (admin)",
    tag="broadcasts",
    returns=answers.Prepared,
    errors=(403, 404),
)
async def delete_prepared(request: web.Request) -> web.Response:
    _admin(request)
    row = await request.config_dict[STORE].prepared.delete(request.match_info["id"])
    return web.json_response(row.as_json())
