"""The scheduler's asyncio adapter: store rows in, broadcasts out, one task owned by the app.

``ScheduleService(node, store)`` loads the enabled schedules and the saved ``last_run`` into
the sans-IO ``Scheduler`` and loops: sleep until ``min(next_wakeup(now), now + 60)`` (or until
``reload()`` after a schedule was created, edited or deleted), call ``due(now)`` with the wall
clock, start a broadcast for each ``Fire`` and ``CatchUp`` in the order given, and save
``last_run``. The minute cap bounds how long a wall-clock jump (NTP) goes unnoticed.

Every event goes to the audit log as user ``scheduler``: ``schedule.start``,
``schedule.catch_up`` (with how late), ``schedule.skip`` (with why) and ``schedule.fail``
(the programme could not be built or started: a media file gone, a target zone deleted).
The broadcast itself is logged like any other, ``created_by = "scheduler"``, named after the
schedule. A schedule that fails is logged and skipped; nothing a schedule holds ends the loop.

Exactly once: each run is claimed in the store (``Schedules.claim_run``, insert-once per
schedule and occurrence) before it starts. A run found claimed already is not started again
when it did start (its broadcast is on this node or has a log row, written as it starts); a
claim whose broadcast never started (its scheduler died between claiming and starting) is
taken over and run. In a cluster (``fence`` gives the leader's token, None when this node
does not lead now) every claim and ``last_run`` carries the token, and the store refuses
an older one: a deposed leader's late step starts nothing and saves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from loa.errors import LoaError, StaleLeader
from loa.media import MediaLibrary
from loa.relay.node import Node
from loa.schedule.scheduler import (
    DEFAULT_ON_TIME_S,
    CatchUp,
    Event,
    Fire,
    Schedule,
    Scheduler,
    Skipped,
)
from loa.store import Store
from loa.streamer.factory import build_source
from loa.streamer.targets import TargetPolicy

log = logging.getLogger(__name__)

CREATED_BY = "scheduler"
MAX_SLEEP_S = 60.0
_RETRY_S = 5.0  # after the store failed us: try again soon, not at the next minute


class ScheduleService:
    """Owned by a cleanup context: ``start()`` after the node, ``close()`` before it."""

    def __init__(
        self,
        node: Node,
        store: Store,
        *,
        media: MediaLibrary | None = None,
        clock: Callable[[], float] = time.time,
        on_time_s: float = DEFAULT_ON_TIME_S,
        fence: Callable[[], int | None] | None = None,
        node_id: str | None = None,
    ) -> None:
        self.node = node
        self.fence = fence  # the leader's fencing token now (cluster mode), else None
        self.node_id = node_id
        self.store = store
        self.media = media or MediaLibrary.for_config(node.config)
        self._clock = clock
        self._on_time_s = on_time_s
        self.scheduler = Scheduler(on_time_s=on_time_s)
        self._wake = asyncio.Event()
        self._dirty = True
        self._task: asyncio.Task[None] | None = None
        self.started = 0  # broadcasts started (on time or caught up), for tests and /metrics
        self.failed = 0
        self.already_run = 0  # runs found claimed and started before (not started again)
        self.refused = 0  # writes the store refused as a deposed leader's

    async def start(self) -> None:
        if self._task is not None:
            return
        self.scheduler = Scheduler(
            last_run=await self.store.schedules.last_run(), on_time_s=self._on_time_s
        )
        await self._load()
        self._task = asyncio.create_task(self._run(), name="loa-scheduler")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def reload(self) -> None:
        """The schedules changed in the store: read them again and judge now."""
        self._dirty = True
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                delay = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store or the node failed us: say so, go on
                log.exception("scheduler step failed; retrying in %g s", _RETRY_S)
                delay = _RETRY_S
            with contextlib.suppress(TimeoutError):  # not wait_for: see loa.speaker.client
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    async def _step(self) -> float:
        """One pass: reload if asked, start what is due, save ``last_run``; the sleep after."""
        if self._dirty:
            await self._load()
        if self.fence is not None and self.fence() is None:
            return _RETRY_S  # not leading (any more): the leader runs what is due
        now = self._clock()
        before = self.scheduler.last_run
        try:
            for event in self.scheduler.due(now):
                await self._handle(event)
        except LoaError:
            # the store failed mid-step: judge the same window again next time (the claims
            # keep what did start from starting twice)
            self.scheduler = self._fresh(before, self.scheduler.schedules())
            raise
        last = self.scheduler.last_run
        if last is not None:
            try:
                await self.store.schedules.set_last_run(last, token=self._token())
            except StaleLeader as exc:
                self.refused += 1
                log.warning("scheduler: last_run not saved: %s", exc.message)
        wake = self.scheduler.next_wakeup(now)
        delay = MAX_SLEEP_S if wake is None else min(max(wake - self._clock(), 0.0), MAX_SLEEP_S)
        return delay

    async def _load(self) -> None:
        self._dirty = False
        rows = await self.store.schedules.list()
        self.scheduler = fresh = self._fresh(
            self.scheduler.last_run, [row.schedule for row in rows if row.enabled]
        )
        log.info("scheduler: %d schedule(s) enabled", len(fresh.schedules()))

    async def _handle(self, event: Event) -> None:
        match event:
            case Fire(schedule=schedule, at=at):
                log.info("%s", event.message)
                await self._start(schedule, at, "schedule.start", {})
            case CatchUp(schedule=schedule, at=at):
                log.warning("%s", event.message)
                await self._start(schedule, at, "schedule.catch_up", {"late_s": event.late_s})
            case Skipped(schedule=schedule, at=at, reason=reason):
                log.warning("%s", event.message)
                detail = {"at": at, "late_s": event.late_s, "reason": reason}
                await self._audit("schedule.skip", schedule, detail, event.message)

    async def _start(
        self, schedule: Schedule, at: float, action: str, detail: dict[str, Any]
    ) -> None:
        spec = schedule.broadcast_spec(at)
        # The occurrence names the run, a random tail makes its id unguessable: nobody can
        # know (let alone take) the id of a run before it starts.
        spec = replace(spec, id=f"{spec.id}-{secrets.token_urlsafe(6)}")
        detail = {"at": at, "broadcast": spec.id, **detail}
        if not await self._claim(schedule, at, spec.id):
            return
        try:
            source, _ = build_source(
                schedule.programme.to_source_description(),
                media_path=self.media.path,
                url_targets=TargetPolicy(self.node.config.relay.url_allow_networks),
                voice=await self.store.zones.targets_voice(
                    spec.target_zones, spec.target_endpoints
                ),
            )
            try:
                await self.node.start_broadcast(
                    spec, source, what=schedule.name, source_kind="playlist", created_by=CREATED_BY
                )
            except BaseException:
                await source.aclose()
                raise
        except (LoaError, OSError, ValueError) as exc:
            self.failed += 1
            why = exc.message if isinstance(exc, LoaError) else str(exc)
            message = f"[sch={schedule.id}] could not start {spec.id}: {why}"
            log.error("%s", message)
            await self._audit("schedule.fail", schedule, {**detail, "error": why}, message)
            return
        self.started += 1
        await self._audit(action, schedule, detail, f"[sch={schedule.id}] started {spec.id}")

    def _fresh(self, last_run: float | None, schedules: Iterable[Schedule]) -> Scheduler:
        fresh = Scheduler(last_run=last_run, on_time_s=self._on_time_s)
        for schedule in schedules:
            fresh.add(schedule)
        return fresh

    def _token(self) -> int | None:
        return self.fence() if self.fence is not None else None

    async def _claim(self, schedule: Schedule, at: float, bc_id: str) -> bool:
        """Claim this run in the store (see the module docstring): True when it is ours to
        start now."""
        token = self._token()
        if self.fence is not None and token is None:
            log.warning("[sch=%s] not leader any more: %s left to the next leader", schedule.id,
                        bc_id)  # fmt: skip
            return False
        claims = self.store.schedules
        try:
            claimed, run = await claims.claim_run(schedule.id, at, bc_id, token=token,
                                                  node=self.node_id)  # fmt: skip
            if not claimed and not await self._ran(run.broadcast):
                log.warning("[sch=%s] %s was claimed (token %s, node %s) but never started: "
                            "running it here", schedule.id, run.broadcast, run.token,
                            run.node)  # fmt: skip
                claimed, run = await claims.claim_run(schedule.id, at, bc_id, token=token,
                                                      node=self.node_id,
                                                      prior=run.broadcast)  # fmt: skip
        except StaleLeader as exc:
            self.refused += 1
            log.warning("[sch=%s] %s not started: %s", schedule.id, bc_id, exc.message)
            return False
        if not claimed:
            self.already_run += 1
            log.info("[sch=%s] this run already started as %s (token %s, node %s): not again",
                     schedule.id, run.broadcast, run.token, run.node)  # fmt: skip
        return claimed

    async def _ran(self, bc_id: str) -> bool:
        """Did this broadcast start? It plays here (maybe relayed, or adopted), or it has
        a log row (written as a broadcast starts, on whichever node)."""
        return bc_id in self.node.broadcasts or await self.store.log.get(bc_id) is not None

    async def _audit(
        self, action: str, schedule: Schedule, detail: dict[str, Any], message: str
    ) -> None:
        try:
            await self.store.audit.record(
                CREATED_BY, action, schedule.id, {**detail, "message": message}
            )
        except LoaError as exc:  # the audit trail must not stop the programmes
            log.error("[sch=%s] could not write the audit row: %s", schedule.id, exc)
