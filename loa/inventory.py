"""The inventory (zones and endpoints) from the store to the running node: the store is
authoritative after the first run (the config file only seeds an empty store), and every
API edit goes to the store first, then to the node."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from loa.config import EndpointSpec
from loa.relay.core.zones import INHERIT, ZoneAudio, ZoneTree
from loa.relay.node import Node
from loa.store import Endpoint, Store

log = logging.getLogger(__name__)


def spec_of(row: Endpoint) -> EndpointSpec:
    """What the node runs from a store row (the token is matched by its hash)."""
    return EndpointSpec(
        row.id,
        row.name,
        row.zone,
        kind=row.kind,
        address=row.address,
        lat=row.lat,
        lon=row.lon,
        volume=row.volume,
        emergency_volume=row.emergency_volume,
    )


async def load_inventory(node: Node, store: Store) -> None:
    """Give the node exactly the store's zones and endpoints."""
    every = await store.zones.list()
    zones = [(z.id, z.parent) for z in every]
    endpoints = [(spec_of(e), e.token_hash) for e in await store.endpoints.list()]
    sync_inventory(node, zones, endpoints, {z.id: z.audio for z in every})


def sync_inventory(
    node: Node,
    zones: list[tuple[str, str | None]],
    endpoints: list[tuple[EndpointSpec, str | None]],
    audio: Mapping[str, ZoneAudio] | None = None,
) -> None:
    """Make the node's zones and endpoints exactly the store's (the store is authoritative
    after the first run; the config file only seeds an empty store). ``zones`` are in
    parent-first order; ``endpoints`` are (spec, token hash); ``audio``: each zone's own
    packet settings (a zone left out inherits everything; None: left as they are)."""
    wanted = {z for z, _ in zones}
    for zone_id, parent in zones:
        if zone_id not in node.zones:
            node.add_zone(zone_id, parent)
        elif node.zones.parent(zone_id) != parent:
            node.move_zone(zone_id, parent)
        if audio is not None:
            node.set_zone_audio(zone_id, audio.get(zone_id, INHERIT))
    by_id = {spec.id: (spec, token_hash) for spec, token_hash in endpoints}
    for ep in node.poles():
        if ep.id not in by_id:
            log.warning("[ep=%s] in the config file but not in the database: ignored", ep.id)
            node.remove_endpoint(ep.id)
    for spec, token_hash in by_id.values():
        if spec.id in node.endpoints:
            node.update_endpoint(spec, token_hash=token_hash)
        else:
            node.add_endpoint(spec, token_hash=token_hash)
    for zone_id in reversed([z for z in _zone_order(node.zones) if z not in wanted]):
        node.remove_zone(zone_id)


def _zone_order(zones: ZoneTree) -> list[str]:
    """Every zone, each parent before its children."""
    out: list[str] = []

    def walk(zone_id: str) -> None:
        out.append(zone_id)
        for child in zones.children(zone_id):
            walk(child)

    for root in [z for z in zones if zones.parent(z) is None]:
        walk(root)
    return out
