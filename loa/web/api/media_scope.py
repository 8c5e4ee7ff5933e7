"""Which media a caller may use: their subtree's and those from above it (``loa.access``).

Every route that names media (a broadcast's source, a schedule's items, a bulletin's
variants) asks here first, so another commune's media are as absent to an operator as an
unknown id: 404 naming it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from loa.access import can_use_media
from loa.errors import NotFound
from loa.web.keys import NODE, STORE, USER


def media_in(description: Any) -> set[str]:
    """The media ids a source description names (media, playlist items, a relay's fallback)."""
    found: set[str] = set()
    if isinstance(description, dict):
        if description.get("type") == "media" and isinstance(description.get("id"), str):
            found.add(description["id"])
        for value in description.values():
            found |= media_in(value)
    elif isinstance(description, list):
        for value in description:
            found |= media_in(value)
    return found


async def check_usable(request: web.Request, media_ids: Iterable[str]) -> None:
    """404 naming the first media id the caller may not use: not in the library, or
    another zone's (not theirs, not from above them). Admins and unscoped users use all."""
    user = request[USER]
    if user.role == "admin" or user.zone is None:
        return
    zones, media = request.config_dict[NODE].zones, request.config_dict[STORE].media
    for media_id in sorted(set(media_ids)):
        try:
            row = await media.get(media_id)
        except NotFound:
            row = None
        if row is None or not can_use_media(user, zones, row.zone):
            raise NotFound(f"media {media_id!r} is not in the library", media=media_id)
