"""Webhooks against a local aiohttp receiver: signatures, retries with backoff, dead letters,
timeouts, bounded concurrency, and an outbox that survives a restart."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from loa.errors import BadRequest, NotFound
from loa.store import Store
from loa.store.presence import Interval
from loa.webhooks import (
    BadSignature,
    DeliveryPolicy,
    Webhooks,
    backoff_delay,
    sign,
    verify_signature,
)
from tests.store.conftest import province

SECRET = "s3cret-s3cret-s3cret"
FAST = DeliveryPolicy(max_attempts=8, backoff_s=0.01, backoff_max_s=0.05, timeout_s=2.0)


@dataclass
class Receiver:
    """A webhook receiver that checks every request with ``verify_signature``; ``answer``
    decides the status of each (by arrival number, from 1)."""

    url: str = ""
    got: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[int], Awaitable[int]] | None = None
    rejected: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            h = request.headers
            try:
                verify_signature(
                    SECRET,
                    h.get("X-Loa-Timestamp", ""),
                    body,
                    h.get("X-Loa-Signature"),
                    time.time(),
                )
            except BadSignature as exc:
                self.rejected.append(str(exc))
                return web.Response(status=401, text=str(exc))
            self.got.append({"at": time.monotonic(), "headers": dict(h), "body": json.loads(body)})
            status = 200 if self.answer is None else await self.answer(len(self.got))
            return web.Response(status=status, text="nope" if status >= 300 else "ok")
        finally:
            self.in_flight -= 1


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    app.router.add_post("/other", r.handle)
    server: TestServer = await aiohttp_server(app)
    r.url = str(server.make_url("/hook"))
    return r


@pytest.fixture
async def store(store_where: Path | str) -> AsyncIterator[Store]:
    s = await Store.open(store_where)
    await province(s)
    await s.endpoints.add("A", "Loa A", "v0")
    yield s
    await s.close()


@pytest.fixture
async def running(store: Store) -> AsyncIterator[Callable[..., Awaitable[Webhooks]]]:
    made: list[Webhooks] = []

    async def start(policy: DeliveryPolicy = FAST, **kw: Any) -> Webhooks:
        hooks = Webhooks(store, policy, **kw)
        await hooks.start()
        made.append(hooks)
        return hooks

    yield start
    for hooks in made:
        await hooks.close()


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``predicate`` (sync or async) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


# -- signatures -----------------------------------------------------------------------------


def test_verify_signature() -> None:
    body, now = b'{"id": 1}', 1_700_000_000
    header = sign(SECRET, str(now), body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    verify_signature(SECRET, str(now), body, header, now + 299)
    verify_signature(SECRET, now, body, header, now - 10)  # a receiver clock slightly behind
    cases = [
        (SECRET, str(now), b'{"id": 2}', header, now, "does not match the body and timestamp"),
        ("another-secret-value", str(now), body, header, now, "does not match"),
        (SECRET, str(now + 1), body, header, now, "does not match"),
        (SECRET, str(now), body, header, now + 400, r"is 400 s old; the tolerance is 300 s"),
        (SECRET, str(now), body, header, now - 301, r"is 301 s ahead; the tolerance is 300 s"),
        (SECRET, "yesterday", body, header, now, r"must be Unix seconds, got 'yesterday'"),
        (SECRET, str(now), body, None, now, r"must be 'sha256=<hex>'"),
        (SECRET, str(now), body, header.replace("sha256=", "sha1="), now, "'sha256=<hex>'"),
    ]
    for secret, ts, data, head, at, message in cases:
        with pytest.raises(BadSignature, match=message):
            verify_signature(secret, ts, data, head, at)
    assert issubclass(BadSignature, ValueError)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 20.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 20, 20]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_attempts": 0}, r"max_attempts must be >= 1, got 0"),
        ({"backoff_s": 5.0, "backoff_max_s": 1.0}, r"need 0 < backoff_s <= backoff_max_s"),
        ({"concurrency": 0}, r"concurrency >= 1, got 10.0, 0"),
    ],
)
def test_policy_is_checked(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeliveryPolicy(**kw)


async def test_the_receiver_rejects_tampered_and_stale_requests(
    store: Store, receiver: Receiver, running: Any
) -> None:
    """What a real receiver sees: a signed delivery passes; the same request with its body
    changed, or replayed with a stale timestamp, is refused."""
    await store.webhooks.add(receiver.url, ["endpoint.online"], SECRET)
    hooks = await running()
    hooks.presence("A", True, 1.0)
    await until(lambda: len(receiver.got) == 1)
    good = receiver.got[0]
    body = json.dumps(good["body"]).encode()
    ts = str(int(time.time()))
    async with ClientSession() as http:
        for data, stamp in [
            (body.replace(b'"online": true', b'"online": false'), ts),
            (body, str(int(time.time()) - 600)),
        ]:
            headers = {"X-Loa-Timestamp": stamp, "X-Loa-Signature": sign(SECRET, ts, body)}
            async with http.post(receiver.url, data=data, headers=headers) as resp:
                assert resp.status == 401
    assert receiver.rejected[0] == "X-Loa-Signature does not match the body and timestamp"
    assert re.fullmatch(
        r"X-Loa-Timestamp is 60\d s old; the tolerance is 300 s", receiver.rejected[1]
    )
    assert len(receiver.got) == 1


# -- subscriptions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", r"^url must be http:// or https://, got 'ftp://example.com/x'$"),
        ("example.com/hook", r"^url must be http:// or https://"),
        ("http:///hook", r"^url 'http:///hook' has no host$"),
        ("https://", r"^url 'https://' has no host$"),
        ("http://a:99999/", r"^url 'http://a:99999/' has an invalid port$"),
        ("http://u:p@example.com/", r"^url may not carry credentials"),
        ("http://exa mple.com/", r"contains whitespace or control characters$"),
        ("", r"^url must be a non-empty string, got ''$"),
        (7, r"^url must be a non-empty string, got 7$"),
        ("http://x/" + "a" * 2000, r"^url is longer than 2000 characters$"),
    ],
)
async def test_bad_urls(store: Store, url: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        await store.webhooks.add(url, ["endpoint.online"])
    assert info.value.fields == {"field": "url"}


async def test_bad_events_and_secrets(store: Store) -> None:
    with pytest.raises(BadRequest, match=r"^events must be a non-empty list out of"):
        await store.webhooks.add("http://x/", [])
    with pytest.raises(BadRequest, match=r"^unknown events \['endpoint.gone'\]; choose from"):
        await store.webhooks.add("http://x/", ["endpoint.online", "endpoint.gone"])
    with pytest.raises(BadRequest, match=r"^secret must be a string of 16..256 characters$"):
        await store.webhooks.add("http://x/", ["endpoint.online"], "short")
    hook = await store.webhooks.add("https://x/", ["endpoint.offline", "endpoint.online"])
    assert len(hook.secret) == 64 and hook.events == ("endpoint.online", "endpoint.offline")
    assert "secret" not in hook.as_json()
    with pytest.raises(NotFound, match=r"^webhook 99 not found$"):
        await store.webhooks.remove(99)


# -- delivery ---------------------------------------------------------------------------------


async def test_events_are_signed_and_delivered(
    store: Store, receiver: Receiver, running: Any
) -> None:
    await store.webhooks.add(receiver.url, ["endpoint.online", "endpoint.offline"], SECRET)
    logs = await store.webhooks.add(
        receiver.url.replace("/hook", "/other"), ["broadcast.logged"], SECRET
    )
    hooks = await running()
    hooks.presence("A", True, 1000.0)
    hooks.presence("A", True, 1001.0)  # a reconnection that replaced its ghost: no change
    hooks.presence("A", False, 1500.0)
    hooks.logged({"id": "bc1", "class": "emergency", "heard_s": {"A": 12.5}})
    await until(lambda: len(receiver.got) == 3)
    events = sorted(receiver.got, key=lambda g: g["body"]["id"])
    assert [g["headers"]["X-Loa-Event"] for g in events] == [
        "endpoint.online",
        "endpoint.offline",
        "broadcast.logged",
    ]
    online = events[0]
    assert online["headers"]["X-Loa-Delivery"] == str(online["body"]["id"])
    assert online["headers"]["Content-Type"] == "application/json"
    assert online["body"]["event"] == "endpoint.online"
    assert online["body"]["data"] == {"endpoint": "A", "zone": "v0", "online": True, "at": 1000.0}
    assert events[2]["body"]["data"] == {"id": "bc1", "class": "emergency", "heard_s": {"A": 12.5}}
    # the presence interval was recorded with the events
    assert await store.presence.intervals(0, 2000) == [Interval("A", 1000.0, 1500.0)]
    (delivered,) = await store.webhooks.deliveries(logs.id)
    assert (delivered.state, delivered.attempts, delivered.last_error) == ("delivered", 1, None)


async def test_fails_twice_then_succeeds_after_growing_delays(
    store: Store, receiver: Receiver, running: Any
) -> None:
    async def answer(n: int) -> int:
        return 500 if n <= 2 else 204

    receiver.answer = answer
    hook = await store.webhooks.add(receiver.url, ["endpoint.online"], SECRET)
    hooks = await running(DeliveryPolicy(backoff_s=0.2, backoff_max_s=10.0))
    hooks.presence("A", True, 1.0)

    async def delivered() -> bool:
        return [d.state for d in await store.webhooks.deliveries(hook.id)] == ["delivered"]

    await until(delivered)
    await asyncio.sleep(0.3)
    assert len(receiver.got) == 3  # exactly: nothing after the success
    assert len({g["headers"]["X-Loa-Delivery"] for g in receiver.got}) == 1
    first, second = (b["at"] - a["at"] for a, b in pairwise(receiver.got))
    assert first >= 0.2 and second >= 0.4 and second > first
    (row,) = await store.webhooks.deliveries(hook.id)
    assert (row.attempts, row.last_error, row.dead_at) == (3, None, None)


async def test_dead_letter_after_max_attempts(
    store: Store, receiver: Receiver, running: Any
) -> None:
    async def answer(n: int) -> int:
        return 500

    receiver.answer = answer
    hook = await store.webhooks.add(receiver.url, ["endpoint.online"], SECRET)
    hooks = await running(DeliveryPolicy(max_attempts=3, backoff_s=0.01, backoff_max_s=0.02))
    hooks.presence("A", True, 1.0)

    async def dead() -> bool:
        return [d.state for d in await store.webhooks.deliveries(hook.id)] == ["dead"]

    await until(dead)
    (row,) = await store.webhooks.deliveries(hook.id, state="dead")
    assert (row.attempts, row.last_error) == (3, "HTTP 500: nope")
    assert row.dead_at is not None and row.delivered_at is None
    await asyncio.sleep(0.1)
    assert len(receiver.got) == 3  # and no more after the last
    assert {g["headers"]["X-Loa-Delivery"] for g in receiver.got} == {str(row.id)}


async def test_a_receiver_that_does_not_answer_times_out(
    store: Store, receiver: Receiver, running: Any
) -> None:
    async def answer(n: int) -> int:
        if n == 1:
            await asyncio.sleep(1.0)
        return 200

    receiver.answer = answer
    hook = await store.webhooks.add(receiver.url, ["endpoint.online"], SECRET)
    hooks = await running(DeliveryPolicy(timeout_s=0.2, backoff_s=0.05))
    hooks.presence("A", True, 1.0)

    async def delivered() -> bool:
        return [d.state for d in await store.webhooks.deliveries(hook.id)] == ["delivered"]

    await until(delivered)
    (row,) = await store.webhooks.deliveries(hook.id)
    assert row.attempts == 2 and len(receiver.got) == 2


async def test_last_error_names_the_failure(store: Store, running: Any) -> None:
    hook = await store.webhooks.add("http://127.0.0.1:9/hook", ["endpoint.online"], SECRET)
    hooks = await running(DeliveryPolicy(max_attempts=1))
    hooks.presence("A", True, 1.0)

    async def dead() -> bool:
        return [d.state for d in await store.webhooks.deliveries(hook.id)] == ["dead"]

    await until(dead)
    (row,) = await store.webhooks.deliveries(hook.id)
    assert row.last_error is not None and row.last_error.startswith("ClientConnectorError: ")


async def test_concurrency_is_bounded(store: Store, receiver: Receiver, running: Any) -> None:
    """At most ``concurrency`` attempts in flight overall, and one per hook."""

    async def answer(n: int) -> int:
        await asyncio.sleep(0.05)
        return 200

    receiver.answer = answer
    for _ in range(3):
        await store.webhooks.add(receiver.url, ["endpoint.online", "endpoint.offline"], SECRET)
    hooks = await running(DeliveryPolicy(concurrency=2))
    for n in range(3):
        hooks.presence("A", True, 10.0 * n)
        hooks.presence("A", False, 10.0 * n + 5)
    await until(lambda: len(receiver.got) == 18)
    assert receiver.max_in_flight == 2


async def test_one_attempt_in_flight_per_hook(
    store: Store, receiver: Receiver, running: Any
) -> None:
    """A slow or dead receiver holds one slot, never all of them."""

    async def answer(n: int) -> int:
        await asyncio.sleep(0.05)
        return 200

    receiver.answer = answer
    hook = await store.webhooks.add(receiver.url, ["endpoint.online"], SECRET)
    hooks = await running(DeliveryPolicy(concurrency=4))
    for n in range(4):
        await store.webhooks.enqueue_test(hook.id, {"n": n})
    hooks.wake()
    await until(lambda: len(receiver.got) == 4)
    assert receiver.max_in_flight == 1
    assert [g["body"]["data"]["n"] for g in receiver.got] == [0, 1, 2, 3]


async def test_the_outbox_survives_a_restart(
    store_where: Path | str, store: Store, receiver: Receiver
) -> None:
    """An event queued and not delivered when the relay stops is delivered by the next run."""
    up = False

    async def answer(n: int) -> int:
        return 200 if up else 503

    receiver.answer = answer
    hook = await store.webhooks.add(receiver.url, ["broadcast.logged"], SECRET)
    first = Webhooks(store, DeliveryPolicy(backoff_s=0.5))
    await first.start()
    first.logged({"id": "bc1"})
    await until(lambda: len(receiver.got) == 1)

    async def failure_recorded() -> bool:
        # An attempt still in flight at close() is retried by the next run, not recorded:
        # wait for this one's 503 to be written (PostgreSQL's SERIALIZABLE write can lag).
        return [r.attempts for r in await store.webhooks.deliveries(hook.id)] == [1]

    await until(failure_recorded)
    await first.close()
    await store.close()

    up = True
    later = await Store.open(store_where)
    try:
        (row,) = await later.webhooks.deliveries(hook.id)
        assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 503: nope")
        second = Webhooks(later, FAST)
        await second.start()
        try:
            await until(lambda: len(receiver.got) == 2)
            assert receiver.got[1]["body"] == receiver.got[0]["body"]  # same delivery id
            assert receiver.got[1]["body"]["data"] == {"id": "bc1"}
            assert receiver.rejected == []

            async def delivered() -> bool:
                return (await later.webhooks.delivery(row.id)).state == "delivered"

            await until(delivered)
        finally:
            await second.close()
    finally:
        await later.close()


async def test_queued_events_are_written_on_close(store: Store) -> None:
    """close() writes what the node queued while shutting down: offline, then the interval."""
    hook = await store.webhooks.add("http://127.0.0.1:9/", ["endpoint.offline"], SECRET)
    hooks = Webhooks(store, DeliveryPolicy(backoff_s=3600, backoff_max_s=3600))
    await hooks.start()
    hooks.presence("A", True, 100.0)
    hooks.presence("A", False, 200.0)
    await hooks.close()
    assert await store.presence.intervals(0, 1000) == [Interval("A", 100.0, 200.0)]
    (row,) = await store.webhooks.deliveries(hook.id)
    assert row.event == "endpoint.offline" and row.payload["at"] == 200.0


async def test_a_full_queue_drops_and_counts(store: Store) -> None:
    hooks = Webhooks(store, max_queue=2)
    for n in range(5):
        hooks.presence("A", n % 2 == 0, float(n))
    assert hooks.dropped == 3


async def test_test_delivery_and_pruning(store: Store, receiver: Receiver, running: Any) -> None:
    hook = await store.webhooks.add(receiver.url, ["endpoint.online"], SECRET)
    row = await store.webhooks.enqueue_test(hook.id, {"hook": hook.id})
    assert (row.event, row.state, row.attempts) == ("webhook.test", "pending", 0)
    await running()
    await until(lambda: len(receiver.got) == 1)
    assert receiver.got[0]["headers"]["X-Loa-Event"] == "webhook.test"

    async def delivered() -> bool:
        return (await store.webhooks.delivery(row.id)).state == "delivered"

    await until(delivered)
    done = await store.webhooks.delivery(row.id)
    assert done.delivered_at is not None
    assert await store.webhooks.prune(done.delivered_at) == 0
    assert await store.webhooks.prune(done.delivered_at + 1) == 1
    with pytest.raises(NotFound, match=rf"^delivery {row.id} not found$"):
        await store.webhooks.delivery(row.id)
    with pytest.raises(
        BadRequest, match=r"^state must be one of \('pending', 'delivered', 'dead'\)"
    ):
        await store.webhooks.deliveries(hook.id, state="lost")
    with pytest.raises(NotFound, match=r"^webhook 99 not found$"):
        await store.webhooks.enqueue_test(99, {})


async def test_presence_is_checkpointed_while_running(store: Store, running: Any) -> None:
    """Every checkpoint_s the open intervals are stamped alive, so a crash loses at most that
    much: the next start closes them at the last stamp."""
    now = [1000.0]
    hooks = await running(checkpoint_s=0.05, clock=lambda: now[0])
    hooks.presence("A", True, 1000.0)
    await until(lambda: store.presence.online())
    now[0] = 4000.0
    await asyncio.sleep(0.2)  # a few checkpoints
    assert await store.presence.close_orphans() == 1  # what the next start would do
    assert await store.presence.intervals(0, 10_000) == [Interval("A", 1000.0, 4000.0)]
