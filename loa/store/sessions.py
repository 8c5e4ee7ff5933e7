"""Page sessions: a random id in the browser's cookie, its SHA-256 here, a CSRF token, and a
sliding expiry (12 h after the last use, written at most once a minute)."""

from __future__ import annotations

from dataclasses import dataclass

from loa.store.accounts import TOUCH_EVERY_S, Account, get_account
from loa.store.db import Conn, Database, hash_token, new_token

SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    csrf: str
    created_at: float
    expires_at: float


def _new_session(
    conn: Conn, username: str, sid_hash: str, csrf: str, now: float, ttl: float
) -> Session:
    get_account(conn, username)
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
    conn.execute(
        "INSERT INTO sessions (hash, username, csrf, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (sid_hash, username, csrf, now, now + ttl),
    )
    return Session(username, csrf, now, now + ttl)


def _session(conn: Conn, sid_hash: str, now: float, ttl: float) -> tuple[Session, Account] | None:
    row = conn.execute(
        "SELECT s.csrf, s.created_at AS s_created, s.expires_at, u.* FROM sessions s"
        " JOIN users u USING (username) WHERE s.hash = ?",
        (sid_hash,),
    ).fetchone()
    if row is None:
        return None
    if row["expires_at"] <= now or row["disabled"]:
        conn.execute("DELETE FROM sessions WHERE hash = ?", (sid_hash,))
        return None
    expires = row["expires_at"]
    if now + ttl - expires >= TOUCH_EVERY_S:  # sliding expiry, written at most once a minute
        expires = now + ttl
        conn.execute("UPDATE sessions SET expires_at = ? WHERE hash = ?", (expires, sid_hash))
    session = Session(row["username"], row["csrf"], row["s_created"], expires)
    return session, Account.from_row(row)


class Sessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def new(self, username: str, ttl_s: float = SESSION_TTL_S) -> tuple[str, Session]:
        """A new session: returns the session id (for the cookie; stored hashed) and its row."""
        sid, csrf = new_token(32), new_token(32)
        row = await self._db.write(
            _new_session, username, hash_token(sid), csrf, self._db.clock(), ttl_s
        )
        return sid, row

    async def get(self, sid: str, ttl_s: float = SESSION_TTL_S) -> tuple[Session, Account] | None:
        """The live session and its enabled user, its expiry slid forward; else None."""
        return await self._db.write(_session, hash_token(sid), self._db.clock(), ttl_s)

    async def end(self, sid: str) -> None:
        await self._db.run(
            lambda c: c.execute("DELETE FROM sessions WHERE hash = ?", (hash_token(sid),))
        )
