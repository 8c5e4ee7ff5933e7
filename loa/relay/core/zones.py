"""The zone tree (province → commune → village, any depth) and which endpoints sit where.

A zone targeted by a broadcast means its whole subtree, so the tree keeps, per zone, the
frozen set of endpoints in its subtree. Those sets are built on demand and cached; attaching
or detaching an endpoint drops the cached sets of its zone and that zone's ancestors only,
and moving a zone drops those of its old and new ancestors. Zone edits are rare, lookups
(every broadcast start) are not.

Rules:
- ids are non-empty strings; a zone's parent must exist before it is added;
- a zone with child zones or with endpoints of its own cannot be removed (``Conflict``),
  so removing never silently orphans anything;
- a zone cannot be moved under itself or under one of its descendants (``BadRequest``);
- an endpoint sits in exactly one zone; attaching it twice is a ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from loa.errors import BadRequest, Conflict, NotFound


def _check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{kind} id must be a non-empty string, got {value!r}")
    return value


class ZoneTree:
    """A forest of zones plus endpoint membership, driven by add/remove/move/attach/detach."""

    def __init__(self) -> None:
        self._parent: dict[str, str | None] = {}
        self._children: dict[str, dict[str, None]] = {}
        self._members: dict[str, dict[str, None]] = {}  # zone -> its own endpoints
        self._zone_of: dict[str, str] = {}
        self._cache: dict[str, frozenset[str]] = {}  # zone -> endpoints of its subtree

    @classmethod
    def build(cls, zones: Iterable[tuple[str, str | None]]) -> ZoneTree:
        """A tree from (zone, parent) pairs, each parent listed before its children."""
        tree = cls()
        for zone_id, parent in zones:
            tree.add(zone_id, parent)
        return tree

    # -- zones -------------------------------------------------------------------------

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._parent

    def __iter__(self) -> Iterator[str]:
        return iter(self._parent)

    def __len__(self) -> int:
        return len(self._parent)

    def _known(self, zone_id: str) -> str:
        if zone_id not in self._parent:
            raise NotFound(f"zone {zone_id!r} does not exist", zone=zone_id)
        return zone_id

    def add(self, zone_id: str, parent: str | None = None) -> None:
        _check_id("zone", zone_id)
        if zone_id in self._parent:
            raise Conflict(f"zone {zone_id!r} already exists", zone=zone_id)
        if parent is not None:
            self._known(parent)
            self._children[parent][zone_id] = None
        self._parent[zone_id] = parent
        self._children[zone_id] = {}
        self._members[zone_id] = {}

    def remove(self, zone_id: str) -> None:
        self._known(zone_id)
        if self._children[zone_id]:
            names = ", ".join(sorted(self._children[zone_id]))
            raise Conflict(
                f"zone {zone_id!r} still has child zones ({names}); move or remove them first",
                zone=zone_id,
            )
        if self._members[zone_id]:
            names = ", ".join(sorted(self._members[zone_id]))
            raise Conflict(
                f"zone {zone_id!r} still has endpoints ({names}); detach them first",
                zone=zone_id,
            )
        parent = self._parent.pop(zone_id)
        if parent is not None:
            del self._children[parent][zone_id]
        del self._children[zone_id], self._members[zone_id]
        self._cache.pop(zone_id, None)

    def move(self, zone_id: str, new_parent: str | None) -> None:
        self._known(zone_id)
        if new_parent is not None:
            self._known(new_parent)
            if self.contains(zone_id, new_parent):
                raise BadRequest(
                    f"cannot move zone {zone_id!r} under {new_parent!r}: "
                    f"{new_parent!r} is inside {zone_id!r}'s subtree",
                    zone=zone_id,
                    parent=new_parent,
                )
        old_parent = self._parent[zone_id]
        if old_parent == new_parent:
            return
        if old_parent is not None:
            self._invalidate(old_parent)
            del self._children[old_parent][zone_id]
        self._parent[zone_id] = new_parent
        if new_parent is not None:
            self._children[new_parent][zone_id] = None
            self._invalidate(new_parent)

    def parent(self, zone_id: str) -> str | None:
        return self._parent[self._known(zone_id)]

    def children(self, zone_id: str) -> tuple[str, ...]:
        return tuple(self._children[self._known(zone_id)])

    def ancestors(self, zone_id: str) -> tuple[str, ...]:
        """Parent first, root last; empty for a root."""
        return self.lineage(zone_id)[1:]

    def lineage(self, zone_id: str) -> tuple[str, ...]:
        """The zone itself, then its ancestors up to the root."""
        out = [self._known(zone_id)]
        parent = self._parent[zone_id]
        while parent is not None:
            out.append(parent)
            parent = self._parent[parent]
        return tuple(out)

    def level(self, zone_id: str) -> int:
        """Depth of the zone: a root is 0, its children 1, and so on."""
        return len(self.lineage(zone_id)) - 1

    def subtree(self, zone_id: str) -> frozenset[str]:
        """The zone and all its descendants."""
        return frozenset(self._walk(self._known(zone_id)))

    def contains(self, ancestor: str, zone_id: str) -> bool:
        """True if ``zone_id`` is ``ancestor`` or lies below it."""
        self._known(ancestor)
        return ancestor in self.lineage(zone_id)

    def _walk(self, zone_id: str) -> list[str]:
        """The subtree in depth-first pre-order (parents before children)."""
        order, stack = [], [zone_id]
        while stack:
            zone = stack.pop()
            order.append(zone)
            stack.extend(self._children[zone])
        return order

    # -- endpoints ---------------------------------------------------------------------

    def attach(self, endpoint_id: str, zone_id: str) -> None:
        _check_id("endpoint", endpoint_id)
        self._known(zone_id)
        if endpoint_id in self._zone_of:
            raise Conflict(
                f"endpoint {endpoint_id!r} is already attached in zone "
                f"{self._zone_of[endpoint_id]!r}",
                endpoint=endpoint_id,
            )
        self._zone_of[endpoint_id] = zone_id
        self._members[zone_id][endpoint_id] = None
        self._invalidate(zone_id)

    def detach(self, endpoint_id: str) -> str:
        """Remove the endpoint; returns the zone it was in."""
        zone_id = self.zone_of(endpoint_id)
        del self._zone_of[endpoint_id], self._members[zone_id][endpoint_id]
        self._invalidate(zone_id)
        return zone_id

    def zone_of(self, endpoint_id: str) -> str:
        try:
            return self._zone_of[endpoint_id]
        except KeyError:
            raise NotFound(
                f"endpoint {endpoint_id!r} is not attached", endpoint=endpoint_id
            ) from None

    def has_endpoint(self, endpoint_id: str) -> bool:
        return endpoint_id in self._zone_of

    def endpoints(self) -> frozenset[str]:
        return frozenset(self._zone_of)

    def endpoints_in(self, zone_id: str) -> frozenset[str]:
        """Every endpoint in the zone's subtree (cached until something below changes)."""
        cached = self._cache.get(self._known(zone_id))
        if cached is not None:
            return cached
        for zone in reversed(self._walk(zone_id)):  # children before parents
            if zone not in self._cache:
                parts = [self._cache[child] for child in self._children[zone]]
                self._cache[zone] = frozenset(self._members[zone]).union(*parts)
        return self._cache[zone_id]

    def resolve(self, zones: Iterable[str], endpoints: Iterable[str]) -> frozenset[str]:
        """Attached endpoints named by a target list: zones (whole subtrees) and single ids.

        Unknown zones raise ``NotFound``; single endpoints that are not attached are left
        out (a speaker that is offline now may attach later)."""
        sets = [self.endpoints_in(zone) for zone in zones]
        singles = [e for e in endpoints if e in self._zone_of]
        return frozenset(singles).union(*sets)

    def targets(self, endpoint_id: str, zones: frozenset[str], endpoints: frozenset[str]) -> bool:
        """True if a target list (zones + single endpoints) reaches this attached endpoint."""
        if endpoint_id in endpoints:
            return True
        return not zones.isdisjoint(self.lineage(self.zone_of(endpoint_id)))

    def _invalidate(self, zone_id: str | None) -> None:
        while zone_id is not None:
            self._cache.pop(zone_id, None)
            zone_id = self._parent[zone_id]
