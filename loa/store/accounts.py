"""Users and their API tokens.

The store keeps only hashes: a password's scrypt encoding (made by ``loa.web.auth``, off the
event loop), and the SHA-256 of every API token and session id. Every change to a user or a
token writes its audit row in the same transaction, so no change goes unrecorded."""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from typing import Any

from loa.errors import BadRequest, Conflict, NotFound
from loa.store import audit
from loa.store.db import Conn, Database, Row, hash_token, new_token
from loa.store.zones import get_zone

ROLES = ("admin", "operator", "viewer")
TOUCH_EVERY_S = 60.0  # last_used is written at most once a minute
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    password_hash: str
    role: str
    zone: str | None
    emergency_right: bool
    disabled: bool
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Account:
        return cls(
            username=row["username"],
            password_hash=row["password_hash"],
            role=row["role"],
            zone=row["zone"],
            emergency_right=bool(row["emergency_right"]),
            disabled=bool(row["disabled"]),
            created_at=row["created_at"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "role": self.role,
            "zone": self.zone,
            "emergency_right": self.emergency_right or self.role == "admin",
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    username: str
    label: str
    created_at: float
    last_used: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "label": self.label,
            "created_at": self.created_at,
            "last_used": self.last_used,
        }


def check_username(username: object) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise BadRequest(
            f"username must be 1-32 of a-z 0-9 . _ - starting with a letter or digit, "
            f"got {username!r}"
        )
    return username


def check_role(role: str, zone: str | None) -> None:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {ROLES}, got {role!r}")
    if role == "operator" and zone is None:
        raise BadRequest("an operator needs a zone: the root of the subtree they may act in")
    if role == "admin" and zone is not None:
        raise BadRequest("an admin is not scoped to a zone; leave zone empty")


def get_account(conn: Conn, username: str) -> Account:
    row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
    if row is None:
        raise NotFound(f"user {username!r} does not exist", user=username)
    return Account.from_row(row)


def _add(conn: Conn, acc: Account, actor: str, ip: str | None) -> Account:
    if conn.execute("SELECT 1 FROM users WHERE username = ?", (acc.username,)).fetchone():
        raise Conflict(f"user {acc.username!r} already exists", user=acc.username)
    if acc.zone is not None:
        get_zone(conn, acc.zone)
    conn.execute(
        "INSERT INTO users (username, password_hash, role, zone, emergency_right, disabled,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            acc.username,
            acc.password_hash,
            acc.role,
            acc.zone,
            acc.emergency_right,
            acc.disabled,
            acc.created_at,
        ),
    )
    detail = {"role": acc.role, "zone": acc.zone, "emergency_right": acc.emergency_right}
    audit.insert(conn, acc.created_at, actor, "user.add", acc.username, detail, ip)
    return get_account(conn, acc.username)


def _first_admin(conn: Conn, acc: Account, token_hash: str | None) -> bool:
    if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone():
        return False
    _add(conn, acc, "system", None)
    if token_hash is not None:
        _insert_token(conn, acc.username, token_hash, "config admin_token", acc.created_at)
        audit.insert(
            conn,
            acc.created_at,
            "system",
            "token.add",
            acc.username,
            {"label": "config admin_token"},
        )
    return True


def _update(
    conn: Conn,
    username: str,
    changes: dict[str, Any],
    now: float,
    actor: str,
    ip: str | None,
) -> Account:
    current = get_account(conn, username)
    role = changes.get("role", current.role)
    zone = changes.get("zone", current.zone)
    check_role(role, zone)
    if zone is not None:
        get_zone(conn, zone)
    for column, value in changes.items():  # column names come from Users.update's whitelist
        conn.execute(f"UPDATE users SET {column} = ? WHERE username = ?", (value, username))
    if changes.get("disabled") or "password_hash" in changes:
        conn.execute("DELETE FROM sessions WHERE username = ?", (username,))
    shown = {k: v for k, v in changes.items() if k != "password_hash"}
    action = "user.passwd" if "password_hash" in changes and not shown else "user.update"
    audit.insert(conn, now, actor, action, username, shown, ip)
    return get_account(conn, username)


def _remove(conn: Conn, username: str, now: float, actor: str, ip: str | None) -> None:
    get_account(conn, username)
    conn.execute("DELETE FROM users WHERE username = ?", (username,))
    audit.insert(conn, now, actor, "user.remove", username, None, ip)


def _insert_token(conn: Conn, username: str, token_hash: str, label: str, now: float) -> int:
    row = conn.execute(
        "INSERT INTO api_tokens (hash, username, label, created_at) VALUES (?, ?, ?, ?)"
        " RETURNING id",
        (token_hash, username, label, now),
    ).fetchone()
    return int(row[0])


def _add_token(
    conn: Conn,
    username: str,
    token_hash: str,
    label: str,
    now: float,
    actor: str,
    ip: str | None,
) -> ApiToken:
    get_account(conn, username)
    token_id = _insert_token(conn, username, token_hash, label, now)
    audit.insert(conn, now, actor, "token.add", username, {"id": token_id, "label": label}, ip)
    return ApiToken(token_id, username, label, now, None)


def _tokens(conn: Conn, username: str | None) -> list[ApiToken]:
    sql = "SELECT id, username, label, created_at, last_used FROM api_tokens"
    rows = conn.execute(
        sql + " WHERE username = ? ORDER BY id" if username else sql + " ORDER BY id",
        (username,) if username else (),
    )
    return [ApiToken(**dict(r)) for r in rows]


def _revoke(conn: Conn, token_id: int, now: float, actor: str, ip: str | None) -> None:
    row = conn.execute(
        "SELECT username, label FROM api_tokens WHERE id = ?", (token_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"API token {token_id} does not exist", token=token_id)
    conn.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
    audit.insert(
        conn,
        now,
        actor,
        "token.revoke",
        row["username"],
        {"id": token_id, "label": row["label"]},
        ip,
    )


def _by_token(conn: Conn, token_hash: str, now: float) -> Account | None:
    row = conn.execute(
        "SELECT t.id AS token_id, t.last_used, u.* FROM api_tokens t"
        " JOIN users u USING (username) WHERE t.hash = ?",
        (token_hash,),
    ).fetchone()
    if row is None or row["disabled"]:
        return None
    if row["last_used"] is None or now - row["last_used"] >= TOUCH_EVERY_S:
        conn.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (now, row["token_id"]))
    return Account.from_row(row)


class Users:
    """Users and their API tokens. Mutations take ``actor`` (and ``ip``) for the audit row."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        username: str,
        password_hash: str,
        role: str,
        *,
        zone: str | None = None,
        emergency_right: bool = False,
        actor: str,
        ip: str | None = None,
    ) -> Account:
        check_role(role, zone)
        acc = Account(
            check_username(username),
            password_hash,
            role,
            zone,
            bool(emergency_right),
            False,
            self._db.clock(),
        )
        return await self._db.write(_add, acc, actor, ip)

    async def create_first_admin(self, password_hash: str, token: str | None) -> bool:
        """Create user ``admin`` if there are no users at all; ``token`` becomes its API token."""
        acc = Account("admin", password_hash, "admin", None, True, False, self._db.clock())
        token_hash = hash_token(token) if token else None
        return await self._db.write(_first_admin, acc, token_hash)

    async def count(self) -> int:
        return await self._db.run(
            lambda c: int(c.execute("SELECT count(*) FROM users").fetchone()[0])
        )

    async def get(self, username: str) -> Account:
        return await self._db.run(get_account, username)

    async def find(self, username: str) -> Account | None:
        try:
            return await self.get(username)
        except NotFound:
            return None

    async def list(self) -> list[Account]:
        rows = await self._db.run(
            lambda c: c.execute("SELECT * FROM users ORDER BY username").fetchall()
        )
        return [Account.from_row(r) for r in rows]

    async def update(
        self, username: str, *, actor: str, ip: str | None = None, **changes: Any
    ) -> Account:
        """Change role, zone, emergency_right, disabled or password_hash. A new password or
        disabling the user ends all their sessions."""
        allowed = {"role", "zone", "emergency_right", "disabled", "password_hash"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise BadRequest(f"user {username}: cannot change {', '.join(unknown)}")
        now = self._db.clock()
        return await self._db.write(_update, username, changes, now, actor, ip)

    async def remove(self, username: str, *, actor: str, ip: str | None = None) -> None:
        await self._db.write(_remove, username, self._db.clock(), actor, ip)

    # -- API tokens ------------------------------------------------------------------

    async def add_token(
        self, username: str, label: str = "", *, actor: str, ip: str | None = None
    ) -> tuple[ApiToken, str]:
        """A new API token for ``username``; the plain text is returned once, never stored."""
        if len(label) > 100:
            raise BadRequest("token label is longer than 100 characters")
        token = new_token(32)
        row = await self._db.write(
            _add_token, username, hash_token(token), label, self._db.clock(), actor, ip
        )
        return row, token

    async def tokens(self, username: str | None = None) -> builtins.list[ApiToken]:
        return await self._db.run(_tokens, username)

    async def revoke_token(self, token_id: int, *, actor: str, ip: str | None = None) -> None:
        await self._db.write(_revoke, token_id, self._db.clock(), actor, ip)

    async def by_token(self, token: str) -> Account | None:
        """The enabled user holding this API token (its last_used refreshed), else None."""
        return await self._db.write(_by_token, hash_token(token), self._db.clock())
