"""Idempotency keys of ``POST /broadcasts``: per account, the request's fingerprint and the
answer it got, kept for ``KEEP_S`` so a client that retries gets the same broadcast back."""

from __future__ import annotations

from dataclasses import dataclass

from loa.store.db import Conn, Database

KEEP_S = 24 * 3600.0  # as long as a client may sensibly retry (Stripe keeps keys 24 h too)


@dataclass(frozen=True, slots=True)
class KeyRow:
    account: str
    key: str
    fingerprint: str  # a hash of the request body: the same key with another body is refused
    broadcast: str
    answer: str  # the JSON body of the first answer
    created_at: float


def _get(conn: Conn, account: str, key: str, since: float) -> KeyRow | None:
    r = conn.execute(
        "SELECT account, idem_key, fingerprint, broadcast, answer, created_at"
        " FROM idempotency_keys WHERE account = ? AND idem_key = ? AND created_at >= ?",
        (account, key, since),
    ).fetchone()
    return None if r is None else KeyRow(*tuple(r))


def _put(conn: Conn, row: KeyRow) -> None:
    conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (row.created_at - KEEP_S,))
    conn.execute(
        "DELETE FROM idempotency_keys WHERE account = ? AND idem_key = ?", (row.account, row.key)
    )
    conn.execute(
        "INSERT INTO idempotency_keys"
        " (account, idem_key, fingerprint, broadcast, answer, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (row.account, row.key, row.fingerprint, row.broadcast, row.answer, row.created_at),
    )


class IdempotencyKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, account: str, key: str) -> KeyRow | None:
        """The live (younger than ``KEEP_S``) entry of this account's key, if any."""
        return await self._db.run(_get, account, key, self._db.clock() - KEEP_S)

    async def put(
        self, account: str, key: str, fingerprint: str, broadcast: str, answer: str
    ) -> KeyRow:
        """Remember the answer to a key (replacing an expired entry); prunes expired ones."""
        row = KeyRow(account, key, fingerprint, broadcast, answer, self._db.clock())
        await self._db.write(_put, row)
        return row
