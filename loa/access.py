"""Who may see and do what: the principal of a request (``User``) and the scope rules.

An admin sees and targets everything. An operator acts inside the subtree of their zone; an
emergency broadcast also needs their emergency right. A viewer reads (their subtree, or
everything when they have no zone) and never broadcasts. Pure functions over a zone tree:
the web layer asks them for every request, the services for what they start."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loa.errors import Forbidden, NotFound
from loa.relay.core.zones import ZoneTree
from loa.store import Account

Zones = ZoneTree | Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class User:
    """The authenticated principal of a request (``request[USER]``)."""

    username: str
    role: str
    zone: str | None
    emergency_right: bool

    @classmethod
    def of(cls, account: Account) -> User:
        return cls(account.username, account.role, account.zone, account.emergency_right)

    def as_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "role": self.role,
            "zone": self.zone,
            "emergency_right": self.emergency_right or self.role == "admin",
        }


ADMIN = User("admin", "admin", None, True)  # who the config's admin_token acts as


def _lineage(zones: Zones, zone_id: str) -> tuple[str, ...]:
    if isinstance(zones, ZoneTree):
        return zones.lineage(zone_id)
    if zone_id not in zones:
        raise NotFound(f"zone {zone_id!r} does not exist", zone=zone_id)
    out, seen = [zone_id], {zone_id}
    parent = zones[zone_id]
    while parent is not None and parent not in seen:
        out.append(parent)
        seen.add(parent)
        parent = zones.get(parent)
    return tuple(out)


def can_see_zone(user: User, zones: Zones, zone_id: str) -> bool:
    """Admins and unscoped viewers see every zone; others their own zone's subtree. An
    unknown zone is seen by no one."""
    if zone_id not in zones:
        return False
    if user.role == "admin" or user.zone is None:
        return True
    return user.zone in _lineage(zones, zone_id)


def covers_zone(user: User, zones: Zones, zone_id: str) -> bool:
    """Whether a broadcast to ``zone_id`` plays in the user's area: the zone is in their
    subtree, or above it (a provincial broadcast plays in every commune)."""
    if can_see_zone(user, zones, zone_id):
        return True
    return user.zone is not None and user.zone in zones and zone_id in _lineage(zones, user.zone)


def can_stop_from(user: User, zones: Zones, bc_id: str, origin_zone: str | None) -> None:
    """Raise ``Forbidden`` naming the origin unless the user's level may stop a broadcast
    that comes from ``origin_zone`` (``None``: the national level): an operator may stop
    what comes from their own subtree, never what a level above them sent."""
    if user.role == "admin":
        return
    if origin_zone is not None and origin_zone in zones and can_see_zone(user, zones, origin_zone):
        return
    where = "the national level" if origin_zone is None else f"zone {origin_zone}"
    raise Forbidden(
        f"broadcast {bc_id} comes from {where}, above {user.username}'s zone {user.zone}: "
        "only that level may stop it",
        origin_zone=origin_zone or "national",
    )


def can_use_media(user: User, zones: Zones, owner: str | None) -> bool:
    """Media of the user's subtree, and media from above it (the top level's, the
    province's): theirs to see and play. A sibling commune's media are not."""
    if user.role == "admin" or user.zone is None or owner is None:
        return True
    return covers_zone(user, zones, owner)


def can_delete_media(user: User, zones: Zones, media_id: str, owner: str | None) -> None:
    """Raise ``Forbidden`` naming the owner unless the media are the user's subtree's: what
    came from above is read-only to them."""
    if user.role == "admin":
        return
    if owner is not None and user.zone is not None and can_see_zone(user, zones, owner):
        return
    where = "the top level" if owner is None else f"zone {owner}"
    raise Forbidden(
        f"media {media_id} belong to {where}, above {user.username}'s zone {user.zone}: "
        "read-only to them",
        media=media_id,
        owner_zone=owner or "national",
    )


def visible_zones(user: User, zones: Zones) -> frozenset[str] | None:
    """The zone ids the user may see, or None for all (e.g. to filter the broadcast log)."""
    if user.role == "admin" or user.zone is None:
        return None
    return frozenset(z for z in zones if user.zone in _lineage(zones, z))


def require_admin(user: User) -> None:
    if user.role != "admin":
        raise Forbidden(f"only an admin may do this; {user.username} is {user.role}")


def can_target(
    user: User,
    zones: Zones,
    target_zones: Iterable[str],
    endpoint_zones: Mapping[str, str],
    *,
    emergency: bool,
) -> None:
    """Raise ``Forbidden`` unless ``user`` may broadcast to these zones and endpoints
    (``endpoint_zones``: endpoint id → its zone). The message names what is out of scope."""
    if user.role == "admin":
        return
    if user.role != "operator" or user.zone is None:
        raise Forbidden(f"{user.username} is a {user.role} and may not broadcast")
    if emergency and not user.emergency_right:
        raise Forbidden(f"{user.username} has no emergency right", missing="emergency_right")
    out = sorted(z for z in target_zones if user.zone not in _lineage(zones, z))
    eps = sorted(e for e, z in endpoint_zones.items() if user.zone not in _lineage(zones, z))
    if out or eps:
        named = [f"zone {z}" for z in out] + [f"endpoint {e}" for e in eps]
        raise Forbidden(
            f"{', '.join(named)} outside {user.username}'s zone {user.zone}",
            zones=out,
            endpoints=eps,
        )
