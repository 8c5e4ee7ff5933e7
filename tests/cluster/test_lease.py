"""The lease's timing and fencing, with a fake clock: a leader never acts past its lease."""

from __future__ import annotations

import pytest

from loa.cluster.fencing import Fence
from loa.cluster.lease import Lease, LeaseTiming

T = LeaseTiming(ttl_s=3.0, renew_every_s=1.0, margin_s=0.25, drift=0.01)


def test_a_node_waits_one_ttl_after_connecting_before_campaigning() -> None:
    lease = Lease(T)
    assert not lease.should_campaign(0.0)  # not connected
    lease.connected(10.0)
    assert not lease.should_campaign(12.9)
    assert lease.deadline(11.0) == 13.0
    assert lease.should_campaign(13.0)


def test_a_leader_acts_only_until_before_the_lease_can_lapse() -> None:
    lease = Lease(T)
    lease.connected(0.0)
    sent = 3.0
    lease.won(7, sent)
    acts_until = sent + 3.0 * 0.99 - 0.25
    assert lease.is_leader(acts_until - 1e-6) and not lease.is_leader(acts_until)
    assert acts_until < sent + T.ttl_s  # Redis holds it at least until sent + ttl
    assert lease.token == 7
    assert not lease.should_renew(3.9) and lease.should_renew(4.0)
    assert lease.deadline(3.5) == 4.0


def test_renewals_extend_from_the_time_they_were_sent() -> None:
    lease = Lease(T)
    lease.connected(0.0)
    lease.won(1, 3.0)
    lease.renewed(4.0)  # the reply came late; the lease counts from the request
    assert lease.is_leader(4.0 + 2.71) and not lease.is_leader(4.0 + 2.73)


def test_when_renewals_hang_the_deadline_is_the_end_of_acting() -> None:
    lease = Lease(T)
    lease.connected(0.0)
    lease.won(1, 3.0)
    # the renewal sent at 4.0 never answers: the bus gives it until the end of acting
    assert lease.should_renew(4.0)
    assert lease.until == pytest.approx(3.0 + 2.72)
    assert not lease.is_leader(5.73)
    assert lease.should_campaign(5.73)  # and may campaign again (Redis decides)


def test_losing_or_finding_another_holder() -> None:
    lease = Lease(T)
    lease.connected(0.0)
    lease.held_by_other(3.0)
    assert not lease.should_campaign(3.5) and lease.should_campaign(4.0)
    lease.won(2, 4.0)
    lease.lost()
    assert not lease.is_leader(4.1) and lease.token is None
    lease.renewed(4.2)  # a late renewal reply after losing changes nothing
    assert not lease.is_leader(4.3)
    lease.disconnected()
    assert not lease.should_campaign(100.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl_s": 0}, "lease ttl_s must be > 0, got 0"),
        ({"ttl_s": 1.0, "margin_s": 1.0}, "lease margin_s 1.0 and drift 0.01 leave no time"),
        ({"renew_every_s": 3.0}, "lease renew_every_s must be > 0 and below the usable lease"),
    ],
)
def test_bad_timings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        LeaseTiming(**kwargs)


def test_a_deposed_leaders_late_command_is_ignored() -> None:
    fence = Fence()
    assert fence.admit(3) and fence.admit(3)  # the same leader's commands
    assert fence.admit(4)  # a new leader
    assert not fence.admit(3)  # the old one, late
    assert fence.refused == 1 and fence.highest == 4


def test_observing_the_lease_refuses_the_old_leader_before_the_new_one_speaks() -> None:
    fence = Fence(highest=3)
    fence.observe(5)
    fence.observe(4)  # never lowered
    assert not fence.admit(4) and fence.admit(5)


@pytest.mark.parametrize("token", [0, -1, True, 1.5, "3"])
def test_bad_tokens_are_refused(token: object) -> None:
    with pytest.raises(ValueError, match=r"^fencing token must be an integer >= 1, got "):
        Fence().admit(token)  # type: ignore[arg-type]


def test_a_lease_won_by_a_late_answer_is_renewed_not_given_up() -> None:
    """A campaign answered 2.6 s late (a loaded machine) leaves 0.12 s to act: when that
    passes without a renewal's answer, the token is kept as lapsed (the key in Redis may
    still be ours: a renewal finds out) instead of campaigning against our own key."""
    lease = Lease(T)
    lease.connected(0.0)
    lease.won(4, 3.0)  # the request went at 3.0; the answer came at 5.6
    assert lease.is_leader(5.6) and not lease.lapsed(5.6)
    assert lease.lapsed(5.75) and not lease.is_leader(5.75) and lease.token == 4
    lease.renewed(5.75)  # the renewal sent then found the key ours
    assert lease.is_leader(5.75 + 2.7) and not lease.lapsed(6.0)
    lease.lost()  # or it found another holder
    assert not lease.lapsed(9.0) and lease.token is None
