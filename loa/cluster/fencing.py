"""Fencing tokens: every command the leader sends carries the token it got with its lease
(a number that only grows, ``INCR`` in Redis), and a node ignores a command whose token is
older than the highest it has seen. A deposed leader that wakes up late (a GC pause, a
partition) and sends a command is therefore ignored by every node that has heard from its
successor.

``Fence`` is what each node keeps; ``observe`` raises it without a command (the node read
the current lease), so a late command is refused even before the new leader spoke.
"""

from __future__ import annotations


class Fence:
    """The highest token seen; driven by the bus adapter and by command handlers."""

    __slots__ = ("highest", "refused")

    def __init__(self, highest: int = 0) -> None:
        self.highest = check_token(highest, allow_zero=True)
        self.refused = 0  # commands ignored as stale, for /metrics

    def admit(self, token: int) -> bool:
        """True if a command with ``token`` may run: not older than the highest seen. Equal
        tokens are the same leader's later commands and pass."""
        token = check_token(token)
        if token < self.highest:
            self.refused += 1
            return False
        self.highest = token
        return True

    def observe(self, token: int) -> None:
        """Raise the floor to ``token`` (never lower it)."""
        self.highest = max(self.highest, check_token(token))


def check_token(token: object, *, allow_zero: bool = False) -> int:
    if isinstance(token, bool) or not isinstance(token, int) or token < (0 if allow_zero else 1):
        low = 0 if allow_zero else 1
        raise ValueError(f"fencing token must be an integer >= {low}, got {token!r}")
    return token
