"""Durable on-air state: what is on air is in the store from its start to its end, and comes
back after a crash (docs/DESIGN.md, "Restart semantics").

- Start: the node calls ``OnAirService.started`` (through the log writer's queue, so a start
  is written before its end); the record (spec, source description, who, when) goes to table
  ``onair`` and the log row is written at once (state ``playing``/``pending``), so the log
  has it even if the process dies a moment later.
- End: ``ended`` writes the log entry and drops the record — except at a shutdown (reason
  ``shutdown``): a restarted server brings it back just as after a crash.
- Alive: every ``alive_every_s`` while anything is on air the rows' ``alive_at`` is set to
  now: after a crash, the interruption began at most that long after the last ``alive_at``.
- Restart (``restore``, before the server listens): each record is decided by ``decide``:
  expired → logged ``expired``; live (WHIP, Icecast) or without a source to rebuild →
  logged ``interrupted`` (its publisher reconnects and starts a new one); an emergency
  replays from its start, preceded by a spoken "issued at HH:MM" in its zone's time zone;
  anything else resumes from its start. A broadcast that comes back keeps its id, request
  and start times; its log row says when it was interrupted and when it resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loa.config import DEFAULT_TZ
from loa.errors import LoaError
from loa.relay.broadcast import Broadcast, LogEntry
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.node import Node
from loa.store import Store
from loa.store.onair import OnAirRow
from loa.streamer.base import Source
from loa.streamer.factory import build_source
from loa.streamer.playlist import Playlist
from loa.streamer.targets import TargetPolicy
from loa.streamer.tone import ChimeSource
from loa.streamer.tts import TtsSource

log = logging.getLogger(__name__)

ALIVE_EVERY_S = 5.0


class Action(StrEnum):
    REPLAY = "replay"  # an emergency: from its start, saying when it was issued
    RESUME = "resume"  # from its start
    EXPIRED = "expired"  # its expires_at passed while the server was down
    INTERRUPTED = "interrupted"  # live (its publisher reconnects) or nothing to rebuild it from


def decide(record: Mapping[str, Any], now: float) -> Action:
    """What a restarted server does with a broadcast that was on air (``now``: Unix time)."""
    expires_at = record["spec"].get("expires_at")
    if expires_at is not None and expires_at <= now:
        return Action.EXPIRED
    if record.get("source") is None or record["spec"].get("live"):
        return Action.INTERRUPTED
    if record["spec"]["class"] == "emergency":
        return Action.REPLAY
    return Action.RESUME


def issued_text(issued_at: float, timezone: str) -> str:
    """What a replayed emergency says first: when it was issued, in the zone's local time."""
    when = datetime.fromtimestamp(issued_at, ZoneInfo(timezone))
    return (
        f"Thông báo khẩn cấp phát lúc {when.hour} giờ {when.minute:02d},"
        f" ngày {when.day} tháng {when.month}."
    )


def record_of(bc: Broadcast, loop_now: float, wall_now: float) -> dict[str, Any]:
    """The JSON kept in table ``onair`` for ``bc``."""
    spec = bc.spec
    expires = None if spec.expires_at is None else wall_now + (spec.expires_at - loop_now)
    return {
        "spec": {
            "class": spec.priority.name.lower(),
            "origin_zone": spec.origin_zone,
            "targets": {
                "zones": sorted(spec.target_zones),
                "endpoints": sorted(spec.target_endpoints),
            },
            "interrupt": spec.interrupt,
            "exclusive": spec.exclusive,
            "expires_at": expires,
            "live": spec.live,
        },
        "source": None if bc.description is None else bc.description.get("source"),
        "chime": bool(bc.description and bc.description.get("chime")),
        "what": bc.log.what,
        "source_kind": bc.log.source,
        "created_by": bc.log.created_by,
        "requested_at": bc.log.requested_at,
    }


class OnAirService:
    def __init__(
        self,
        node: Node,
        store: Store,
        *,
        media_path: Callable[[str], Path],
        url_targets: TargetPolicy | None = None,
        alive_every_s: float = ALIVE_EVERY_S,
        node_id: str | None = None,
    ) -> None:
        self.node = node
        self.node_id = node_id  # cluster: rows are this node's (``OnAirRow.node``)
        self.store = store
        self.media_path = media_path
        self.url_targets = url_targets
        self.alive_every_s = alive_every_s
        self._alive: asyncio.Task[None] | None = None

    # -- while running ----------------------------------------------------------------
    async def started(self, bc: Broadcast, zones: frozenset[str] = frozenset()) -> None:
        loop_now, wall_now = asyncio.get_running_loop().time(), time.time()
        record = record_of(bc, loop_now, wall_now)
        await self.store.log.put(bc.log.as_json() | {"state": bc.state.value}, zones=zones)
        if not bc.state.ended:
            await self.store.onair.put(bc.id, record, bc.log.requested_at, self.node_id)

    async def ended(self, entry: LogEntry, zones: frozenset[str] = frozenset()) -> None:
        await self.store.log.put(entry.as_json(), zones=zones)
        if entry.reason == "shutdown":
            await self.store.onair.alive(self.node_id)  # stays on air: a restart brings it back
        else:
            await self.store.onair.remove(entry.id)

    async def start(self) -> None:
        self._alive = asyncio.create_task(self._keep_alive(), name="loa-onair-alive")

    async def close(self) -> None:
        if self._alive is not None:
            self._alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._alive

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.alive_every_s)
            if not self.node.broadcasts:
                continue  # nothing on air: no row to mark (their ends removed them)
            try:
                await self.store.onair.alive(self.node_id)
            except LoaError as exc:  # the store is away: the next beat tries again
                log.warning("could not mark the on-air broadcasts alive: %s", exc)

    # -- after a restart ----------------------------------------------------------------
    async def restore(self) -> dict[str, Action]:
        """Bring back or close what was on air when the server stopped; what became of each.
        In a cluster, this node's rows only (the leader adopts those of nodes that are gone)."""
        rows = await self.store.onair.all()
        return await self.adopt([r for r in rows if self.node_id is None or r.node == self.node_id])

    async def adopt(self, rows: list[OnAirRow]) -> dict[str, Action]:
        """Bring back or close these on-air records here (a restart's own, or, on a cluster's
        leader, those of a node that is gone); what became of each."""
        done: dict[str, Action] = {}
        for row in rows:
            now = time.time()
            action = decide(row.record, now)
            try:
                if action in (Action.REPLAY, Action.RESUME):
                    await self._bring_back(row.id, row.record, row.alive_at, action, now)
                else:
                    await self._close(row.id, row.record, row.alive_at, action)
            except LoaError as exc:  # its media or targets are gone, a source refuses …
                log.error("[bc=%s] could not be brought back after the restart: %s", row.id, exc)
                await self._close(row.id, row.record, row.alive_at, Action.INTERRUPTED, str(exc))
                action = Action.INTERRUPTED
            except Exception as exc:  # one bad record must not keep the others off air
                log.exception("[bc=%s] could not be brought back after the restart", row.id)
                await self._close(row.id, row.record, row.alive_at, Action.INTERRUPTED, str(exc))
                action = Action.INTERRUPTED
            log.warning("[bc=%s] on air when the server stopped: %s", row.id, action.value)
            done[row.id] = action
        return done

    async def _logged(self, bc_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
        row = await self.store.log.get(bc_id)
        if row is not None:
            return row.as_json()
        spec = record["spec"]
        return LogEntry(
            id=bc_id,
            what=record["what"],
            source=record["source_kind"],
            priority=spec["class"],
            origin_zone=spec["origin_zone"],
            target_zones=list(spec["targets"]["zones"]),
            target_endpoints=list(spec["targets"]["endpoints"]),
            created_by=record["created_by"],
            requested_at=record["requested_at"],
        ).as_json()

    async def _close(
        self,
        bc_id: str,
        record: Mapping[str, Any],
        interrupted_at: float,
        action: Action,
        error: str | None = None,
    ) -> None:
        entry = await self._logged(bc_id, record)
        expires_at = record["spec"].get("expires_at")
        if action is Action.EXPIRED:
            ended, state, reason = min(expires_at, interrupted_at), "expired", "expired"
        else:
            ended, state, reason = interrupted_at, "stopped", "interrupted"
            if error is not None:
                state, reason = "failed", f"interrupted; not brought back: {error}"
        entry |= {
            "ended_at": ended,
            "state": state,
            "reason": reason,
            "interrupted_at": interrupted_at,
            "resumed_at": None,
        }
        await self.store.log.put(entry)
        await self.store.onair.remove(bc_id)

    async def _bring_back(
        self,
        bc_id: str,
        record: Mapping[str, Any],
        interrupted_at: float,
        action: Action,
        now: float,
    ) -> None:
        node, spec = self.node, record["spec"]
        voice = await self.store.zones.targets_voice(
            spec["targets"]["zones"], spec["targets"]["endpoints"]
        )
        source, _ = build_source(
            record["source"], media_path=self.media_path, url_targets=self.url_targets, voice=voice
        )
        items: list[Source] = [source]
        if action is Action.REPLAY:
            zone = spec["origin_zone"] or next(iter(spec["targets"]["zones"]), None)
            timezone = DEFAULT_TZ
            if zone is not None:
                with contextlib.suppress(LoaError):
                    timezone = (await self.store.zones.get(zone)).timezone
            items.insert(0, TtsSource(issued_text(record["requested_at"], timezone), voice=voice))
        if record.get("chime"):
            items.insert(0, ChimeSource())
        if len(items) > 1:
            source = Playlist(items, name=source.name)
        # zones and poles deleted while the server was down are not targeted any more
        zones = frozenset(z for z in spec["targets"]["zones"] if z in node.zones)
        poles = frozenset(e for e in spec["targets"]["endpoints"] if e in node.endpoints)
        if not zones and not poles:
            await source.aclose()
            raise LoaError("none of its targets exists any more")
        expires_at = spec.get("expires_at")
        bc_spec = BroadcastSpec(
            id=bc_id,
            priority=Priority[spec["class"].upper()],
            origin_zone=spec["origin_zone"] if spec["origin_zone"] in node.zones else None,
            target_zones=zones,
            target_endpoints=poles,
            interrupt=spec.get("interrupt"),
            exclusive=bool(spec.get("exclusive")),
            expires_at=None if expires_at is None else node.wall_to_loop(expires_at),
            resumable=source.resumable,
            live=False,
        )
        logged = await self._logged(bc_id, record)
        bc = await node.start_broadcast(
            bc_spec,
            source,
            what=record["what"],
            source_kind=record["source_kind"],
            created_by=record["created_by"],
            description={"source": record["source"], "chime": record.get("chime", False)},
        )
        # before the log writer reads it (start_broadcast queued it without awaiting since)
        bc.log.requested_at = record["requested_at"]
        if logged.get("started_at") is not None:
            bc.log.started_at = logged["started_at"]
        bc.log.preemptions = int(logged.get("preemptions") or 0)
        bc.log.interrupted_at = interrupted_at
        bc.log.resumed_at = now
