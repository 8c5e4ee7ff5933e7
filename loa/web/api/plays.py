"""When a bulletin played now is heard (``plays`` in the answers of ``POST /bulletins`` for a
priority or emergency bulletin and of ``POST /bulletins/{id}/schedule`` without a time): the
router's rule (``loa.bulletins.when``) on the bulletin's poles, and how long the holders'
current items have left."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from loa.bulletins.mapping import Level
from loa.bulletins.when import outlook
from loa.relay.core.priority import NATIONAL_LEVEL
from loa.relay.node import Node
from loa.streamer.base import Source
from loa.streamer.playlist import Playlist


def _left_s(source: Source) -> float | None:
    """Seconds left in the item a source is playing, if it knows (a file, a tone, a relay or
    silence of fixed length); None for speech still being rendered or a live source."""
    item: Any = source
    if isinstance(source, Playlist):
        if source.index >= len(source.items):
            return None
        item = source.items[source.index]
    left = getattr(item, "left_s", None)
    if isinstance(left, float):
        return left
    duration, position = getattr(item, "duration_s", None), getattr(item, "position_s", None)
    if isinstance(duration, float) and isinstance(position, float):
        return max(0.0, duration - position)
    return None


def plays_json(node: Node, zones: Iterable[str], level: str) -> dict[str, Any]:
    """When a bulletin played now is heard on its poles: ``now`` poles at once, and for the
    others who holds them, until when (``item_end``: the holder's current item, ``end``: the
    holder's end) and, where the holder knows, about when (``at``, Unix time). Reckoned
    before its broadcast starts, for the class its level plays at."""
    targets = node.router.zones.resolve([z for z in zones if z in node.zones], ())
    poles = [ep.id for ep in node.poles() if ep.id in targets]
    priority = Level(level).priority
    seen = outlook(node.router, poles, priority, NATIONAL_LEVEL, priority.interrupts_by_default)
    waits = []
    for w in seen.waits:
        bc = node.broadcasts.get(w.holder)
        left = _left_s(bc.source) if bc is not None and w.at_boundary else None
        waits.append(
            {
                "holder": w.holder,
                "name": bc.log.what if bc is not None else w.holder,
                "endpoints": w.endpoints,
                "until": "item_end" if w.at_boundary else "end",
                "at": None if left is None else round(time.time() + left, 1),
            }
        )
    return {"now": seen.now, "waits": waits}
