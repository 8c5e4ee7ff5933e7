"""Endpoints in the database: loudspeaker clusters, their zone, place, volumes and device token.

A managed endpoint's token is made here (``secrets.token_urlsafe(24)``), stored only as its
SHA-256 (``hash_token``, the hash the relay node matches a speaker's hello against) and
returned in plain text exactly once, from ``add`` or ``rotate_token``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loa.errors import BadRequest, Conflict, NotFound
from loa.store.db import Conn, Database, Row, check_id, hash_token, new_token
from loa.store.zones import check_name, get_zone

KINDS = ("managed", "rtp")
_COLUMNS = ("name", "zone", "address", "lat", "lon", "volume", "emergency_volume")


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    name: str
    zone: str
    kind: str
    address: str | None
    lat: float | None
    lon: float | None
    volume: int
    emergency_volume: int
    token_hash: str | None  # never leaves the server; as_json leaves it out
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Endpoint:
        return cls(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (Row)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "zone": self.zone,
            "kind": self.kind,
            "address": self.address,
            "lat": self.lat,
            "lon": self.lon,
            "volume": self.volume,
            "emergency_volume": self.emergency_volume,
            "has_token": self.token_hash is not None,
        }


def check_address(address: object) -> str:
    if not isinstance(address, str):
        raise BadRequest(f"address must be 'host:port', got {address!r}")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BadRequest(f"address must be 'host:port' with a port 1..65535, got {address!r}")
    return address


def check_fields(endpoint_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the editable fields present in ``fields``; messages name the endpoint."""
    out = dict(fields)
    if "name" in out:
        out["name"] = check_name("endpoint", out["name"])
    if "zone" in out:
        check_id("zone", out["zone"])
    if out.get("address") is not None:
        out["address"] = check_address(out["address"])
    for key, low, high in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
        value = out.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise BadRequest(
                f"endpoint {endpoint_id}: {key} must be {low:g}..{high:g}, got {value!r}"
            )
        out[key] = float(value)
    for key in ("volume", "emergency_volume"):
        if key not in out:
            continue
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise BadRequest(
                f"endpoint {endpoint_id}: {key} must be an integer 0..100, got {value!r}"
            )
    return out


def get_endpoint(conn: Conn, endpoint_id: str) -> Endpoint:
    row = conn.execute("SELECT * FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone()
    if row is None:
        raise NotFound(f"endpoint {endpoint_id!r} does not exist", endpoint=endpoint_id)
    return Endpoint.from_row(row)


def insert_endpoint(
    conn: Conn,
    endpoint_id: str,
    kind: str,
    token_hash: str | None,
    fields: dict[str, Any],
    now: float,
) -> Endpoint:
    if conn.execute("SELECT 1 FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone():
        raise Conflict(f"endpoint {endpoint_id!r} already exists", endpoint=endpoint_id)
    get_zone(conn, fields["zone"])
    if (
        token_hash
        and conn.execute("SELECT 1 FROM endpoints WHERE token_hash = ?", (token_hash,)).fetchone()
    ):
        raise Conflict(f"endpoint {endpoint_id!r}: its token is already another endpoint's")
    conn.execute(
        "INSERT INTO endpoints (id, kind, token_hash, created_at, name, zone, address, lat, lon,"
        " volume, emergency_volume) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (endpoint_id, kind, token_hash, now, *(fields.get(c) for c in _COLUMNS)),
    )
    return get_endpoint(conn, endpoint_id)


def _update(conn: Conn, endpoint_id: str, changes: dict[str, Any]) -> Endpoint:
    current = get_endpoint(conn, endpoint_id)
    if "zone" in changes:
        get_zone(conn, changes["zone"])
    if current.kind == "rtp" and "address" in changes and changes["address"] is None:
        raise BadRequest(f"endpoint {endpoint_id}: an rtp endpoint needs address = 'host:port'")
    for column, value in changes.items():  # column names are checked against _COLUMNS
        conn.execute(f"UPDATE endpoints SET {column} = ? WHERE id = ?", (value, endpoint_id))
    return get_endpoint(conn, endpoint_id)


def _set_token(conn: Conn, endpoint_id: str, token_hash: str) -> None:
    if get_endpoint(conn, endpoint_id).kind != "managed":
        raise BadRequest(f"endpoint {endpoint_id}: only managed endpoints have a device token")
    conn.execute("UPDATE endpoints SET token_hash = ? WHERE id = ?", (token_hash, endpoint_id))


def _remove(conn: Conn, endpoint_id: str) -> None:
    get_endpoint(conn, endpoint_id)
    conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))


def _list(conn: Conn, zones: frozenset[str] | None) -> list[Endpoint]:
    rows = conn.execute("SELECT * FROM endpoints ORDER BY id").fetchall()
    eps = [Endpoint.from_row(r) for r in rows]
    return eps if zones is None else [e for e in eps if e.zone in zones]


def _by_hash(conn: Conn, token_hash: str) -> Endpoint | None:
    row = conn.execute("SELECT * FROM endpoints WHERE token_hash = ?", (token_hash,)).fetchone()
    return None if row is None else Endpoint.from_row(row)


class Endpoints:
    """Endpoint repository: every method is one round trip to the store's worker thread."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        endpoint_id: str,
        name: str,
        zone: str,
        *,
        kind: str = "managed",
        address: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        volume: int = 80,
        emergency_volume: int = 100,
    ) -> tuple[Endpoint, str | None]:
        """Add an endpoint; returns it and, for a managed one, its device token (shown once)."""
        endpoint_id = check_id("endpoint", endpoint_id)
        if kind not in KINDS:
            raise BadRequest(f"endpoint {endpoint_id}: kind must be one of {KINDS}, got {kind!r}")
        if kind == "rtp" and address is None:
            raise BadRequest(f"endpoint {endpoint_id}: an rtp endpoint needs address = 'host:port'")
        fields = check_fields(
            endpoint_id,
            {
                "name": name,
                "zone": zone,
                "address": address,
                "lat": lat,
                "lon": lon,
                "volume": volume,
                "emergency_volume": emergency_volume,
            },
        )
        token = new_token() if kind == "managed" else None
        token_hash = hash_token(token) if token else None
        now = self._db.clock()
        ep = await self._db.write(insert_endpoint, endpoint_id, kind, token_hash, fields, now)
        return ep, token

    async def get(self, endpoint_id: str) -> Endpoint:
        return await self._db.run(get_endpoint, endpoint_id)

    async def list(self, zones: frozenset[str] | None = None) -> list[Endpoint]:
        """Every endpoint, or those whose zone is in ``zones`` (pass a subtree)."""
        return await self._db.run(_list, zones)

    async def update(self, endpoint_id: str, **changes: Any) -> Endpoint:
        unknown = sorted(set(changes) - set(_COLUMNS))
        if unknown:
            raise BadRequest(f"endpoint {endpoint_id}: cannot change {', '.join(unknown)}")
        return await self._db.write(_update, endpoint_id, check_fields(endpoint_id, changes))

    async def rotate_token(self, endpoint_id: str) -> str:
        """A new device token (shown once); the old one stops working at once."""
        token = new_token()
        await self._db.write(_set_token, endpoint_id, hash_token(token))
        return token

    async def remove(self, endpoint_id: str) -> None:
        await self._db.write(_remove, endpoint_id)

    async def by_token(self, token: str) -> Endpoint | None:
        return await self._db.run(_by_hash, hash_token(token))
