"""Users, API tokens and sessions in the store; every user change leaves an audit row."""

from __future__ import annotations

import pytest

from loa.errors import BadRequest, Conflict, NotFound
from loa.store import Store
from tests.store.conftest import FakeClock, province

HASH = "scrypt$16384$8$1$c2FsdA$a2V5"


async def test_user_crud_is_audited(store: Store) -> None:
    await province(store)
    acc = await store.users.add(
        "op", HASH, "operator", zone="c0", emergency_right=True, actor="admin", ip="10.0.0.1"
    )
    assert acc.as_json() == {
        "username": "op",
        "role": "operator",
        "zone": "c0",
        "emergency_right": True,
        "disabled": False,
        "created_at": 1_700_000_000.0,
    }
    await store.users.update("op", zone="c1", emergency_right=False, actor="admin")
    await store.users.update("op", password_hash="scrypt$new", actor="op")
    assert (await store.users.get("op")).password_hash == "scrypt$new"
    await store.users.remove("op", actor="admin")
    assert await store.users.find("op") is None
    trail = [(r.user, r.action, r.target, r.detail) for r in reversed(await store.audit.query())]
    assert trail == [
        ("admin", "user.add", "op", {"role": "operator", "zone": "c0", "emergency_right": True}),
        ("admin", "user.update", "op", {"zone": "c1", "emergency_right": False}),
        ("op", "user.passwd", "op", {}),
        ("admin", "user.remove", "op", {}),
    ]
    assert "scrypt" not in str(trail)


async def test_user_errors(store: Store) -> None:
    await province(store)
    await store.users.add("op", HASH, "operator", zone="c0", actor="t")
    cases = [
        (
            lambda: store.users.add("op", HASH, "viewer", actor="t"),
            Conflict,
            "user 'op' already exists",
        ),
        (
            lambda: store.users.add("Op!", HASH, "viewer", actor="t"),
            BadRequest,
            "username must be 1-32 of a-z 0-9 . _ - starting with a letter or digit, got 'Op!'",
        ),
        (
            lambda: store.users.add("x", HASH, "root", actor="t"),
            BadRequest,
            "role must be one of ('admin', 'operator', 'viewer'), got 'root'",
        ),
        (
            lambda: store.users.add("x", HASH, "operator", actor="t"),
            BadRequest,
            "an operator needs a zone: the root of the subtree they may act in",
        ),
        (
            lambda: store.users.add("x", HASH, "admin", zone="p", actor="t"),
            BadRequest,
            "an admin is not scoped to a zone; leave zone empty",
        ),
        (
            lambda: store.users.add("x", HASH, "viewer", zone="mars", actor="t"),
            NotFound,
            "zone 'mars' does not exist",
        ),
        (
            lambda: store.users.update("op", zone=None, actor="t"),
            BadRequest,
            "an operator needs a zone: the root of the subtree they may act in",
        ),
        (
            lambda: store.users.update("op", created_at=1.0, actor="t"),
            BadRequest,
            "user op: cannot change created_at",
        ),
        (lambda: store.users.get("ghost"), NotFound, "user 'ghost' does not exist"),
        (lambda: store.users.revoke_token(99, actor="t"), NotFound, "API token 99 does not exist"),
        (
            lambda: store.users.add_token("ghost", actor="t"),
            NotFound,
            "user 'ghost' does not exist",
        ),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as info:
            await call()
        assert info.value.message == message
    assert await store.users.count() == 1


async def test_api_tokens(store: Store, clock: FakeClock) -> None:
    await store.users.add("v", HASH, "viewer", actor="t")
    row, token = await store.users.add_token("v", "grafana", actor="t")
    assert len(token) == 43 and row.label == "grafana" and row.last_used is None
    assert (await store.users.by_token(token)).username == "v"  # type: ignore[union-attr]
    assert (await store.users.tokens("v"))[0].last_used == clock.now
    clock.advance(30)
    await store.users.by_token(token)
    assert (await store.users.tokens())[0].last_used == clock.now - 30  # at most once a minute
    clock.advance(31)
    await store.users.by_token(token)
    assert (await store.users.tokens())[0].last_used == clock.now
    assert await store.users.by_token("wrong") is None
    await store.users.update("v", disabled=True, actor="t")
    assert await store.users.by_token(token) is None
    await store.users.update("v", disabled=False, actor="t")
    await store.users.revoke_token(row.id, actor="t")
    assert await store.users.by_token(token) is None
    actions = [r.action for r in await store.audit.query(action="token.")]
    assert actions == ["token.revoke", "token.add"]


async def test_sessions_slide_expire_and_end(store: Store, clock: FakeClock) -> None:
    await store.users.add("v", HASH, "viewer", actor="t")
    sid, session = await store.sessions.new("v", ttl_s=3600)
    assert session.expires_at == clock.now + 3600 and len(session.csrf) == 43
    stored = await store.db.run(lambda c: c.execute("SELECT hash FROM sessions").fetchone()[0])
    assert stored != sid and len(stored) == 64  # only the hash is stored
    clock.advance(3000)
    found = await store.sessions.get(sid, ttl_s=3600)
    assert found is not None and found[0].expires_at == clock.now + 3600  # slid
    clock.advance(3599)
    assert await store.sessions.get(sid, ttl_s=3600) is not None
    clock.advance(3601)
    assert await store.sessions.get(sid, ttl_s=3600) is None  # expired and deleted
    assert (
        await store.db.run(lambda c: c.execute("SELECT count(*) FROM sessions").fetchone()[0]) == 0
    )
    sid2, _ = await store.sessions.new("v")
    await store.sessions.end(sid2)
    assert await store.sessions.get(sid2) is None


async def test_new_password_or_disabling_ends_sessions(store: Store) -> None:
    await store.users.add("v", HASH, "viewer", actor="t")
    sid, _ = await store.sessions.new("v")
    await store.users.update("v", password_hash="scrypt$other", actor="v")
    assert await store.sessions.get(sid) is None
    sid, _ = await store.sessions.new("v")
    await store.users.update("v", disabled=True, actor="t")
    assert await store.sessions.get(sid) is None


async def test_first_admin_only_once(store: Store) -> None:
    assert await store.users.create_first_admin(HASH, "prov-token") is True
    admin = await store.users.get("admin")
    assert (admin.role, admin.zone, admin.emergency_right) == ("admin", None, True)
    assert (await store.users.by_token("prov-token")).username == "admin"  # type: ignore[union-attr]
    assert await store.users.create_first_admin(HASH, "other") is False
    assert await store.users.by_token("other") is None
    assert [t.label for t in await store.users.tokens("admin")] == ["config admin_token"]
