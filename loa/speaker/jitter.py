"""The speaker's adaptive jitter buffer: RTP packets in, one playout decision per slot out.

Sans-IO: ``push`` and ``pop`` take ``now`` (seconds, any monotonic origin); the playout clock
calls ``pop`` once per slot, a slot lasting what the item it got says (``samples``). Packets
are keyed by an extended (wrap-free) sequence number derived from the 16-bit RTP sequence
relative to the playout point.

**Packet duration.** A slot is one packet, and a packet lasts what its Opus TOC says
(RFC 6716 §3.1: the configuration gives the frame size, code 0/1/2/3 the frame count): 20, 40
or 60 ms as the relay packs its zone's frames. The duration of the latest packet received is
the stream's: it converts the depths below from milliseconds to packets (the target, the
500 ms bound, the trim margin), predicts timestamps, and sizes a lost packet's concealment
and FEC (libopus rebuilds the last 20 ms from the next packet's FEC and conceals the rest).
A packet whose TOC does not parse keeps the previous duration (the decoder will refuse it).
Wait lasts 20 ms whatever the stream, so playout (re)starts on time.

Policy, in the words the counters use:

- **Start / rebuffer.** Playout (re)starts once the first packet waiting has been held for the
  target delay, or what stays buffered behind the first packet already reaches it. The target is
  the most ``wanted_ms`` over the last 5-10 s (``target_ms``), ``wanted_ms`` being
  ``clamp(40, D, max(packet + 4 * jitter_ms, repair room))``, ``jitter_ms`` the RFC 3550
  §6.4.1 estimate (a running mean over the first 16 packets).
  Each slot then takes one sequence number: present → ``Play``; missing but the next one
  present and carrying in-band FEC (``loa.codecs.opus.has_fec``) → ``Recover``; otherwise
  → ``Conceal`` (PLC). ``recovered`` counts frames really rebuilt from FEC, not attempts.
  A missing packet counts in ``lost``; if it shows up afterwards it also counts in ``late``.
- **Retransmission requests.** A packet that arrives beyond the highest one seen opens a gap:
  the missing numbers that can still be played (at or after the playout point, at most
  ``MAX_SPAN_MS`` back) are queued once for a NACK (``take_nacks(now)``), never asked
  again. A gap is asked for once it has stayed open ``2 × jitter`` (at most
  ``MAX_NACK_HOLD_MS``): a packet merely reordered by the network fills it before that.
  A burst that ran the buffer dry (an underrun) is played when the stream resumes, from
  its first missing number, while its retransmissions may still come (NACKed within two
  round trips and 100 ms); a gap left by a dead path is skipped as before.
  A NACKed packet that arrives in time is played and counted in ``retransmitted`` (a subset
  of ``played``: played as sent = ``played - retransmitted - redundant``); its arrival does
  not feed the jitter estimate (it is late by design). The gap before a new segment is not
  asked for.
- **Redundancy (RFC 2198).** ``fill`` takes a redundant copy of an older packet (a RED
  block, unwrapped by the receive path after its packet's ``push``): it takes the slot if
  that is still missing and can still be played, so a gap it fills is never NACKed; played,
  it counts in ``redundant`` (a subset of ``played``). A copy of a packet already held,
  played or past its slot is ignored.
- **Underrun.** A slot that finds the buffer empty does not consume a sequence number: the
  stream has paused (nothing on air) or stalled, and ``pop`` answers ``Wait`` until the buffer
  is refilled to the target. This is how the depth grows when the jitter grows, and why an
  idle gap (the relay sends nothing, RTP sequence continues, timestamp jumps) costs nothing.
- **Discontinuity.** A packet with the marker bit or a timestamp more than 1 s away from what
  its sequence number predicts resets the jitter estimate's reference. If playout is waiting
  it also starts a new segment: playout resumes at that packet and the sequence gap before
  it is not loss. A marker packet whose sequence is outside the window (a renumbered stream)
  flushes the buffer and restarts at it; without the marker, two consecutive packets are
  needed to accept such a jump (RFC 3550 A.1 probation), single strays are counted.
- **Latency trim and bound.** If the span stays more than two packets above the target for
  five slots, one packet is skipped (``dropped``); a packet more than 500 ms ahead of the
  playout point pushes the oldest out (present ones ``dropped``, missing ones ``lost``).
- ``flush`` (the ``stop`` command) drops everything buffered; for 0.3 s after, packets
  without the marker bit are taken for the flushed audio still in flight and ``dropped``.

Invariants the tests check: ``received + filled == played + late + dropped + len(buffer)``
(``filled``: redundant copies taken) and
``played + recovered + concealed`` equals the slots that produced audio;
``retransmitted + redundant <= played``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from loa.codecs import FRAME_SAMPLES, SAMPLE_RATE
from loa.codecs.opus_packet import has_fec, packet_samples
from loa.codecs.rtp import seq_add, seq_diff, ts_diff

MIN_TARGET_MS = 40.0
PLAYOUT_DELAY_MS = 300.0  # the budget D the target may grow to (the welcome says it)
REPAIR_CALM_S = 10.0  # after this long without a gap, no room is kept for retransmissions
# The target is the most wanted over the last one or two such windows: the noise of the
# jitter and round-trip estimates neither inserts frames nor skips them.
TARGET_WINDOW_S = 5.0
JITTER_GAIN = 16  # RFC 3550's 1/16, after a running mean over the stream's first samples
GROW_AFTER_SLOTS = 5
MAX_SPAN_MS = 500  # buffered at most (in packets: 25 of 20 ms, 12 of 40 ms, 8 of 60 ms)
MAX_MISORDER = 100  # a packet this far behind the playout point is late, beyond is a stray
MAX_DROPOUT = 3000  # a forward jump beyond 60 s needs probation (or the marker bit)
TS_JUMP = SAMPLE_RATE  # 1 s off the predicted timestamp is a discontinuity
TRIM_AFTER_SLOTS = 5
TRIM_MARGIN_PACKETS = 2
STALE_HOLDOFF_S = 0.3
MAX_NACK_HOLD_MS = 60.0  # a gap open this long is asked for whatever the jitter
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Play:
    """Decode ``payload`` normally (``samples``: what its TOC says it lasts)."""

    seq: int
    timestamp: int
    payload: bytes
    marker: bool = False
    retransmitted: bool = False  # it came after a NACK asked for it
    redundant: bool = False  # a redundant copy (RFC 2198) carried by a later packet
    samples: int = FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class Recover:
    """The packet for this slot is missing: rebuild its ``samples`` from ``next_payload``'s
    in-band FEC (``OpusDecoder.decode_fec(next_payload, samples)``)."""

    seq: int
    next_payload: bytes
    samples: int = FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class Conceal:
    """The packet for this slot and the next are missing: conceal ``samples`` (PLC)."""

    seq: int
    samples: int = FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class Stretch:
    """No packet is used: conceal one packet's ``samples`` so the buffer deepens towards a
    higher target."""

    samples: int = FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to play: before the first packet, while (re)buffering or after an underrun."""

    underrun: bool = False  # True on the slot where a playing stream ran dry
    samples: int = FRAME_SAMPLES  # 20 ms: how soon to ask again


PlayoutItem = Play | Recover | Conceal | Stretch | Wait
_WAIT = Wait()
_UNDERRUN = Wait(underrun=True)


@dataclass(frozen=True, slots=True)
class JitterStats:
    received: int
    played: int
    retransmitted: int
    redundant: int
    lost: int
    recovered: int
    concealed: int
    nacked: int
    late: int
    duplicates: int
    dropped: int
    strays: int
    underruns: int
    restarts: int
    stretched: int
    jitter_ms: float
    buffer_ms: float
    target_ms: float


@dataclass(slots=True)
class _Entry:
    timestamp: int
    payload: bytes
    marker: bool
    samples: int
    nacked: bool = False
    redundant: bool = False


class JitterBuffer:
    """Driven by the receive path (``push``) and the playout clock (``pop``, once per slot)."""

    def __init__(self, playout_delay_ms: float = PLAYOUT_DELAY_MS) -> None:
        if not MIN_TARGET_MS <= playout_delay_ms <= 5000:
            raise ValueError(f"playout delay must be 40..5000 ms, got {playout_delay_ms}")
        self.playout_delay_ms = playout_delay_ms
        self._rtt_s = 0.0
        self._rtt_samples = 0
        self._gap_at: float | None = None  # when the last gap was NACKed (any segment)
        self._burst = 0  # the longest gap (frames) NACKed since the link was last calm
        self._clock = 0.0  # the latest ``now`` seen
        # the most wanted target in this window and the one before (TARGET_WINDOW_S each)
        self._window_at: float | None = None
        self._window_max = self._previous_max = 0.0
        self.stretched = 0  # concealment frames inserted to deepen the buffer
        # gaps are queued for NACKs; off (no NACKs: disabled, or audio not on UDP), no
        # repair room is started either
        self.asking = True
        # synchronised playout holds the depth at D minus the path's delay (it says when each
        # frame is heard): no growing or trimming here, and the span may reach D
        self.synced = False
        self.received = self.played = self.lost = self.recovered = self.concealed = 0
        self.retransmitted = self.nacked = 0
        self.redundant = self.filled = 0  # redundant copies played / taken into the buffer
        self._nacks: list[tuple[int, float]] = []  # (extended seq, gap seen at), not yet asked
        self.late = self.duplicates = self.dropped = self.strays = 0
        self.underruns = self.restarts = 0
        self._buf: dict[int, _Entry] = {}
        self._samples = FRAME_SAMPLES  # the stream's packet duration (the latest packet's)
        self._span = MAX_SPAN_MS * SAMPLE_RATE // 1000 // FRAME_SAMPLES  # in packets
        self._forget()

    def _forget(self) -> None:
        """Stream state back to 'no packet seen yet'; counters are untouched."""
        self._buf.clear()
        self._next: int | None = None  # extended seq of the next slot, reference for unwrapping
        self._playing = False
        self._resync = True  # on (re)start, begin at the oldest packet: the gap is not loss
        self._floor: int | None = None  # while resyncing, packets below this are stale
        self._stale_until = float("-inf")  # after a flush, unmarked packets until then are stale
        self._fill_since: float | None = None
        self._recent: set[int] = set()  # seqs played lately: a second copy is a duplicate
        self._highest: int | None = None  # highest extended seq received in this segment
        self._asked: set[int] = set()  # extended seqs queued for a NACK or NACKed: never twice
        # extended seqs NACKed and not played or passed yet, with when they were asked for
        self._requested: dict[int, float] = {}
        self._nacks.clear()
        self._over_slots = 0
        self._under_slots = 0
        self._probe: int | None = None
        self._jitter = 0.0  # RFC 3550 estimate, timestamp units
        self._jitter_samples = 0
        self._last_arrival: float | None = None
        self._last_seq: int | None = None
        self._last_ts = 0

    # --- state ---------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def packet_ms(self) -> float:
        """What one packet (one slot) of the stream lasts, from the latest packet's TOC."""
        return self._samples * 1000.0 / SAMPLE_RATE

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / SAMPLE_RATE

    @property
    def target_ms(self) -> float:
        """The depth playout keeps: the most ``wanted_ms`` over the current window of
        ``TARGET_WINDOW_S`` and the one before, so it rises at once and comes down 5–10 s
        after what raised it (estimates that wobble would otherwise insert a frame each
        time they rise and skip one each time they fall)."""
        return max(self.wanted_ms, self._window_max, self._previous_max)

    def _hold_target(self, now: float) -> None:
        wanted = self.wanted_ms
        at = self._window_at
        if at is None or now - at >= TARGET_WINDOW_S:
            recent = at is not None and now - at < 2 * TARGET_WINDOW_S
            self._previous_max = self._window_max if recent else 0.0
            self._window_max, self._window_at = wanted, now
        elif wanted > self._window_max:
            self._window_max = wanted

    @property
    def wanted_ms(self) -> float:
        """``clamp(40 ms, D, max(20 + 4 × jitter, repair room))``: while gaps were seen in the
        last ``REPAIR_CALM_S``, room for one retransmission of the longest gap seen then
        (its length + 1 frames to notice it, the NACK hold-off, the repair round trip,
        4 × jitter) and one frame to spare."""
        want = self.packet_ms + 4.0 * self.jitter_ms
        if self._repairing():
            hold = min(MAX_NACK_HOLD_MS, 2.0 * self.jitter_ms)
            notice = (max(2, self._burst) + 1) * self.packet_ms
            want = max(want, notice + hold + self.rtt_ms + 4.0 * self.jitter_ms)
        return min(self.playout_delay_ms, max(MIN_TARGET_MS, want))

    def _repairing(self) -> bool:
        return self._gap_at is not None and self._clock - self._gap_at < REPAIR_CALM_S

    @property
    def rtt_ms(self) -> float:
        """Round trip for a repair: NACK → retransmission, or the UDP ack's until one came."""
        return self._rtt_s * 1000.0

    def observe_rtt(self, seconds: float) -> None:
        """A round-trip sample from outside (the UDP hello/keepalive and its ack)."""
        if seconds >= 0:
            self._observe_repair(seconds)

    def _observe_repair(self, seconds: float) -> None:
        if self._rtt_samples == 0:
            self._rtt_s = seconds
        else:
            self._rtt_s += (seconds - self._rtt_s) / 8.0
        self._rtt_samples += 1

    @property
    def buffer_ms(self) -> float:
        """Audio between the playout point and the newest packet held, gaps included."""
        if not self._buf:
            return 0.0
        return float((max(self._buf) - self._base() + 1) * self.packet_ms)

    def __len__(self) -> int:
        return len(self._buf)

    def stats(self) -> JitterStats:
        return JitterStats(
            self.received, self.played, self.retransmitted, self.redundant, self.lost,
            self.recovered,
            self.concealed, self.nacked, self.late, self.duplicates, self.dropped, self.strays,
            self.underruns, self.restarts, self.stretched, round(self.jitter_ms, 2),
            self.buffer_ms, self.target_ms,
        )  # fmt: skip

    def _base(self) -> int:
        assert self._next is not None
        if self._resync and not self._playing and self._buf:
            return min(self._buf)
        return self._next

    # --- receive -------------------------------------------------------------------------

    def push(
        self, seq: int, timestamp: int, payload: bytes, now: float, marker: bool = False
    ) -> None:
        """One received RTP packet (16-bit ``seq``, 32-bit ``timestamp``) at time ``now``."""
        self._clock = max(self._clock, now)
        self._duration(payload)
        jump = marker or self._ts_jump(seq, timestamp)
        if self._next is None:
            self._next = seq
        ext = self._next + seq_diff(seq, self._next & 0xFFFF)
        d = ext - self._next
        if d > MAX_DROPOUT or d < -MAX_MISORDER or (marker and d > self._span):
            if not marker and seq != self._probe:
                self._probe = seq_add(seq, 1)
                self.strays += 1
                return
            self._restart(ext)
        elif jump and not self._playing and not self._buf and d >= 0:
            self._resync = True  # a new segment after an idle gap or a switch
            self._floor = ext
            self._highest = None  # the gap before it is not loss: nothing to ask for
        self._probe = None
        if marker:
            self._stale_until = float("-inf")
        if ext in self._requested:  # a retransmission is late by design: not jitter
            self._observe_repair(now - self._requested[ext])
        else:
            self._track_jitter(seq, timestamp, now, jump)
        self._accept(ext, timestamp, payload, marker, now)

    def _duration(self, payload: bytes) -> None:
        """The stream's packet duration from this packet's TOC (unchanged if it has none)."""
        try:
            samples = packet_samples(payload)
        except ValueError:
            return
        if samples != self._samples:
            self._samples = samples
            self._span = max(2, MAX_SPAN_MS * SAMPLE_RATE // 1000 // samples)

    def _ts_jump(self, seq: int, timestamp: int) -> bool:
        if self._last_seq is None:
            return False
        predicted = (self._last_ts + seq_diff(seq, self._last_seq) * self._samples) & 0xFFFFFFFF
        return abs(ts_diff(timestamp, predicted)) > TS_JUMP

    def _track_jitter(self, seq: int, timestamp: int, now: float, jump: bool) -> None:
        if not jump and self._last_arrival is not None:
            d = (now - self._last_arrival) * SAMPLE_RATE - ts_diff(timestamp, self._last_ts)
            # a running mean at first: an estimate rising from 0 at 1/16 would start
            # playout shallow and make the buffer grow (inserted frames) a second later
            self._jitter_samples += 1
            self._jitter += (abs(d) - self._jitter) / min(self._jitter_samples, JITTER_GAIN)
        self._last_arrival = now
        self._last_seq, self._last_ts = seq, timestamp

    def _accept(self, ext: int, timestamp: int, payload: bytes, marker: bool, now: float) -> None:
        assert self._next is not None
        if ext in self._buf or ext in self._recent:
            self.duplicates += 1
            return
        self.received += 1
        resyncing = self._resync and not self._playing
        if (self._floor is not None and ext < self._floor) or now < self._stale_until:
            self.dropped += 1  # flushed audio still in flight, or the old stream's tail
        elif ext < self._next and not resyncing:
            self.late += 1
        elif ext < self._next - self._span:
            self.late += 1  # far before a resync anchor: not worth waiting for
        else:
            self._buf[ext] = _Entry(
                timestamp, payload, marker, self._samples, ext in self._requested
            )
            if self._fill_since is None:
                self._fill_since = now
            self._ask(ext, now)
            self._bound(ext)

    def fill(self, seq: int, timestamp: int, payload: bytes, samples: int, now: float) -> bool:
        """A redundant copy of packet ``seq`` (an RFC 2198 block of a packet just pushed,
        lasting ``samples``): it takes the slot if the slot is still missing, behind the
        newest packet and not yet played; True if it did."""
        if self._next is None or self._highest is None or now < self._stale_until:
            return False
        ext = self._next + seq_diff(seq, self._next & 0xFFFF)
        if ext >= self._highest or ext in self._buf or ext in self._recent:
            return False
        resyncing = self._resync and not self._playing
        floor = self._next - self._span if resyncing else self._next
        if ext < floor or (self._floor is not None and ext < self._floor):
            return False
        self._buf[ext] = _Entry(timestamp, payload, False, samples, redundant=True)
        self.filled += 1
        return True

    def _ask(self, ext: int, now: float) -> None:
        """Queue NACKs for the numbers a packet beyond the highest one seen skipped over."""
        highest = self._highest
        if highest is None or ext > highest:
            self._highest = ext
        if highest is None or ext <= highest + 1 or not self.asking:
            return
        low = max(highest + 1, ext - self._span)
        if self._playing and self._next is not None:
            low = max(low, self._next)  # what has had its slot is past help
        missing = [k for k in range(low, ext) if k not in self._buf and k not in self._asked]
        self._nacks.extend((k, now) for k in missing)
        self._asked.update(missing)
        if len(self._asked) > 4 * self._span and self._next is not None:
            self._asked = {k for k in self._asked if k >= self._next}
            self._requested = {k: t for k, t in self._requested.items() if k >= self._next}

    def take_nacks(self, now: float) -> list[int]:
        """The 16-bit sequence numbers to NACK now: gaps still open after the hold-off that
        can still be played, each asked once (a gap filled meanwhile is never asked)."""
        nacks = self._nacks
        if not nacks or not self.asking:
            nacks.clear()
            return []
        hold = min(MAX_NACK_HOLD_MS, 2.0 * self.jitter_ms) / 1000.0 - _EPS
        base = self._next if self._playing and self._next is not None else None
        out: list[int] = []
        keep: list[tuple[int, float]] = []
        for k, since in nacks:
            if k in self._buf or (base is not None and k < base):
                continue  # filled by a reordered packet, or had its slot already
            if now - since < hold:
                keep.append((k, since))
            else:
                out.append(k & 0xFFFF)
                self._requested[k] = now
        self._nacks = keep
        self.nacked += len(out)
        if out:  # a real gap (not mere reordering): keep room to repair the next ones
            if not self._repairing():
                self._burst = 0
            self._burst = max(self._burst, _longest_run(out))
            self._gap_at = now
        return out

    def _bound(self, newest: int) -> None:
        """Keep at most MAX_SPAN_MS of packets between the playout point and the newest one."""
        assert self._next is not None
        span = self._span
        if self.synced:  # in step the buffer holds D minus the path's delay: room for D
            span = max(
                span, math.ceil(self.playout_delay_ms / self.packet_ms) + TRIM_MARGIN_PACKETS
            )
        start = newest - span + 1
        if self._base() >= start:
            return
        old = [k for k in self._buf if k < start]
        for k in old:
            del self._buf[k]
        self._remember(old)
        self.dropped += len(old)
        if self._playing or not self._resync:
            self.lost += start - self._next - len(old)
            self._next = start
        else:
            self._floor = start

    def _restart(self, ext: int) -> None:
        """A new stream: forget the old one's packets and start over at ``ext``."""
        self.restarts += 1
        self.dropped += len(self._buf)
        self._forget()
        self._next = ext
        self._floor = ext

    def _remember(self, seqs: list[int] | tuple[int, ...]) -> None:
        self._recent.update(seqs)
        if len(self._recent) > 4 * MAX_MISORDER and self._next is not None:
            horizon = self._next - 2 * MAX_MISORDER
            self._recent = {k for k in self._recent if k >= horizon}

    # --- playout -------------------------------------------------------------------------

    def pop(self, now: float) -> PlayoutItem:
        """The decision for the slot starting now; call again when its ``samples`` have
        played."""
        self._clock = max(self._clock, now)
        self._hold_target(self._clock)
        if not self._playing:
            if not self._ready(now):
                return _WAIT
            self._start()
        assert self._next is not None
        if not self._buf:
            self._playing = False
            self._resync = False
            self._fill_since = None
            self.underruns += 1
            return _UNDERRUN
        if not self.synced:
            if self._grow():
                return Stretch(self._samples)
            self._trim()
        seq = self._next
        self._next += 1
        entry = self._buf.pop(seq, None)
        self._asked.discard(seq)
        self._requested.pop(seq, None)
        if entry is not None:
            self._remember((seq,))
            self.played += 1
            self.retransmitted += entry.nacked
            self.redundant += entry.redundant
            return Play(
                seq & 0xFFFF,
                entry.timestamp,
                entry.payload,
                entry.marker,
                entry.nacked,
                entry.redundant,
                entry.samples,
            )
        self.lost += 1
        following = self._buf.get(self._next)
        if following is not None and _has_fec(following.payload):
            self.recovered += 1
            return Recover(seq & 0xFFFF, following.payload, self._samples)
        self.concealed += 1
        return Conceal(seq & 0xFFFF, self._samples)

    def _ready(self, now: float) -> bool:
        if not self._buf or self._fill_since is None:
            return False
        waited_ms = (now - self._fill_since) * 1000.0
        # The span counts the packet about to play: what stays buffered is the target.
        full = self.buffer_ms - self.packet_ms + _EPS >= self.target_ms
        return full or waited_ms + _EPS >= self.target_ms

    def _start(self) -> None:
        assert self._next is not None
        first = min(self._buf)
        gap = range(self._next, first)
        if not self._resync and gap and len(gap) <= self._span and self._in_flight(gap):
            first = self._next  # a burst ran the buffer dry: replay it, its repairs are coming
        elif not self._resync and first > self._next:
            self.lost += first - self._next  # lost while we waited for the stream to resume
        self._next = first
        self._playing = True
        self._resync = False
        self._floor = None
        self._over_slots = 0
        self._under_slots = 0

    def _in_flight(self, seqs: range) -> bool:
        """Whether a retransmission of one of ``seqs`` may still come: NACKed within two
        repair round trips and 100 ms (not over a path that died meanwhile)."""
        horizon = self._clock - 2.0 * self._rtt_s - 0.1
        return any(self._requested.get(k, -1e18) >= horizon for k in seqs)

    def _grow(self) -> bool:
        """Conceal one packet (no sequence used) when the depth has stayed below the target:
        how a buffer that is playing deepens to a target that rose."""
        if self.buffer_ms <= self.target_ms - _EPS:
            self._under_slots += 1
        else:
            self._under_slots = 0
        if self._under_slots < GROW_AFTER_SLOTS:
            return False
        self._under_slots = 0
        self.stretched += 1
        return True

    def _trim(self) -> None:
        """Skip one packet when the depth has stayed well above the target."""
        assert self._next is not None
        if self.buffer_ms > self.target_ms + TRIM_MARGIN_PACKETS * self.packet_ms:
            self._over_slots += 1
        else:
            self._over_slots = 0
        if self._over_slots < TRIM_AFTER_SLOTS or len(self._buf) < 2:
            return
        self._over_slots = 0
        skipped = self._next
        self._next += 1
        if self._buf.pop(skipped, None) is not None:
            self._remember((skipped,))
            self.dropped += 1
        else:
            self.lost += 1

    def flush(self, now: float) -> None:
        """Drop all buffered audio now (the ``stop`` command).

        For ``STALE_HOLDOFF_S`` after, packets without the marker bit are taken for the
        flushed audio still in flight and dropped; a marker packet starts the next segment."""
        if self._next is None:
            return
        newest = max(self._buf, default=self._next - 1)
        self.dropped += len(self._buf)
        self._remember(tuple(self._buf))
        self._buf.clear()
        self._next = max(newest + 1, self._next)
        self._playing = False
        self._resync = True
        self._floor = self._next
        self._fill_since = None
        self._stale_until = now + STALE_HOLDOFF_S
        self._highest = None
        self._nacks.clear()

    def reset(self) -> None:
        """Forget the stream (a new session starts a new one); counters are kept."""
        self.dropped += len(self._buf)
        self._forget()

    def expect_gaps(self, now: float) -> None:
        """Keep room to repair as if a gap was just NACKed: for a path not yet known calm
        (a new session), so the buffer starts deep enough rather than growing mid-stream."""
        if self.asking:
            self._clock = max(self._clock, now)
            self._gap_at = now


def _longest_run(seqs: list[int]) -> int:
    """The longest run of consecutive 16-bit sequence numbers in ``seqs`` (in order)."""
    best = run = 1
    for a, b in pairwise(seqs):
        run = run + 1 if (b - a) & 0xFFFF == 1 else 1
        best = max(best, run)
    return best


def _has_fec(payload: bytes) -> bool:
    try:
        return has_fec(payload)
    except ValueError:  # not a valid Opus header: the decoder will say so
        return False
