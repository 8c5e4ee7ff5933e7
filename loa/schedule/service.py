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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from loa.errors import LoaError
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
    ) -> None:
        self.node = node
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
        now = self._clock()
        for event in self.scheduler.due(now):
            await self._handle(event)
        last = self.scheduler.last_run
        if last is not None:
            await self.store.schedules.set_last_run(last)
        wake = self.scheduler.next_wakeup(now)
        delay = MAX_SLEEP_S if wake is None else min(max(wake - self._clock(), 0.0), MAX_SLEEP_S)
        return delay

    async def _load(self) -> None:
        self._dirty = False
        fresh = Scheduler(last_run=self.scheduler.last_run, on_time_s=self._on_time_s)
        for row in await self.store.schedules.list():
            if row.enabled:
                fresh.add(row.schedule)
        self.scheduler = fresh
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

    async def _audit(
        self, action: str, schedule: Schedule, detail: dict[str, Any], message: str
    ) -> None:
        try:
            await self.store.audit.record(
                CREATED_BY, action, schedule.id, {**detail, "message": message}
            )
        except LoaError as exc:  # the audit trail must not stop the programmes
            log.error("[sch=%s] could not write the audit row: %s", schedule.id, exc)
