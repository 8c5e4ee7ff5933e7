"""The API's JSON views of the node's live objects: a running broadcast, an endpoint.

The node keeps state and moves packets; how that state reads on the wire (the shape the
API documents, the dashboard draws and the OpenAPI schema names) is decided here."""

from __future__ import annotations

from typing import Any

from loa.access import User, can_see_zone, covers_zone
from loa.relay.broadcast import Broadcast
from loa.relay.core.priority import BroadcastSpec
from loa.relay.node import Endpoint, Node


def sees_broadcast(user: User, node: Node, spec: BroadcastSpec) -> bool:
    """A broadcast that plays in the user's area: to a zone of their subtree or above it, or
    to one of their endpoints."""
    endpoints = [node.endpoints[e] for e in spec.target_endpoints if e in node.endpoints]
    return any(covers_zone(user, node.zones, z) for z in spec.target_zones) or any(
        can_see_zone(user, node.zones, e.spec.zone) for e in endpoints
    )


def scoped(user: User | None, node: Node, data: dict[str, Any]) -> dict[str, Any]:
    """A broadcast's view cut to what ``user`` sees (None: everything): a provincial
    broadcast shown to a commune names only that commune's poles as listeners."""
    if user is None or user.role == "admin" or user.zone is None:
        return data

    def mine(ep_id: str) -> bool:
        ep = node.endpoints.get(ep_id)
        return ep is not None and can_see_zone(user, node.zones, ep.spec.zone)

    if "listeners" in data:
        data["listeners"] = [e for e in data["listeners"] if mine(e)]
    heard = {k: v for k, v in data["heard_s"].items() if mine(k)}
    data["heard_s"] = heard
    data["endpoints_heard"] = sum(1 for v in heard.values() if v > 0)
    return data


def broadcast_json(node: Node, bc: Broadcast) -> dict[str, Any]:
    """A broadcast as ``GET /broadcasts/{id}`` shows it while it runs: its log entry, its
    state, which poles hear it (listener endpoints counted apart) and frames sent."""
    data = bc.log.as_json()
    data["state"] = bc.state.value
    known = not bc.state.ended and bc.id in node.router.broadcasts()
    heard = node.router.listeners(bc.id) if known else ()
    data["listeners"] = sorted(e for e in heard if not node.endpoints[e].listener)
    data["virtual_listeners"] = len(heard) - len(data["listeners"])
    data["frames"] = bc.frames
    return data


def endpoint_json(node: Node, ep: Endpoint) -> dict[str, Any]:
    """An endpoint as ``GET /endpoints/{id}`` shows it: configuration, presence, what it
    plays and its speaker's last status report."""
    return {
        "id": ep.id,
        "name": ep.spec.name,
        "zone": ep.spec.zone,
        "kind": ep.spec.kind,
        "location": {"lat": ep.spec.lat, "lon": ep.spec.lon},
        "online": ep.online,
        "transport": ep.session.transport.name.lower() if ep.session else None,
        "last_seen": ep.last_seen,
        "playing": node.router.holder(ep.id),
        "volume": ep.volume,
        "emergency_volume": ep.emergency_volume,
        "muted": ep.muted,
        "status": ep.status,
        # its last RTCP receiver report: loss, jitter, round trip (None before the first)
        "reception": ep.reception.as_dict() if ep.reception is not None else None,
    }
