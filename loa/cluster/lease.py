"""The leader lease's timing, without I/O: when to campaign, when to renew, and until when a
leader may act. ``loa.relay.bus`` does the Redis calls (``SET NX PX`` + ``INCR``) and feeds
the outcomes in, with ``now`` from its monotonic clock.

Safety: a lease taken or renewed by a request *sent* at ``t`` lasts in Redis until at least
``t + ttl`` (Redis starts the clock when it receives the request, later than ``t``). A leader
acts only until ``t + ttl × (1 - drift) - margin``, so it stops acting before the lease can
lapse in Redis and before any other node can take it, even if every renewal fails or hangs.
After (re)connecting to Redis a node waits one ``ttl`` before campaigning, so a leader it
cannot see (its lease lost with a restarted Redis) has stopped acting first.
"""

from __future__ import annotations

from dataclasses import dataclass

from loa.cluster.fencing import check_token


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    ttl_s: float = 3.0
    renew_every_s: float = 1.0
    margin_s: float = 0.25  # scheduling delay between noticing and stopping
    drift: float = 0.01  # how much faster our clock may run than Redis's

    def __post_init__(self) -> None:
        if not self.ttl_s > 0:
            raise ValueError(f"lease ttl_s must be > 0, got {self.ttl_s}")
        usable = self.ttl_s * (1 - self.drift) - self.margin_s
        if not 0 <= self.drift < 0.5 or self.margin_s < 0 or usable <= 0:
            raise ValueError(
                f"lease margin_s {self.margin_s} and drift {self.drift} leave no time to act "
                f"in a ttl of {self.ttl_s} s"
            )
        if not 0 < self.renew_every_s < usable:
            raise ValueError(
                f"lease renew_every_s must be > 0 and below the usable lease {usable:.3f} s "
                f"(ttl_s x (1 - drift) - margin_s), got {self.renew_every_s}"
            )

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))

    def acts_until(self, sent_at: float) -> float:
        return sent_at + self.ttl_s * (1 - self.drift) - self.margin_s


class Lease:
    """One node's view of the leader lease. Driven by the bus: ``connected``, then the
    outcome of each campaign or renewal with the time its request was sent."""

    def __init__(self, timing: LeaseTiming) -> None:
        self.timing = timing
        self.token: int | None = None  # our fencing token while we hold the lease
        self._until = float("-inf")  # we may act before this
        self._renew_at = float("inf")
        self._quiet_until = float("inf")  # not connected yet: no campaign
        self._campaign_at = float("-inf")

    def connected(self, now: float) -> None:
        """(Re)connected to Redis: campaign no earlier than one ttl from now."""
        self._quiet_until = now + self.timing.ttl_s

    def disconnected(self) -> None:
        self._quiet_until = float("inf")

    def is_leader(self, now: float) -> bool:
        """May this node act as leader at ``now``? Check before every leader action."""
        return self.token is not None and now < self._until

    @property
    def until(self) -> float:
        """The end of acting: a renewal still unanswered then has failed."""
        return self._until

    def should_campaign(self, now: float) -> bool:
        return not self.is_leader(now) and now >= max(self._quiet_until, self._campaign_at)

    def held_by_other(self, sent_at: float) -> None:
        """A campaign found the lease taken: try again one renewal period later."""
        self.lost()
        self._campaign_at = sent_at + self.timing.renew_every_s

    def should_renew(self, now: float) -> bool:
        return self.is_leader(now) and now >= self._renew_at

    def lapsed(self, now: float) -> bool:
        """We hold a token but may no longer act on it, and no renewal has found the lease
        gone: the lease in Redis may still be ours (a campaign or renewal answered late,
        on a loaded machine). A renewal, not a campaign, finds out: a campaign would find
        our own key and give it up."""
        return self.token is not None and not self.is_leader(now)

    def won(self, token: int, sent_at: float) -> None:
        self.token = check_token(token)
        self._held(sent_at)

    def renewed(self, sent_at: float) -> None:
        if self.token is not None:
            self._held(sent_at)

    def _held(self, sent_at: float) -> None:
        self._until = self.timing.acts_until(sent_at)
        self._renew_at = sent_at + self.timing.renew_every_s

    def lost(self) -> None:
        """The lease is not ours (a renewal found another holder, or we gave it up)."""
        self.token = None
        self._until = float("-inf")
        self._renew_at = float("inf")

    def deadline(self, now: float) -> float:
        """When the bus must look again: the next renewal, the end of acting, or the end of
        the quiet period (campaign), whichever comes first."""
        if self.is_leader(now):
            return min(self._renew_at, self._until)
        return max(now, self._quiet_until, self._campaign_at)
