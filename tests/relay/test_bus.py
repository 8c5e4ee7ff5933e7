"""The Redis bus against a real redis-server of the suite's own: presence, the leader lease
(one leader, stepping down before the lease can lapse, tokens that keep growing), fencing,
the sequenced lifecycle channel, per-node audio bundles, bad input, and reconnection after
Redis is killed and restarted."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from loa.cluster.bundle import Bundle, Bundler, Packet
from loa.cluster.keys import Keys
from loa.cluster.lease import LeaseTiming
from loa.cluster.messages import (
    Assignment,
    BroadcastStarted,
    BroadcastStopped,
    Envelope,
    ItemBoundary,
    NodeStatus,
    SpeakerCommand,
)
from loa.localservers import RedisServer
from loa.relay.bus import Bus, BusConfig, Handlers, NotLeader

pytestmark = pytest.mark.e2e
FAST = LeaseTiming(ttl_s=1.0, renew_every_s=0.25, margin_s=0.1, drift=0.01)
KEYS = Keys("t")


async def until(cond: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``cond`` (sync, or returning an awaitable) every 10 ms until it holds."""
    async with asyncio.timeout(timeout):
        while True:
            result = cond()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


async def nodes_are(bus: Bus, expected: list[str]) -> bool:
    return sorted(await bus.nodes()) == expected


class Recorder:
    """Handlers that keep what arrives."""

    def __init__(self) -> None:
        self.lifecycle: list[Envelope] = []
        self.commands: list[Envelope] = []
        self.status: list[Envelope] = []
        self.audio: list[Bundle] = []
        self.resyncs: list[str] = []
        self.leadership: list[bool] = []

    def handlers(self) -> Handlers:
        return Handlers(
            self.lifecycle.append, self.commands.append, self.status.append,
            self.audio.append, self.resyncs.append, self.leadership.append,
        )  # fmt: skip


Factory = Callable[..., Awaitable[tuple[Bus, Recorder]]]


@pytest.fixture
async def make_bus(redis_url: str) -> AsyncIterator[Factory]:
    made: list[Bus] = []

    async def make(node: str, url: str = redis_url, **kw: Any) -> tuple[Bus, Recorder]:
        rec = Recorder()
        kw.setdefault("lease", FAST)
        kw.setdefault("presence_ttl_s", 1.0)
        kw.setdefault("backoff_min_s", 0.05)
        kw.setdefault("backoff_max_s", 0.3)
        bus = Bus(BusConfig(url, node, cluster="t", **kw), rec.handlers())
        await bus.start()
        made.append(bus)
        await until(lambda: "connected" in rec.resyncs)
        return bus, rec

    yield make
    for bus in made:
        await bus.close()


async def test_presence_lists_live_nodes_and_forgets_closed_ones(make_bus: Factory) -> None:
    a, _ = await make_bus("n1", public_url="http://10.0.0.1:8080", capacity=1500)
    b, _ = await make_bus("n2")
    await until(lambda: nodes_are(a, ["n1", "n2"]))
    nodes = await b.nodes()
    assert nodes["n1"] == {"node": "n1", "public_url": "http://10.0.0.1:8080", "capacity": 1500}
    await b.close()
    assert sorted(await a.nodes()) == ["n1"]  # a clean close deletes the key at once


async def test_a_dead_nodes_presence_expires(make_bus: Factory, redis_url: str) -> None:
    a, _ = await make_bus("n1")
    b, _ = await make_bus("n2")
    for task in b._tasks:  # the process "dies": nothing refreshes or deletes its key
        task.cancel()
    await until(lambda: nodes_are(a, ["n1"]))
    b._tasks = []


async def test_one_leader_and_the_next_takes_over_with_a_higher_token(
    make_bus: Factory,
) -> None:
    buses = [await make_bus(f"n{i}") for i in range(3)]
    await until(lambda: sum(b.is_leader() for b, _ in buses) == 1, 5)
    await asyncio.sleep(0.6)  # renewals keep it: still one, the same one
    leaders = [b for b, _ in buses if b.is_leader()]
    assert len(leaders) == 1
    first = leaders[0]
    token = first.token
    assert token is not None
    rec = next(r for b, r in buses if b is first)
    assert rec.leadership == [True]
    await first.close()
    rest = [b for b, _ in buses if b is not first]
    await until(lambda: any(b.is_leader() for b in rest), 5)
    (second,) = [b for b in rest if b.is_leader()]
    assert second.token is not None and second.token > token


async def test_a_leader_that_cannot_renew_steps_down_before_the_lease_lapses(
    make_bus: Factory, own_redis: RedisServer
) -> None:
    timing = LeaseTiming(ttl_s=1.5, renew_every_s=0.3, margin_s=0.3, drift=0.01)
    bus, rec = await make_bus("n1", url=own_redis.url, lease=timing)
    await until(bus.is_leader, 5)
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)  # every request now hangs
    try:
        await until(lambda: rec.leadership == [True, False], 3)
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    async with aioredis.Redis.from_url(own_redis.url) as r:
        pttl = await r.pttl(KEYS.leader)
    assert pttl > 0  # it stepped down while Redis still held its lease: nobody else had it


async def test_fenced_commands_of_a_deposed_leader_are_ignored(
    make_bus: Factory, redis_url: str
) -> None:
    leader, _ = await make_bus("n1")
    follower, seen = await make_bus("n2")
    await until(leader.is_leader, 5)
    old = leader.token
    assert old is not None
    await leader.publish_command(SpeakerCommand("e1", "volume", 30), fenced=True)
    await until(lambda: len(seen.commands) == 1)
    assert seen.commands[0].fence == old
    # a successor's command raises the follower's floor; the old leader's late one is ignored
    async with aioredis.Redis.from_url(redis_url) as r:
        await r.publish(KEYS.commands, bytes(Envelope(0, "n9", old + 1, ItemBoundary("x", "n9"))))
        await r.publish(KEYS.commands, bytes(Envelope(0, "n1", old, SpeakerCommand("e1", "stop"))))
        await r.publish(KEYS.commands, bytes(Envelope(0, "n3", None, SpeakerCommand("e1", "stop"))))
    await until(lambda: len(seen.commands) == 3)
    assert [e.sender for e in seen.commands] == ["n1", "n9", "n3"]
    assert follower.stats.dropped_stale == 1 and follower.fence.refused == 1
    with pytest.raises(NotLeader, match="node n2 does not hold the leader lease"):
        await follower.publish_command(SpeakerCommand("e1", "stop"), fenced=True)


async def test_leader_state_is_written_only_while_the_lease_is_ours(
    make_bus: Factory, redis_url: str
) -> None:
    leader, _ = await make_bus("n1")
    _, seen = await make_bus("n2")
    await until(leader.is_leader, 5)
    assert await leader.set_assignment(Assignment(1, {"c0": "n1"}))
    await until(lambda: len(seen.commands) == 1)
    assert seen.commands[0].message == Assignment(1, {"c0": "n1"})
    stored = await leader.assignment()
    assert stored is not None and stored.fence == leader.token
    async with aioredis.Redis.from_url(redis_url) as r:  # the lease passed to another node
        await r.set(KEYS.leader, "n7 99")
    assert leader.is_leader()  # it does not know yet...
    assert not await leader.set_assignment(Assignment(2, {"c0": "n2"}))  # ...Redis refuses
    assert not leader.is_leader()
    stored = await leader.assignment()
    assert stored is not None and stored.message == Assignment(1, {"c0": "n1"})


async def test_lifecycle_events_arrive_in_one_order_everywhere(make_bus: Factory) -> None:
    a, seen_a = await make_bus("n1")
    b, seen_b = await make_bus("n2")
    sent = []
    for i in range(20):
        bus = a if i % 2 else b
        sent.append(await bus.publish_lifecycle(BroadcastStopped(f"bc{i}", "finished", "n1")))
    await until(lambda: len(seen_a.lifecycle) == 20 and len(seen_b.lifecycle) == 20)
    assert sent == list(range(1, 21))
    for seen in (seen_a, seen_b):
        assert [e.seq for e in seen.lifecycle] == sent
        assert [e.message.id for e in seen.lifecycle] == [f"bc{i}" for i in range(20)]  # type: ignore[attr-defined]
    assert seen_a.resyncs == ["connected"]


async def test_a_gap_in_the_lifecycle_sequence_asks_for_a_resync(
    make_bus: Factory, redis_url: str
) -> None:
    a, seen = await make_bus("n1")
    await a.publish_lifecycle(ItemBoundary("bc", "n1"))
    async with aioredis.Redis.from_url(redis_url) as r:
        await r.set(KEYS.lifecycle_seq, 10)  # as if messages 2..10 were missed
    await a.publish_lifecycle(ItemBoundary("bc", "n1"))
    await until(lambda: len(seen.lifecycle) == 2)
    assert seen.resyncs == ["connected", "gap"] and a.stats.gaps == 1


def started(bc_id: str, node: str) -> BroadcastStarted:
    return BroadcastStarted(bc_id, "scheduled", None, ("p",), (), None, False, None, True,
                            False, node, 1.0, "tone")  # fmt: skip


async def test_the_on_air_snapshot_follows_each_nodes_starts_and_stops(
    make_bus: Factory, redis_url: str
) -> None:
    """Each node's starts and stops of its own broadcasts update its snapshot in the
    lifecycle script; a stop named by another node (an operator's, relayed to the encoding
    node) does not; a rewrite replaces it; a bad entry is dropped and counted."""
    a, _ = await make_bus("n1")
    b, _ = await make_bus("n2")
    await a.publish_lifecycle(started("bc1", "n1"))
    await a.publish_lifecycle(started("bc2", "n1"))
    await b.publish_lifecycle(started("bc3", "n2"))
    assert {n: sorted(m) for n, m in (await b.onair()).items()} == {
        "n1": ["bc1", "bc2"], "n2": ["bc3"],
    }  # fmt: skip
    assert (await b.onair())["n1"]["bc1"] == started("bc1", "n1")
    await b.publish_lifecycle(BroadcastStopped("bc1", "stopped", "n1"))  # asks n1 to stop it
    assert sorted((await a.onair())["n1"]) == ["bc1", "bc2"]
    await a.publish_lifecycle(BroadcastStopped("bc1", "stopped", "n1"))  # n1 stopped it
    await b.publish_lifecycle(BroadcastStopped("bc3", "finished", "n2"))
    assert {n: sorted(m) for n, m in (await a.onair()).items()} == {"n1": ["bc2"]}
    await a.rewrite_onair([started("bc4", "n1")])  # after a reconnection
    assert {n: sorted(m) for n, m in (await b.onair()).items()} == {"n1": ["bc4"]}
    async with aioredis.Redis.from_url(redis_url) as r:
        await r.hset(KEYS.onair("n2"), "bad", b"{not json")
    assert {n: sorted(m) for n, m in (await b.onair()).items()} == {"n1": ["bc4"]}
    assert b.stats.dropped_bad == 1
    await a.rewrite_onair([])
    assert "n1" not in await b.onair()


async def test_audio_bundles_reach_only_their_node(make_bus: Factory, redis_url: str) -> None:
    sender, _ = await make_bus("n1")
    _, two = await make_bus("n2")
    _, three = await make_bus("n3")
    bundler = Bundler("n1")
    bundler.route("bc-1", {"n2", "n3"})
    bundler.route("bc-2", {"n3"})
    for tick in range(5):
        bundler.add(Packet("bc-1", tick, 0, b"\xfc" * 80))
        bundler.add(Packet("bc-2", tick, 0, b"\xf8" * 60))
        await sender.send_audio(bundler.flush(1_700_000_000_000_000 + tick * 20_000, tick))
    await until(lambda: len(two.audio) == 5 and len(three.audio) == 5)
    assert [len(b.packets) for b in two.audio] == [1] * 5
    assert [len(b.packets) for b in three.audio] == [2] * 5
    assert [b.tick for b in three.audio] == list(range(5))
    assert sender.stats.audio_messages == 10  # one message per tick per receiving node


async def test_bad_messages_are_dropped_and_counted(make_bus: Factory, redis_url: str) -> None:
    bus, seen = await make_bus("n1")
    async with aioredis.Redis.from_url(redis_url) as r:
        await r.publish(KEYS.audio("n1"), b"LB\x01junk")
        await r.publish(KEYS.status, b"0 not json")
        await r.publish(KEYS.status, b"0 not json either")
        good = NodeStatus("n2", 1.0, {}, {})
        await r.publish(KEYS.status, bytes(Envelope(0, "n2", None, good)))
    await until(lambda: len(seen.status) == 1)
    assert bus.stats.dropped_bad == 3 and seen.audio == []


@pytest.mark.slow
async def test_redis_restart_reconnects_resubscribes_and_keeps_tokens_growing(
    make_bus: Factory, own_redis: RedisServer
) -> None:
    a, seen_a = await make_bus("n1", url=own_redis.url)
    b, seen_b = await make_bus("n2", url=own_redis.url)
    await until(lambda: a.is_leader() or b.is_leader(), 5)
    token = (a.token or b.token) or 0
    for _ in range(3):  # push the counter up, so a reset counter would show
        await a.publish_lifecycle(ItemBoundary("x", "n1"))
    own_redis.kill()  # everything in Redis is gone, the counter too
    await until(lambda: not a.is_leader() and not b.is_leader(), 3)
    own_redis.start()
    await until(lambda: "reconnected" in seen_a.resyncs and "reconnected" in seen_b.resyncs, 10)
    await until(lambda: a.is_leader() or b.is_leader(), 10)
    new_token = (a.token or b.token) or 0
    assert new_token > token  # the floor each node pushes survives the lost counter
    await b.publish_lifecycle(BroadcastStopped("after", "stopped", "n2"))
    await until(lambda: any(e.message == BroadcastStopped("after", "stopped", "n2")
                            for e in seen_a.lifecycle))  # fmt: skip
    await until(lambda: nodes_are(a, ["n1", "n2"]))
    assert a.stats.reconnects == 1


async def test_close_stops_every_task_and_is_idempotent(make_bus: Factory) -> None:
    bus, _ = await make_bus("n1")
    tasks = list(bus._tasks)
    await bus.close()
    assert all(t.done() for t in tasks)
    await bus.close()
    with pytest.raises(RuntimeError, match="the bus is not started"):
        await bus.nodes()


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="node_id must be non-empty without spaces, got 'a b'"):
        BusConfig("redis://127.0.0.1:1/0", "a b")


async def test_a_failing_handler_is_counted_and_the_listener_goes_on(
    redis_url: str,
) -> None:
    seen: list[str] = []

    def status(env: Envelope) -> None:
        assert isinstance(env.message, NodeStatus)
        if env.message.node == "boom":
            raise RuntimeError("a bug in the node's handler")
        seen.append(env.message.node)

    bus = Bus(BusConfig(redis_url, "n1", cluster="t", lease=FAST), Handlers(status=status))
    await bus.start()
    try:
        async with aioredis.Redis.from_url(redis_url) as r:

            async def subscribed() -> bool:
                [(_, count)] = await r.pubsub_numsub(KEYS.status)
                return bool(count)

            await until(subscribed, 5)
            for node in ("boom", "n2"):
                env = Envelope(0, node, None, NodeStatus(node, 1.0, {}, {}))
                await r.publish(KEYS.status, bytes(env))
        await until(lambda: seen == ["n2"])
        assert bus.stats.handler_errors == 1
    finally:
        await bus.close()
