"""Emergency repeats: an emergency broadcast that plays again every N seconds, start to start,
until it is cancelled, until a time, or until it expires.

Driven by its owner (the web app's cleanup context, after the node): ``start()``, then
``begin``/``cancel`` from the API, then ``close()``.

The API starts the first play itself (as any broadcast) and hands it to ``begin`` with the
plan of every play (class, origin, targets, the source description, the chime): the repeat
is stored at once (``loa/store/repeats.py``), so a restart keeps it: ``start()`` picks up
every active repeat and plays its next play at its time (at once if that time passed while
the node was down; a repeat whose ``until_at`` passed meanwhile ends as ``done``).

Each later play opens like a bulletin's (``loa/bulletins/service.py``): the attention chime
when the first had it, then "Bản tin phát lúc HH:MM ngày DD/MM/YYYY" with the time the
emergency was issued, in the first target zone's time zone, then the source again (a media
file from its start, a text spoken again, a URL fetched again and checked against the URL
policy again). Plays are ``<repeat id>.<n>``.

Cluster (``leads``, True only while this node leads): only the leader follows repeats. A
repeat begun through another node's API plays its first play there and is stored; the
leader follows it from its next play (``follow_new``, every leader tick), and a new
leader resumes every active repeat (``start``) while the old one, deposed, has closed its
tasks: each play is played by one node. A cancel on any node stops the latest play
wherever it plays (its relayed copy's stop reaches its node).

A repeat ends ``done`` when the next play would begin at or after ``until_at``, when a play
expires (``expires_at`` passed before it got the floor) or when a play cannot be built (its
media or zones are gone: the reason says so); ``cancelled`` when an operator cancels it,
which also stops the play on air. Stopping one play (``DELETE /broadcasts/{id}``) leaves
the repeat running: the next play comes at its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from loa.bulletins.service import DEFAULT_TZ, announcement
from loa.errors import Conflict, LoaError, NotFound
from loa.media import MediaLibrary
from loa.relay.broadcast import Broadcast, State
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.node import Node
from loa.relay.runs import Runs
from loa.store import Store
from loa.store.repeats import RepeatRow
from loa.streamer.base import Source
from loa.streamer.factory import build_source
from loa.streamer.playlist import Playlist
from loa.streamer.targets import TargetPolicy, check_description
from loa.streamer.tone import ChimeSource
from loa.streamer.tts import TtsSource

log = logging.getLogger(__name__)


def new_repeat_id() -> str:
    return "rp-" + secrets.token_hex(6)


def plan_of(spec: BroadcastSpec, source: Any, *, what: str, chime: bool) -> dict[str, Any]:
    """What every play of a repeat is, as stored: the first play's spec and source description.
    ``expires_at`` is Unix time here (the spec's is the loop's clock): give it separately."""
    return {
        "class": spec.priority.name.lower(),
        "origin_zone": spec.origin_zone,
        "target_zones": sorted(spec.target_zones),
        "target_endpoints": sorted(spec.target_endpoints),
        "interrupt": spec.interrupt,
        "exclusive": spec.exclusive,
        "source": source,
        "what": what,
        "chime": chime,
    }


class RepeatService:
    """Owns one task per active repeat: waiting for its next play, or following one."""

    def __init__(
        self,
        node: Node,
        store: Store,
        *,
        media: MediaLibrary | None = None,
        announce: bool = True,
        clock: Callable[[], float] = time.time,
        leads: Callable[[], bool] | None = None,
    ) -> None:
        self.node = node
        self.leads = leads  # cluster: whether this node leads now (None: a single node)
        self.store = store
        self.media = media or MediaLibrary.for_config(node.config)
        self.announce = announce
        self.clock = clock
        self._runs = Runs(node, "repeat")  # repeat id → its task and its broadcast on air

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume every active repeat a previous run left."""
        for row in await self.store.repeats.list(("active",)):
            if row.id not in self._runs:  # followed already: one task each
                log.info("[repeat=%s] resuming; next play at %s", row.id, row.next_at)
                self._spawn(row.id, None)

    async def close(self) -> None:
        """Cancel every task; the rows stay active for the next ``start()``."""
        await self._runs.close()

    async def follow_new(self) -> None:
        """The cluster's leader, every tick: follow the active repeats it does not follow
        yet (begun through another node's API)."""
        for row in await self.store.repeats.list(("active",)):
            if row.id not in self._runs:
                log.info("[repeat=%s] begun elsewhere: following it; next play at %s", row.id,
                         row.next_at)  # fmt: skip
                self._spawn(row.id, None)

    def playing(self) -> dict[str, str]:
        """Repeat id → id of its play on air right now."""
        return self._runs.playing()

    # -- what the API asks ----------------------------------------------------------------
    async def begin(
        self,
        repeat_id: str,
        plan: dict[str, Any],
        first: Broadcast,
        *,
        every_s: float,
        until_at: float | None,
        expires_at: float | None,
        created_by: str,
    ) -> RepeatRow:
        """Store a repeat whose first play ``first`` has just started, and follow it."""
        now = self.clock()
        next_at = now + every_s
        row = RepeatRow(
            id=repeat_id,
            plan={**plan, "expires_at": expires_at},
            every_s=every_s,
            until_at=until_at,
            state="active",
            reason=None,
            plays=(first.id,),
            next_at=None if until_at is not None and next_at >= until_at else next_at,
            issued_at=now,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        row = await self.store.repeats.add(row)
        log.info("[repeat=%s bc=%s] every %.0f s until %s", row.id, first.id, every_s, until_at)
        if self.leads is None or self.leads():
            self._runs.on_air(row.id, first.id)
            self._spawn(row.id, first)
        else:
            log.info("[repeat=%s] the cluster's leader follows it", row.id)
        return row

    async def cancel(self, repeat_id: str, *, reason: str = "cancelled") -> RepeatRow:
        """No further play; the play on air (if any) stops too."""
        row = await self.store.repeats.finish(repeat_id, "cancelled", reason)
        await self._runs.cancel(repeat_id, reason, row.plays[-1] if row.plays else None)
        log.info("[repeat=%s] %s", repeat_id, reason)
        return row

    # -- the runner -----------------------------------------------------------------------
    def _spawn(self, repeat_id: str, first: Broadcast | None) -> None:
        self._runs.spawn(repeat_id, self._run(repeat_id, first))

    async def _run(self, repeat_id: str, bc: Broadcast | None) -> None:
        try:
            while True:
                row = await self.store.repeats.get(repeat_id)
                if row.state != "active":
                    return
                if bc is None:
                    now = self.clock()
                    if row.next_at is None or (row.until_at is not None and now >= row.until_at):
                        await self._end(repeat_id, "done", "until reached")
                        return
                    if row.next_at > now:
                        await asyncio.sleep(row.next_at - now)
                        continue  # read the row again: it may have been cancelled
                    bc = await self._play(row)
                    row = await self._played(row, bc)
                await bc.ended.wait()
                self._runs.off_air(repeat_id, bc.id)
                if bc.state is State.EXPIRED:
                    await self._end(repeat_id, "done", "expired")
                    return
                if bc.state is State.FAILED:
                    log.error("[repeat=%s bc=%s] play failed: %s", row.id, bc.id, bc.log.reason)
                bc = None
        except (Conflict, NotFound) as exc:
            if isinstance(exc, NotFound) and exc.fields.get("repeat") is None:
                await self._end(repeat_id, "done", exc.message)
            return  # otherwise cancelled meanwhile; the canceller stopped what played
        except LoaError as exc:
            log.error("[repeat=%s] cannot play: %s", repeat_id, exc.message)
            await self._end(repeat_id, "done", f"cannot play: {exc.message}")

    async def _played(self, row: RepeatRow, bc: Broadcast) -> RepeatRow:
        next_at: float | None = self.clock() + row.every_s
        if row.until_at is not None and next_at is not None and next_at >= row.until_at:
            next_at = None  # this is the last play
        self._runs.on_air(row.id, bc.id)
        return await self.store.repeats.played(row.id, bc.id, next_at)

    async def _play(self, row: RepeatRow) -> Broadcast:
        plan = row.plan
        zones = [z for z in plan["target_zones"] if z in self.node.zones]
        endpoints = [e for e in plan["target_endpoints"] if e in self.node.endpoints]
        if not zones and not endpoints:
            raise NotFound(f"repeat {row.id}: none of its targets exists any more")
        source = await self._source(row, zones)
        expires_at = plan.get("expires_at")
        spec = BroadcastSpec(
            id=f"{row.id}.{len(row.plays) + 1}",
            priority=Priority[str(plan["class"]).upper()],
            target_zones=frozenset(zones),
            target_endpoints=frozenset(endpoints),
            origin_zone=plan["origin_zone"],
            interrupt=plan["interrupt"],
            exclusive=bool(plan["exclusive"]),
            expires_at=None if expires_at is None else self.node.wall_to_loop(expires_at),
            resumable=source.resumable,
            live=source.live,
        )
        try:
            return await self.node.start_broadcast(
                spec,
                source,
                what=str(plan["what"]),
                source_kind=str(plan["source"]["type"]),
                created_by=row.created_by,
            )
        except BaseException:
            await source.aclose()
            raise

    async def _source(self, row: RepeatRow, zones: list[str]) -> Source:
        desc = row.plan["source"]
        policy = TargetPolicy(self.node.config.relay.url_allow_networks)
        await check_description(desc, policy)
        voice = await self.store.zones.targets_voice(zones, row.plan["target_endpoints"])
        source, _ = build_source(desc, media_path=self.media.path, url_targets=policy, voice=voice)
        items: list[Source] = []
        if row.plan.get("chime"):
            items.append(ChimeSource())
        if self.announce:
            timezone = DEFAULT_TZ
            if zones:
                timezone = (await self.store.zones.get(zones[0])).timezone
            items.append(TtsSource(announcement(row.issued_at, timezone), voice=voice))
        return Playlist([*items, source], name=source.name)

    async def _end(self, repeat_id: str, state: str, reason: str) -> None:
        """A final state, unless a cancel got there first."""
        with contextlib.suppress(Conflict, NotFound):
            await self.store.repeats.finish(repeat_id, state, reason)
            log.info("[repeat=%s] %s: %s", repeat_id, state, reason)
