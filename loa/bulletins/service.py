"""The bulletin service: puts bulletins on air by their Circular 39 level and keeps their state.

Driven by its owner (the web app's cleanup context, after the node): ``start()``, then
``submit``/``schedule``/``cancel`` from the API, then ``close()``.

- normal: lands in the inbox (state ``inbox``); nothing plays until an operator schedules it
  (now or at a time, state ``scheduled``); it then plays once as class ``scheduled``.
- priority: a broadcast of class ``priority`` at once; the router gives it the floor at the
  holder's next item boundary.
- emergency: class ``emergency`` at once (it interrupts), opened by the attention chime when
  ``relay.chime`` is on; with ``repeat_every_s`` it plays again every so many seconds (start
  to start) until cancelled, superseded (a CAP Update referencing it) or expired.

Every play is a Playlist: the chime (emergency), the announcement "Bản tin phát lúc HH:MM
ngày DD/MM/YYYY" (the issue time, in the first target zone's time zone), then each language
variant in the zones' language order (``zones.languages``). Vietnamese is spoken in the first
target zone's voice (North, Central or South, ``zones.voice`` inherited down the tree),
another language in espeak-ng's voice for it. Bulletins rank as the source system's:
national origin, above any local broadcast of the same class.

A text variant in a language espeak-ng has no voice for is refused by ``submit`` (``NoVoice``,
422, naming the language). A play that breaks off on air (a variant that cannot be spoken or
decoded, one stored before that check) makes the bulletin ``failed``, logged; never ``done``.

A bulletin whose ``expires_at`` has passed never starts: it becomes ``expired`` (the router
also drops a broadcast still waiting for the floor when it expires). Cancelling stops the
running broadcast and any repeat to come.

A priority or emergency CAP alert whose ``effective`` time is in the future is held until
then (state ``scheduled``, ``scheduled_at`` = effective); a normal one waits in the inbox as
any other.

Restarts (docs/DESIGN.md, "Restart semantics"): the time a bulletin plays is stored
(``scheduled_at``), so a ``scheduled`` bulletin keeps its time across a restart (one whose
time passed while the server was down plays at once, unless it expired); one that was
``on_air`` plays again from its start (its announcement says when it was issued), and a
repeating emergency goes on repeating.

Cluster (``leads``, True only while this node leads): only the leader plays and follows
bulletins. One submitted or scheduled through another node's API is stored there and
picked up by the leader at its next tick (``follow_new``, every second); a new leader
picks up every bulletin waiting or on air (``start``) while the old one, deposed, has
closed its tasks. A bulletin whose latest play is still on air (the old leader's, relayed
here) is followed, not played again. A cancel on any node stops the latest play wherever
it plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from loa.bulletins.mapping import Level, language_rank
from loa.errors import BulletinRefused, Conflict, LoaError, NotFound
from loa.media import MediaLibrary
from loa.relay.broadcast import Broadcast, State
from loa.relay.core.priority import BroadcastSpec
from loa.relay.node import Node
from loa.relay.runs import Runs
from loa.store import Store
from loa.store.bulletins import FINAL, BulletinRow
from loa.streamer.base import Source
from loa.streamer.file import FileSource
from loa.streamer.playlist import Playlist
from loa.streamer.tone import ChimeSource
from loa.streamer.tts import TtsSource, spoken_languages, voice_for

log = logging.getLogger(__name__)
DEFAULT_TZ = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True, slots=True)
class NewBulletin:
    """A validated bulletin as the API or the CAP ingest hands it over.

    ``variants``: ``{"language", "text"}`` (spoken) or ``{"language", "media"}`` (a media id)."""

    level: Level
    zones: frozenset[str]
    title: str
    variants: tuple[dict[str, str], ...]
    issued_at: float
    expires_at: float | None = None
    repeat_every_s: float | None = None
    source: str = "api"
    cap_sender: str | None = None
    cap_identifier: str | None = None
    effective_at: float | None = None  # CAP: not before then (priority and emergency are held)


def announcement(issued_at: float, timezone: str) -> str:
    """What opens every play: when the bulletin was issued, in the zone's time zone."""
    at = datetime.fromtimestamp(issued_at, ZoneInfo(timezone))
    return f"Bản tin phát lúc {at:%H:%M} ngày {at:%d/%m/%Y}."


def _voice_on_air(language: str, regional: str, spoken: frozenset[str]) -> str:
    """``voice_for``, or for a language without a voice (stored before ``submit`` refused
    them) its primary subtag: espeak-ng refuses it on air and the play fails, reported."""
    try:
        return voice_for(language, regional, spoken)
    except LoaError:
        return language.split("-")[0].lower()


def ordered_variants(
    variants: Iterable[dict[str, str]], languages: Sequence[str]
) -> list[dict[str, str]]:
    """Variants in the zones' language order; unlisted languages last, in their own order."""
    return sorted(variants, key=lambda v: language_rank(v["language"], languages))


class BulletinService:
    """Owns one task per bulletin that is waiting for its time, playing or between repeats."""

    def __init__(
        self,
        node: Node,
        store: Store,
        *,
        media: MediaLibrary | None = None,
        chime: bool | None = None,
        announce: bool = True,
        clock: Callable[[], float] = time.time,
        leads: Callable[[], bool] | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self.leads = leads  # cluster: whether this node leads now (None: a single node)
        self.media = media or MediaLibrary.for_config(node.config)
        self.chime = node.config.relay.chime if chime is None else chime
        self.announce = announce
        self.clock = clock
        self._runs = Runs(node, "bulletin")  # bulletin id → its task and its broadcast on air
        self._next: dict[str, float] = {}  # a repeating emergency between plays → next play

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Pick up what a previous run left (see the module docstring)."""
        for row in await self.store.bulletins.list(("inbox", "scheduled", "on_air")):
            if row.id not in self._runs:  # followed already: one task each
                await self._pick_up(row)

    async def follow_new(self) -> None:
        """The cluster's leader, every tick: play and follow the bulletins it does not
        follow yet (submitted or scheduled through another node's API)."""
        for row in await self.store.bulletins.list(("scheduled", "on_air")):
            if row.id not in self._runs:
                log.info("[bulletin=%s] %s through another node: the leader takes it", row.id,
                         row.state)  # fmt: skip
                await self._pick_up(row, restart=False)

    def _follows(self) -> bool:
        return self.leads is None or self.leads()

    async def _pick_up(self, row: BulletinRow, *, restart: bool = True) -> None:
        """Follow ``row`` from its stored state: after a restart (or on a new leader), or
        (``restart`` False) on the leader taking one submitted through another node."""
        if row.expired(self.clock()):
            await self._settle(row.id, "expired")
        elif row.state == "scheduled" and row.scheduled_at is not None:
            if restart:
                log.info("[bulletin=%s] keeps its time across the restart", row.id)
            self._spawn(row.id, row.scheduled_at)  # a time that passed meanwhile: now
        elif row.state == "scheduled":  # scheduled before its time was stored
            log.warning(
                "[bulletin=%s] its scheduled time was lost in a restart: back to the inbox",
                row.id,
            )
            await self.store.bulletins.transition(row.id, "inbox", expect={"scheduled"})
        elif row.state == "on_air" and row.level == Level.EMERGENCY and row.repeat_every_s:
            if restart:
                log.info("[bulletin=%s] resuming its repeats after a restart", row.id)
            self._spawn(row.id, None)
        elif row.state == "on_air":
            if restart:
                log.warning("[bulletin=%s] was on air when the node stopped: again", row.id)
            self._spawn(row.id, None)

    async def close(self) -> None:
        """Cancel every bulletin task; their states stay for the next ``start()``."""
        await self._runs.close()

    def active(self) -> dict[str, str]:
        """Bulletin id → id of the broadcast it is playing right now."""
        return self._runs.playing()

    def next_plays(self) -> dict[str, float]:
        """Repeating emergency bulletin id → Unix time of its next play (between plays)."""
        return dict(self._next)

    async def sound_of(self, row: BulletinRow) -> Source:
        """What one play of ``row`` reads, built as a play builds it (for a preview)."""
        zones = [z for z in row.zones if z in self.node.zones]
        if not zones:
            raise NotFound(f"bulletin {row.id}: none of its zones exists any more")
        return await self._sound(row, zones)

    # -- what the API asks ---------------------------------------------------------------
    async def speakable(self, variants: Iterable[dict[str, str]]) -> None:
        """``NoVoice`` naming the first text variant whose language espeak-ng cannot speak."""
        spoken = await spoken_languages()
        for v in variants:
            if "text" in v:
                voice_for(v["language"], "vi", spoken)

    async def unspeakable(self, variants: Iterable[dict[str, str]]) -> list[str]:
        """The languages of the text variants espeak-ng cannot speak (a CAP alert's info
        blocks in them are left out, with a warning, rather than the alert refused)."""
        spoken = await spoken_languages()
        out: list[str] = []
        for v in variants:
            if "text" in v:
                try:
                    voice_for(v["language"], "vi", spoken)
                except LoaError:
                    out.append(v["language"])
        return out

    async def submit(self, new: NewBulletin, created_by: str) -> BulletinRow:
        """Store a bulletin; priority and emergency ones start at once. A text variant in a
        language with no voice is refused (``NoVoice``) before anything is stored."""
        await self.speakable(new.variants)
        now = self.clock()
        held = (
            new.level is not Level.NORMAL
            and new.effective_at is not None
            and new.effective_at > now
        )
        row = BulletinRow(
            id="b-" + secrets.token_hex(5),
            level=new.level.value,
            zones=tuple(sorted(new.zones)),
            title=new.title,
            variants=new.variants,
            issued_at=new.issued_at,
            expires_at=new.expires_at,
            repeat_every_s=new.repeat_every_s if new.level is Level.EMERGENCY else None,
            state="inbox" if new.level is Level.NORMAL else "scheduled" if held else "on_air",
            source=new.source,
            cap_sender=new.cap_sender,
            cap_identifier=new.cap_identifier,
            broadcasts=(),
            created_by=created_by,
            created_at=now,
            updated_at=now,
            scheduled_at=new.effective_at if held else None,
        )
        row = await self.store.bulletins.add(row)
        log.info("[bulletin=%s] %s from %s: %s", row.id, row.level, row.source, row.title)
        if new.level is not Level.NORMAL and self._follows():
            self._spawn(row.id, row.scheduled_at)  # held until CAP effective, else now
        return row

    async def schedule(self, bulletin_id: str, at: float | None) -> BulletinRow:
        """Play a normal bulletin from the inbox now (``at=None``) or at Unix time ``at``."""
        row = await self.store.bulletins.get(bulletin_id)
        if row.level != Level.NORMAL:
            raise BulletinRefused(
                f"bulletin {row.id} is {row.level}: it went on air when it arrived; only "
                "normal bulletins wait in the inbox to be scheduled",
                bulletin=row.id,
                reason="not_normal",
            )
        if row.state == "inbox" and row.expired(self.clock()):
            await self._settle(row.id, "expired")
            raise BulletinRefused(
                f"bulletin {row.id} expired; it will not play", bulletin=row.id, reason="expired"
            )
        if at is not None and row.expires_at is not None and at >= row.expires_at:
            raise BulletinRefused(
                f"bulletin {row.id} expires before the chosen time; it would never play",
                bulletin=row.id,
                reason="expires_first",
            )
        row = await self.store.bulletins.transition(
            row.id, "scheduled", expect={"inbox"}, at=self.clock() if at is None else at
        )
        if self._follows():
            self._spawn(row.id, at)
        return row

    async def cancel(self, bulletin_id: str, *, reason: str = "cancelled") -> BulletinRow:
        """Withdraw a bulletin: its running broadcast stops and no repeat follows."""
        row = await self.store.bulletins.transition(
            bulletin_id, "cancelled", expect={"inbox", "scheduled", "on_air"}
        )
        await self._runs.cancel(bulletin_id, reason, row.broadcasts[-1] if row.broadcasts else None)
        log.info("[bulletin=%s] %s", bulletin_id, reason)
        return row

    # -- the runner ------------------------------------------------------------------------
    def _spawn(self, bulletin_id: str, at: float | None) -> None:
        self._runs.spawn(bulletin_id, self._run(bulletin_id, at))

    async def _run(self, bulletin_id: str, at: float | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            if at is not None:
                await asyncio.sleep(max(0.0, at - self.clock()))
            while True:
                row = await self.store.bulletins.get(bulletin_id)
                if row.state in FINAL:
                    return
                if row.expired(self.clock()):
                    await self._settle(row.id, "expired")
                    return
                started = loop.time()
                bc = self._playing_now(row) or await self._play(row)
                if row.state == "scheduled":
                    await self.store.bulletins.transition(row.id, "on_air", expect={"scheduled"})
                await bc.ended.wait()
                self._runs.off_air(row.id, bc.id)
                if bc.state is State.EXPIRED:
                    await self._settle(row.id, "expired")
                    return
                if bc.state is State.FAILED:
                    log.error("[bulletin=%s bc=%s] failed: %s", row.id, bc.id, bc.log.reason)
                    await self._settle(row.id, "failed")
                    return
                if row.level != Level.EMERGENCY or not row.repeat_every_s:
                    await self._settle(row.id, "done")
                    return
                wait = max(0.0, started + row.repeat_every_s - loop.time())
                self._next[row.id] = self.clock() + wait
                try:
                    await asyncio.sleep(wait)
                finally:
                    self._next.pop(row.id, None)
        except (Conflict, NotFound):
            return  # cancelled or superseded meanwhile; the canceller stopped what played
        except LoaError as exc:
            log.error("[bulletin=%s] cannot play: %s", bulletin_id, exc.message)
            await self._settle(bulletin_id, "failed")

    def _playing_now(self, row: BulletinRow) -> Broadcast | None:
        """Its latest play, when it is still on air here: in a cluster, started by another
        node (the previous leader) and relayed here; it is followed, not played again."""
        last = self.node.broadcasts.get(row.broadcasts[-1]) if row.broadcasts else None
        if last is None or last.state.ended:
            return None
        log.info("[bulletin=%s bc=%s] its play is on air: following it", row.id, last.id)
        self._runs.on_air(row.id, last.id)
        return last

    async def _play(self, row: BulletinRow) -> Broadcast:
        zones = [z for z in row.zones if z in self.node.zones]
        if not zones:
            raise NotFound(f"bulletin {row.id}: none of its zones exists any more")
        source = await self._sound(row, zones)
        spec = BroadcastSpec(
            # the n-th play, with a random tail: nobody can know a play's id before it starts
            id=f"{row.id}.{len(row.broadcasts) + 1}-{secrets.token_urlsafe(6)}",
            priority=Level(row.level).priority,
            target_zones=frozenset(zones),
            expires_at=None if row.expires_at is None else self.node.wall_to_loop(row.expires_at),
            resumable=source.resumable,
        )
        await self.store.bulletins.add_broadcast(row.id, spec.id)
        bc = await self.node.start_broadcast(
            spec,
            source,
            what=row.title,  # the log and the pages name it by its title, in its own words
            source_kind="bulletin",
            created_by=row.created_by,
        )
        self._runs.on_air(row.id, bc.id)
        return bc

    async def _sound(self, row: BulletinRow, zones: Sequence[str]) -> Source:
        """The source of one play (a preview reads the same)."""
        languages, timezone = await self._zone_facts(zones)
        voice = await self.store.zones.targets_voice(zones)
        return self._source(row, languages, timezone, voice, await spoken_languages())

    async def _zone_facts(self, zones: Sequence[str]) -> tuple[list[str], str]:
        languages: list[str] = []
        timezone = DEFAULT_TZ
        for n, zone_id in enumerate(zones):
            zone = await self.store.zones.get(zone_id)
            if n == 0:
                timezone = zone.timezone
            languages.extend(lang for lang in zone.languages if lang not in languages)
        return languages or ["vi"], timezone

    def _source(
        self,
        row: BulletinRow,
        languages: Sequence[str],
        timezone: str,
        voice: str,
        spoken: frozenset[str],
    ) -> Source:
        items: list[Source] = []
        if row.level == Level.EMERGENCY and self.chime:
            items.append(ChimeSource())
        if self.announce:
            items.append(TtsSource(announcement(row.issued_at, timezone), voice=voice))
        for v in ordered_variants(row.variants, languages):
            if "media" in v:
                items.append(FileSource(self.media.path(v["media"]), name=v["media"]))
            else:
                speaker = _voice_on_air(v["language"], voice, spoken)
                items.append(TtsSource(v["text"], voice=speaker))
        return Playlist(items, name=row.title)

    async def _settle(self, bulletin_id: str, state: str) -> None:
        """A final state, unless something else (a cancel) got there first."""
        with contextlib.suppress(Conflict):  # a cancel got there first: keep its state
            await self.store.bulletins.transition(
                bulletin_id, state, expect={"inbox", "scheduled", "on_air"}
            )
            log.info("[bulletin=%s] %s", bulletin_id, state)
