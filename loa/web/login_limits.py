"""Login rate limiting (sans-IO, the caller passes ``now``): per (account, client address) and
per client address, with exponential backoff.

Nothing is counted per account alone, so failures from one address never refuse the right
password from another: an attacker cannot lock the admin out by guessing wrong. A client
gets ``free`` failures; after that each attempt waits ``base_s`` after the last failure,
doubling with every further failure up to ``max_s``. Attempts refused while waiting are not
counted (they cost nothing: no password is checked). A success clears the (account,
address) record but not the address's: logging in to one's own account does not buy more
guesses at others. A record is forgotten ``forget_s`` after its last failure.

IPv6 clients are counted by their /64, which one host usually has to itself; addresses
within it are free to pick. Known limit: clients behind one NAT share an address (configure
``web.trusted_proxies`` for a reverse proxy, so its clients are told apart).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait after ``failures`` failures: nothing for the first ``free``, then
    ``base_s`` doubling per failure up to ``max_s``."""

    free: int
    base_s: float
    max_s: float

    def wait_s(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(failures - self.free, 40))


@dataclass(slots=True)
class _Record:
    failures: int
    last: float


PER_PAIR = Backoff(free=5, base_s=5.0, max_s=900.0)
PER_ADDRESS = Backoff(free=20, base_s=5.0, max_s=900.0)


def client_key(address: str) -> str:
    """What a client is counted by: its IPv4 address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown" (a UNIX socket) and the like are counted as they are
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginLimiter:
    """Driven by the login handler: ``check`` before verifying a password, then ``failed``
    or ``succeeded``; all with the caller's monotonic clock."""

    def __init__(
        self,
        per_pair: Backoff = PER_PAIR,
        per_address: Backoff = PER_ADDRESS,
        forget_s: float = 3600.0,
        max_keys: int = 10_000,
    ) -> None:
        self.per_pair, self.per_address = per_pair, per_address
        self.forget_s, self.max_keys = forget_s, max_keys
        self._records: dict[tuple[str, ...], _Record] = {}

    def _keys(self, account: str, address: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        client = client_key(address)
        return ("pair", account, client), ("address", client)

    def _get(self, key: tuple[str, ...], now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and now - record.last >= self.forget_s:
            del self._records[key]
            return None
        return record

    def check(self, account: str, address: str, now: float) -> float | None:
        """Seconds to wait before this client may try this account, or None to go ahead."""
        pair, addr = self._keys(account, address)
        waits = [0.0]
        for key, rule in ((pair, self.per_pair), (addr, self.per_address)):
            record = self._get(key, now)
            if record is not None:
                waits.append(record.last + rule.wait_s(record.failures) - now)
        wait = max(waits)
        return wait if wait > 0 else None

    def failed(self, account: str, address: str, now: float) -> None:
        for key in self._keys(account, address):
            record = self._get(key, now)
            if record is None:
                while len(self._records) >= self.max_keys:
                    del self._records[next(iter(self._records))]  # the least recently failed
                record = _Record(0, now)
            else:
                del self._records[key]  # re-inserted last: the dict stays in failure order
            record.failures += 1
            record.last = now
            self._records[key] = record

    def succeeded(self, account: str, address: str) -> None:
        self._records.pop(self._keys(account, address)[0], None)

    def __len__(self) -> int:
        return len(self._records)
