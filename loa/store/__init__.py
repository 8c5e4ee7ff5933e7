"""Persistence: one SQLite file per node (``<data_dir>/loa.db``, the default) or one PostgreSQL
database shared by a cluster's nodes, behind the same async repositories.

``Store`` opens it (``Store.for_config``, ``Store.for_url``); its repositories (``zones``,
``endpoints``, ``users``, ``media``, ``log``, ``audit``, …) return frozen rows and raise
``loa.errors`` with precise messages."""

from loa.store.accounts import ROLES, Account, ApiToken
from loa.store.audit import AuditRow
from loa.store.db import SchemaTooNew, StoreError, hash_token, new_token
from loa.store.endpoints import Endpoint
from loa.store.log import LogRow, to_csv
from loa.store.media import MediaRow
from loa.store.sessions import SESSION_TTL_S, Session
from loa.store.store import DB_NAME, Store
from loa.store.zones import Zone

__all__ = [
    "DB_NAME",
    "ROLES",
    "SESSION_TTL_S",
    "Account",
    "ApiToken",
    "AuditRow",
    "Endpoint",
    "LogRow",
    "MediaRow",
    "SchemaTooNew",
    "Session",
    "Store",
    "StoreError",
    "Zone",
    "hash_token",
    "new_token",
    "to_csv",
]
