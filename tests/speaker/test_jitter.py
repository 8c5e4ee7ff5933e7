"""The jitter buffer with a fake clock: ordering, loss → FEC/PLC, late, duplicates, wrap,
discontinuities, adaptive depth, bounds, and properties over random loss and reordering."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loa.speaker.jitter import (
    MAX_SPAN_MS,
    MIN_TARGET_MS,
    PLAYOUT_DELAY_MS,
    Conceal,
    JitterBuffer,
    Play,
    PlayoutItem,
    Recover,
    Stretch,
    Wait,
)

F = 0.02  # one slot


def payload(seq: int) -> bytes:
    """A SILK 20 ms packet header (TOC 0x48) with its LBRR flag set: it carries FEC."""
    return b"\x48\x40" + seq.to_bytes(2, "big")


def push(jb: JitterBuffer, seq: int, now: float, *, ts0: int = 0, marker: bool = False) -> None:
    jb.push(seq & 0xFFFF, (ts0 + 960 * seq) & 0xFFFFFFFF, payload(seq & 0xFFFF), now, marker)


def summary(item: PlayoutItem) -> tuple[str, int | None]:
    match item:
        case Play(seq=seq):
            return ("play", seq)
        case Recover(seq=seq, next_payload=nxt):
            assert nxt == payload((seq + 1) & 0xFFFF)
            return ("fec", seq)
        case Conceal(seq=seq):
            return ("plc", seq)
        case Stretch():
            return ("stretch", None)
        case Wait(underrun=underrun):
            return ("underrun" if underrun else "wait", None)
    raise AssertionError(item)


def run(
    jb: JitterBuffer, arrivals: dict[int, list[int]], slots: int
) -> list[tuple[str, int | None]]:
    """Slot i: push the seqs listed for i (arriving at i*F), then pop."""
    out = []
    for i in range(slots):
        now = i * F
        for seq in arrivals.get(i, []):
            push(jb, seq, now)
        out.append(summary(jb.pop(now)))
    return out


def assert_balanced(jb: JitterBuffer) -> None:
    assert jb.received + jb.filled == jb.played + jb.late + jb.dropped + len(jb)
    assert jb.retransmitted + jb.redundant <= jb.played


def test_in_order_plays_every_packet_after_the_target_delay() -> None:
    jb = JitterBuffer()
    out = run(jb, {i: [i] for i in range(10)}, 12)
    # The first packet is held 40 ms (two slots) before playout starts.
    assert out[:2] == [("wait", None), ("wait", None)]
    assert out[2:12] == [("play", s) for s in range(10)]
    assert (jb.received, jb.played, jb.lost, jb.late) == (10, 10, 0, 0)
    assert_balanced(jb)


def test_reordered_within_depth_plays_in_sequence() -> None:
    jb = JitterBuffer()
    arrivals = {0: [0], 1: [2], 2: [1, 3], 3: [5, 4], 4: [6], 5: [7]}
    out = run(jb, arrivals, 20)  # the reordering is jitter: playout starts deeper
    assert [s for kind, s in out if kind == "play"] == list(range(8))
    assert jb.lost == 0
    assert jb.late == 0


def test_single_loss_is_recovered_from_the_next_packets_fec() -> None:
    jb = JitterBuffer()
    out = run(jb, {i: [i] for i in range(10) if i != 4}, 12)
    assert ("fec", 4) in out
    assert (jb.lost, jb.recovered, jb.concealed) == (1, 1, 0)


def test_two_losses_in_a_row_are_concealed_then_recovered() -> None:
    jb = JitterBuffer()
    out = run(jb, {i: [i] for i in range(10) if i not in (4, 5)}, 12)
    i = out.index(("plc", 4))
    assert out[i + 1] == ("fec", 5)
    assert out[i + 2] == ("play", 6)
    assert (jb.lost, jb.recovered, jb.concealed) == (2, 1, 1)


def test_packet_arriving_after_its_slot_is_late() -> None:
    jb = JitterBuffer()
    arrivals = {i: [i] for i in range(10) if i != 3}
    arrivals[8].append(3)  # 100 ms late; its slot played at 5
    out = run(jb, arrivals, 12)
    assert ("fec", 3) in out
    assert jb.late == 1
    assert jb.lost == 1
    assert_balanced(jb)


def test_duplicates_are_counted_and_not_played_twice() -> None:
    jb = JitterBuffer()
    arrivals = {i: [i] for i in range(8)}
    arrivals[1].append(1)  # duplicate while buffered
    arrivals[6].append(2)  # duplicate after it played
    out = run(jb, arrivals, 10)
    assert [s for kind, s in out if kind == "play"] == list(range(8))
    assert jb.duplicates == 2
    assert jb.received == 8
    assert_balanced(jb)


def test_sequence_wraps_without_loss() -> None:
    jb = JitterBuffer()
    arrivals = {i: [65530 + i] for i in range(12)}
    out = run(jb, arrivals, 14)
    played = [s for kind, s in out if kind == "play"]
    assert played == [(65530 + i) & 0xFFFF for i in range(12)]
    assert jb.lost == 0
    assert jb.strays == 0


def test_idle_gap_with_timestamp_jump_rebuffers_without_loss() -> None:
    jb = JitterBuffer()
    run(jb, {i: [i] for i in range(5)}, 8)  # plays 0..4, then runs dry
    assert jb.underruns == 1
    # Ten minutes of silence later the stream resumes: seq continues, ts jumps.
    t0 = 600.0
    ts0 = 960 * 5 + 48_000 * 600
    out = []
    for i in range(6):
        jb.push(5 + i, ts0 + 960 * i, payload(5 + i), t0 + i * F, marker=i == 0)
        out.append(summary(jb.pop(t0 + i * F)))
    assert out[:2] == [("wait", None), ("wait", None)]
    assert out[2:] == [("play", s) for s in range(5, 9)]
    assert jb.lost == 0
    assert jb.jitter_ms < 1.0  # the 10-minute gap did not enter the estimate


def test_marker_with_renumbered_sequence_restarts_without_counting_loss() -> None:
    jb = JitterBuffer()
    run(jb, {i: [i] for i in range(6)}, 5)  # 0..4 arrived, 0..2 played, 3..4 buffered
    out = []
    for i in range(6):
        now = 0.1 + i * F
        jb.push(40_000 + i, 123 + 960 * i, payload(40_000 + i), now, marker=i == 0)
        out.append(summary(jb.pop(now)))
    assert jb.restarts == 1
    assert jb.lost == 0
    assert ("play", 40_000) in out
    assert jb.dropped == 2  # the old stream's tail
    assert_balanced(jb)


def test_single_far_stray_is_ignored_but_a_confirmed_jump_restarts() -> None:
    jb = JitterBuffer()
    run(jb, {i: [i] for i in range(4)}, 3)
    push(jb, 20_000, 0.06)
    assert jb.strays == 1
    assert jb.restarts == 0
    push(jb, 20_001, 0.08)
    assert jb.restarts == 1


def test_depth_grows_with_jitter_and_stays_within_bounds() -> None:
    jb = JitterBuffer()
    assert jb.target_ms == MIN_TARGET_MS
    rng = random.Random(7)
    targets = []
    for i in range(400):
        arrival = i * F + rng.uniform(0.0, 0.04)  # up to 40 ms of network jitter
        push(jb, i, arrival)
        targets.append(jb.target_ms)
    assert jb.jitter_ms > 5.0
    assert max(targets) > MIN_TARGET_MS + 10
    assert all(MIN_TARGET_MS <= t <= PLAYOUT_DELAY_MS for t in targets)


def test_rebuffer_after_underrun_waits_for_the_grown_target() -> None:
    jb = JitterBuffer()
    rng = random.Random(3)
    for i in range(200):
        push(jb, i, i * F + rng.uniform(0.0, 0.05))
    jb.flush(5.0)
    target = jb.target_ms
    assert target > MIN_TARGET_MS
    waits = 0
    now = 6.0
    jb.push(200, 960 * 200, payload(200), now, marker=True)
    while isinstance(jb.pop(now), Wait):
        waits += 1
        now += F
    assert waits * F * 1000 >= target - 1e-6


def test_size_is_bounded_to_500_ms() -> None:
    jb = JitterBuffer()
    for i in range(100):
        push(jb, i, 0.0)  # a burst, never popped
        assert jb.buffer_ms <= MAX_SPAN_MS
    assert len(jb) == (MAX_SPAN_MS // 20)
    assert jb.dropped == 100 - (MAX_SPAN_MS // 20)
    assert_balanced(jb)


def test_latency_is_trimmed_back_towards_the_target() -> None:
    jb = JitterBuffer()
    for i in range(15):
        push(jb, i, 0.0)  # 300 ms arrives at once
    for slot in range(60):
        push(jb, 15 + slot, slot * F)
        jb.pop(slot * F)
    assert jb.buffer_ms <= jb.target_ms + 40
    assert jb.dropped > 0
    assert_balanced(jb)


def test_flush_drops_buffered_and_in_flight_audio_until_a_marker() -> None:
    jb = JitterBuffer()
    run(jb, {i: [i] for i in range(6)}, 4)  # 0..3 arrived, 0..1 played
    jb.flush(0.08)
    assert len(jb) == 0
    assert jb.buffer_ms == 0
    push(jb, 6, 0.1)  # in flight when stop was sent
    assert jb.dropped == 3  # 2..3 flushed + 6 stale
    assert isinstance(jb.pop(0.1), Wait)
    push(jb, 7, 0.12, marker=True)
    out = [summary(jb.pop(0.12 + k * F)) for k in range(3)]
    assert out[-1] == ("play", 7)
    assert_balanced(jb)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 6), st.booleans()),
        min_size=1,
        max_size=120,
    ),
    st.integers(0, 65535),
)
def test_random_loss_and_reorder_keep_the_books(
    pattern: list[tuple[bool, int, bool]], first_seq: int
) -> None:
    """Each packet is lost or delayed by 0..6 slots (maybe duplicated); one pop per slot."""
    jb = JitterBuffer()
    arrivals: dict[int, list[int]] = {}
    for i, (lost, delay, dup) in enumerate(pattern):
        if not lost:
            arrivals.setdefault(i + delay, []).append(first_seq + i)
            if dup:
                arrivals.setdefault(i + delay + 1, []).append(first_seq + i)
    slots = len(pattern) + 20  # the target may rise to D (15 slots)
    audio = 0
    started = False
    for i in range(slots):
        for seq in arrivals.get(i, []):
            push(jb, seq, i * F)
        item = jb.pop(i * F)
        started = started or not isinstance(item, Wait)
        if not isinstance(item, Wait):
            audio += 1
        assert jb.buffer_ms <= MAX_SPAN_MS
    assert jb.played + jb.recovered + jb.concealed + jb.stretched == audio
    assert jb.recovered + jb.concealed <= jb.lost
    assert_balanced(jb)
    sent = sum(len(v) for v in arrivals.values())
    assert jb.received + jb.duplicates + jb.strays == sent
    if any(not lost for lost, _, _ in pattern):
        assert started


# --- retransmission requests and honest counters ---------------------------------------


def test_a_gap_is_asked_for_once_and_a_retransmission_in_time_plays() -> None:
    jb = JitterBuffer()
    for i in range(3):
        push(jb, 100 + i, i * F)
    assert jb.take_nacks(9.0) == []
    push(jb, 105, 3 * F)  # 103 and 104 missing
    assert jb.take_nacks(9.0) == [103, 104]
    push(jb, 106, 4 * F)
    assert jb.take_nacks(9.0) == []  # asked once, not again
    push(jb, 104, 5 * F)  # the retransmission of 104 arrives; 103 never does
    out = [summary(jb.pop(t * F)) for t in range(5, 14)]
    assert [s for kind, s in out if kind == "play"] == [100, 101, 102, 104, 105, 106]
    assert ("fec", 103) in out  # the retransmitted 104 carries 103's FEC
    assert (jb.recovered, jb.concealed) == (1, 0)
    assert (jb.nacked, jb.retransmitted, jb.played) == (2, 1, 6)
    assert jb.played - jb.retransmitted == 5  # played as sent
    assert_balanced(jb)


def test_only_numbers_that_can_still_play_are_asked_for() -> None:
    jb = JitterBuffer()
    for i in range(5):
        push(jb, i, i * F)
    for t in range(5, 9):
        jb.pop(t * F)  # playing: 0..3 had their slots, the next is 4
    assert jb.playing
    push(jb, 40, 9 * F)  # 5..39 missing; 500 ms held at most moves the playout point to 16
    assert jb.take_nacks(9.0) == list(range(16, 40))
    push(jb, 15, 9 * F)  # behind the playout point: late, not a reason to ask
    assert jb.take_nacks(9.0) == []
    assert jb.late == 1


def test_sequence_wrap_and_a_new_segment() -> None:
    jb = JitterBuffer()
    push(jb, 65534, 0.0)
    push(jb, 65535 + 3, F)  # 0xFFFF, 0, 1 missing across the wrap
    assert jb.take_nacks(9.0) == [65535, 0, 1]
    for t in range(2, 12):
        jb.pop(t * F)  # plays out and underruns: the stream paused
    jb.push(500, 960 * 5000, payload(500), 12 * F, marker=True)  # a new segment after a gap
    assert jb.take_nacks(9.0) == []


def test_a_retransmission_does_not_feed_the_jitter_estimate() -> None:
    jb = JitterBuffer()
    for i in range(20):
        push(jb, i, i * F)
    push(jb, 22, 22 * F)
    assert jb.take_nacks(22 * F + 0.04) == [20, 21]
    push(jb, 21, 23 * F)
    push(jb, 20, 30 * F)  # asked for, arrives 160 ms late: a retransmission, not jitter
    assert jb.jitter_ms < 1.0


def test_fec_is_counted_only_where_the_next_packet_carries_it() -> None:
    jb = JitterBuffer()
    no_fec = b"\x48\x00\x00\x00"  # SILK 20 ms, LBRR flag clear
    celt = b"\xf8\xff\xff\xff"  # CELT-only: never FEC
    # 2 is lost and 3 has no FEC; 5 is lost and 6 is CELT; 8 is lost and 9 has FEC
    packets = {0: payload(0), 1: payload(1), 3: no_fec, 4: payload(4), 6: celt, 7: payload(7)}
    packets |= {9: payload(9), 10: payload(10)}
    out = []
    for t in range(13):
        if t in packets:
            jb.push(t, 960 * t, packets[t], t * F)
        out.append(summary(jb.pop(t * F)))
    assert out[2:13] == [
        ("play", 0), ("play", 1), ("plc", 2), ("play", 3), ("play", 4), ("plc", 5),
        ("play", 6), ("play", 7), ("fec", 8), ("play", 9), ("play", 10),
    ]  # fmt: skip
    assert (jb.recovered, jb.concealed) == (1, 2)


def test_a_reordered_packet_fills_its_gap_before_it_is_asked_for() -> None:
    jb = JitterBuffer()
    t = 0.0
    for i in range(30):  # 5 ms of jitter: hold-off 2 x 5 ms
        t = i * F + (0.005 if i % 2 else 0.0)
        push(jb, i, t)
    assert 4.0 < jb.jitter_ms < 6.0
    push(jb, 31, t + F)
    assert jb.take_nacks(t + F) == []  # held off
    push(jb, 30, t + F + 0.002)  # reordered, not lost
    assert jb.take_nacks(t + F + 0.1) == []
    push(jb, 33, t + 2 * F)
    assert jb.take_nacks(t + 2 * F + 0.005) == []
    assert jb.take_nacks(t + 2 * F + 0.031) == [32]  # past the longest hold-off
    assert jb.nacked == 1


def test_a_burst_that_runs_the_buffer_dry_is_replayed_from_its_retransmissions() -> None:
    jb = JitterBuffer()
    out = []
    t = 0
    for t in range(10):  # playing at 40 ms
        push(jb, t, t * F)
        out.append(summary(jb.pop(t * F)))
    # 10..15 lost (120 ms): the buffer runs dry; 16 arrives, the gap is asked for
    for t in range(10, 16):
        out.append(summary(jb.pop(t * F)))
    assert ("underrun", None) in out
    push(jb, 16, 16 * F)
    assert jb.take_nacks(16 * F + 0.001) == list(range(10, 16))
    out = []
    for t in range(16, 30):
        if t == 17:
            for seq in range(10, 16):  # the retransmissions, one round trip later
                push(jb, seq, t * F)
        if t > 16:
            push(jb, t, t * F)
        out.append(summary(jb.pop(t * F + 0.002)))
    played = [s for kind, s in out if kind == "play"]
    assert played[:8] == list(range(10, 18))  # the burst is played, not skipped
    assert jb.retransmitted == 6 and jb.concealed == 0
    assert jb.target_ms >= (6 + 1) * 20  # room for the longest gap seen


def test_a_new_path_starts_with_room_to_repair_and_trims_down_once_calm() -> None:
    jb = JitterBuffer()
    jb.expect_gaps(0.0)
    jb.observe_rtt(0.05)
    assert jb.target_ms == pytest.approx(3 * 20 + 50)
    for i in range(600):  # 12 s of a clean link
        push(jb, i, i * F)
        jb.pop(i * F)
    assert jb.wanted_ms == MIN_TARGET_MS  # no room wanted after 10 s calm
    assert jb.target_ms > MIN_TARGET_MS  # but held for a window or two
    for i in range(600, 1100):  # 10 s more
        push(jb, i, i * F)
        jb.pop(i * F)
    assert jb.target_ms == MIN_TARGET_MS
    assert jb.buffer_ms <= MIN_TARGET_MS + 2 * 20  # trimmed back
    quiet = JitterBuffer()
    quiet.asking = False  # no NACKs: no room kept
    quiet.expect_gaps(0.0)
    assert quiet.target_ms == MIN_TARGET_MS


def test_a_wobbling_estimate_neither_inserts_nor_skips_frames() -> None:
    """4G-like arrivals (each packet 20..60 ms late, uniformly) for 30 s: the jitter
    estimate wobbles by a third around its mean; the target holds the most wanted of the
    last 5-10 s, so the buffer settles instead of growing and trimming with every wobble."""
    rng = random.Random(4)
    jb = JitterBuffer()
    jb.asking = False
    events = sorted((i * F + rng.uniform(0.02, 0.06), i) for i in range(1500))
    played: list[int] = []
    k = 0
    for slot in range(1520):
        now = slot * F
        while k < len(events) and events[k][0] <= now:
            push(jb, events[k][1], events[k][0])
            k += 1
        item = jb.pop(now)
        if isinstance(item, Play):
            played.append(item.seq)
    assert jb.late == 0 and jb.lost == 0
    # 3 here; 11 when the target followed every wobble (7 inserted, 4 skipped)
    assert jb.stretched + jb.dropped <= 5, jb.stats()
    assert played == sorted(played) and len(played) == 1500 - jb.dropped


def test_the_jitter_estimate_is_right_from_the_first_packets() -> None:
    """A running mean over the first samples, then RFC 3550's 1/16: after ten packets the
    estimate is already near the link's (|D| of 20 ms each), not a third of it."""
    jb = JitterBuffer()
    for i in range(10):
        push(jb, i, i * F + (0.02 if i % 2 else 0.0))
    assert jb.jitter_ms == pytest.approx(20.0, abs=0.5)


# -- packets of 40 and 60 ms: slots follow the Opus TOC ------------------------------------


def long_payload(seq: int, frames: int) -> bytes:
    """A code 3 CBR packet of ``frames`` SILK WB 20 ms frames, the first with its LBRR flag
    (TOC 0x4B, count byte, 2 bytes a frame)."""
    tag = seq.to_bytes(2, "big")
    return bytes((0x4B, frames)) + (b"\x40" + tag[1:]) + (b"\x00" + tag[1:]) * (frames - 1)


Sent = tuple[int, int, bytes, float]  # seq, timestamp, payload, arrival time


def stream(frames: int, seqs: range, *, t0: float = 0.0, ts0: int = 0) -> list[Sent]:
    """Packets of ``frames`` × 20 ms, each arriving on time (one per packet duration)."""
    samples = 960 * frames
    return [
        (seq, ts0 + k * samples, long_payload(seq, frames), t0 + k * samples / 48_000)
        for k, seq in enumerate(seqs)
    ]


def run_timed(
    jb: JitterBuffer, sent: list[Sent], *, lost: frozenset[int] = frozenset()
) -> list[PlayoutItem]:
    """Push each packet at its arrival time (but those in ``lost``) and pop on the slots the
    items themselves ask for, until every packet had its slot (bounded)."""
    out: list[PlayoutItem] = []
    pending, now = list(sent), 0.0
    for _ in range(10 * len(sent) + 50):
        while pending and pending[0][3] <= now + 1e-9:
            seq, ts, data, at = pending.pop(0)
            if seq not in lost:
                jb.push(seq, ts, data, at)
        item = jb.pop(now)
        out.append(item)
        now += item.samples / 48_000
        if not pending and not len(jb):
            return out
    raise AssertionError("the buffer never drained")


@pytest.mark.parametrize("frames", [2, 3])
def test_a_slot_lasts_one_packet_of_the_duration_its_toc_says(frames: int) -> None:
    jb = JitterBuffer()
    out = run_timed(jb, stream(frames, range(20)))
    played = [i for i in out if isinstance(i, Play)]
    assert [p.seq for p in played] == list(range(20))
    assert {p.samples for p in played} == {960 * frames}
    assert jb.packet_ms == 20 * frames
    assert all(i.samples == 960 for i in out if isinstance(i, Wait))  # waiting polls at 20 ms
    assert (jb.lost, jb.concealed, jb.dropped) == (0, 0, 0)
    assert jb.target_ms == pytest.approx(max(MIN_TARGET_MS, 20.0 * frames))  # no jitter: 1
    assert_balanced(jb)


@pytest.mark.parametrize("frames", [2, 3])
def test_a_lost_long_packet_is_rebuilt_and_concealed_at_its_own_length(frames: int) -> None:
    jb = JitterBuffer()
    jb.expect_gaps(0.0)  # a repair room: deep enough for two losses in a row
    jb.observe_rtt(0.1)
    out = run_timed(jb, stream(frames, range(14)), lost=frozenset({4, 8, 9}))
    by_seq = {i.seq: i for i in out if isinstance(i, Play | Recover | Conceal)}
    assert isinstance(by_seq[4], Recover) and by_seq[4].samples == 960 * frames
    assert by_seq[4].next_payload == long_payload(5, frames)
    assert isinstance(by_seq[8], Conceal) and by_seq[8].samples == 960 * frames
    assert isinstance(by_seq[9], Recover) and by_seq[9].samples == 960 * frames
    assert (jb.lost, jb.recovered, jb.concealed) == (3, 2, 1)


def test_the_slot_follows_a_stream_whose_packets_change_duration() -> None:
    """A zone switched from 20 to 60 ms: the packets after the change last 60 ms."""
    jb = JitterBuffer()
    short = [(seq, seq * 960, payload(seq), seq * F) for seq in range(10)]
    out = run_timed(jb, short + stream(3, range(10, 16), t0=10 * F, ts0=10 * 960))
    played = [(i.seq, i.samples) for i in out if isinstance(i, Play)]
    assert played == [(seq, 960) for seq in range(10)] + [(seq, 2880) for seq in range(10, 16)]
    assert jb.packet_ms == 60 and (jb.lost, jb.dropped, jb.strays) == (0, 0, 0)


def test_the_bound_is_500_ms_of_long_packets() -> None:
    jb = JitterBuffer()
    for seq in range(30):  # nothing popped: 30 × 60 ms arrive at once
        jb.push(seq, seq * 2880, long_payload(seq, 3), 0.0)
    assert len(jb) == MAX_SPAN_MS // 60  # 8 packets
    assert jb.buffer_ms <= MAX_SPAN_MS
    assert_balanced(jb)
