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

Each zone may also set its packet settings (``ZoneAudio``: packet duration, RFC 2198
redundancy, playout delay); what it leaves unset it inherits from its parent, and the top of
the tree from the tree's ``defaults`` (the config's). Effective settings are cached until a
zone's settings change or a zone moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from loa.config import FRAME_DURATIONS_MS, ZONE_PLAYOUT_DELAY_MS
from loa.errors import BadRequest, Conflict, NotFound


@dataclass(frozen=True, slots=True)
class ZoneAudio:
    """How a zone's packets are made and played; a None field is its parent's.

    ``frame_ms``: the audio in one RTP packet (20, 40 or 60: 1, 2 or 3 Opus frames of 20 ms);
    ``redundancy``: each packet also carries the previous one's audio (RFC 2198);
    ``playout_delay_ms``: D, how long after capture a speaker plays a frame (40..1000)."""

    frame_ms: int | None = None
    redundancy: bool | None = None
    playout_delay_ms: int | None = None

    @classmethod
    def checked(cls, frame_ms: object, redundancy: object, playout_delay_ms: object) -> ZoneAudio:
        """Settings from the outside (store rows, API bodies): ``BadRequest`` naming the field
        unless each is None or allowed."""
        if frame_ms is not None and (
            isinstance(frame_ms, bool) or frame_ms not in FRAME_DURATIONS_MS
        ):
            raise BadRequest(
                f"frame_ms must be one of {', '.join(map(str, FRAME_DURATIONS_MS))} or null "
                f"(the parent's), got {frame_ms!r}",
                field="frame_ms",
            )
        if redundancy is not None and not isinstance(redundancy, bool):
            raise BadRequest(
                f"redundancy must be true, false or null (the parent's), got {redundancy!r}",
                field="redundancy",
            )
        low, high = ZONE_PLAYOUT_DELAY_MS
        if playout_delay_ms is not None and (
            not isinstance(playout_delay_ms, int)
            or isinstance(playout_delay_ms, bool)
            or not low <= playout_delay_ms <= high
        ):
            raise BadRequest(
                f"playout_delay_ms must be an integer {low}..{high} or null (the parent's), "
                f"got {playout_delay_ms!r}",
                field="playout_delay_ms",
            )
        frame = None if frame_ms is None else FRAME_DURATIONS_MS[FRAME_DURATIONS_MS.index(frame_ms)]
        return cls(frame, redundancy, playout_delay_ms)

    def over(self, parent: AudioSettings) -> AudioSettings:
        """These settings, with the parent's where these are None."""
        return AudioSettings(
            parent.frame_ms if self.frame_ms is None else self.frame_ms,
            parent.redundancy if self.redundancy is None else self.redundancy,
            parent.playout_delay_ms if self.playout_delay_ms is None else self.playout_delay_ms,
        )

    def as_json(self) -> dict[str, int | bool | None]:
        return {
            "frame_ms": self.frame_ms,
            "redundancy": self.redundancy,
            "playout_delay_ms": self.playout_delay_ms,
        }


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """A zone's effective packet settings: its own, else inherited (``ZoneTree.audio``)."""

    frame_ms: int
    redundancy: bool
    playout_delay_ms: int

    def as_json(self) -> dict[str, int | bool]:
        return {
            "frame_ms": self.frame_ms,
            "redundancy": self.redundancy,
            "playout_delay_ms": self.playout_delay_ms,
        }


INHERIT = ZoneAudio()
DEFAULT_AUDIO = AudioSettings(FRAME_DURATIONS_MS[0], False, 300)  # opus.frame_ms, relay's D


def _check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{kind} id must be a non-empty string, got {value!r}")
    return value


class ZoneTree:
    """A forest of zones plus endpoint membership, driven by add/remove/move/attach/detach."""

    def __init__(self, defaults: AudioSettings = DEFAULT_AUDIO) -> None:
        self.defaults = defaults  # what the top of the tree inherits: every field set
        self._audio: dict[str, ZoneAudio] = {}  # zone -> its own settings, when it has any
        self._effective: dict[str, AudioSettings] = {}  # zone -> its settings with inheritance
        self._parent: dict[str, str | None] = {}
        self._children: dict[str, dict[str, None]] = {}
        self._members: dict[str, dict[str, None]] = {}  # zone -> its own endpoints
        self._zone_of: dict[str, str] = {}
        self._cache: dict[str, frozenset[str]] = {}  # zone -> endpoints of its subtree

    @classmethod
    def build(
        cls, zones: Iterable[tuple[str, str | None]], defaults: AudioSettings = DEFAULT_AUDIO
    ) -> ZoneTree:
        """A tree from (zone, parent) pairs, each parent listed before its children."""
        tree = cls(defaults)
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
        self._audio.pop(zone_id, None)
        self._effective.pop(zone_id, None)

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
        self._effective.clear()  # the subtree inherits from elsewhere now

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

    # -- packet settings ---------------------------------------------------------------

    def own_audio(self, zone_id: str) -> ZoneAudio:
        """What the zone sets itself (None fields: inherited)."""
        return self._audio.get(self._known(zone_id), INHERIT)

    def set_audio(self, zone_id: str, audio: ZoneAudio) -> bool:
        """Set the zone's own settings; True if that changed anything."""
        if self.own_audio(zone_id) == audio:
            return False
        if audio == INHERIT:
            del self._audio[zone_id]
        else:
            self._audio[zone_id] = audio
        self._effective.clear()  # zone edits are rare; the whole subtree may follow
        return True

    def audio(self, zone_id: str) -> AudioSettings:
        """The zone's settings with inheritance: every field set."""
        found = self._effective.get(zone_id)
        if found is not None:
            return found
        parent = self._parent[self._known(zone_id)]
        inherited = self.defaults if parent is None else self.audio(parent)
        found = self._effective[zone_id] = self.own_audio(zone_id).over(inherited)
        return found

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
