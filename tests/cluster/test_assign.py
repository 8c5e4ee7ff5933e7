"""Commune assignment: whole communes, two-thirds fill, balance by capacity, small movement,
determinism; examples and hypothesis properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loa.cluster.assign import Assignment, Move, assign, limit

communes_st = st.dictionaries(
    st.text("abcdefghij", min_size=1, max_size=4), st.integers(0, 60), max_size=60
)
nodes_st = st.dictionaries(
    st.sampled_from([f"n{i}" for i in range(8)]), st.integers(60, 3000), min_size=1, max_size=6
)


def roomy(communes: dict[str, int], caps: dict[str, int]) -> bool:
    """Room enough that greedy placement never has to overfill a node."""
    biggest = max(communes.values(), default=0)
    return sum(communes.values()) + len(caps) * biggest <= sum(limit(c) for c in caps.values())


def test_three_nodes_share_by_capacity_within_two_thirds() -> None:
    communes = {f"x{i:02}": 20 + i for i in range(30)}  # 1,035 poles
    result = assign(communes, {"a": 1000, "b": 1000, "c": 2000})
    assert set(result.placement) == set(communes)
    assert result.overloaded == ()
    assert all(result.loads[n] <= limit(c) for n, c in {"a": 1000, "b": 1000, "c": 2000}.items())
    assert result.loads["c"] > result.loads["a"] + 100  # twice the capacity, about twice the load
    assert sum(result.loads.values()) == 1035
    assert all(m.source is None for m in result.moves) and len(result.moves) == 30


def test_a_joining_node_takes_communes_until_near_its_share() -> None:
    communes = {f"x{i}": 50 for i in range(10)}
    first = assign(communes, {"a": 900})
    assert first.loads == {"a": 500}
    second = assign(communes, {"a": 900, "b": 900}, first.placement)
    # b stops within one commune (50 poles) of its fair share, 250: no churn for the last 50
    assert second.loads == {"a": 300, "b": 200}
    assert [m.target for m in second.moves] == ["b"] * 4
    assert {m.source for m in second.moves} == {"a"}


def test_a_big_commune_is_never_split_and_one_commune_of_slack_is_kept() -> None:
    first = assign({"big": 500, "small": 10}, {"a": 900})
    # b's fair share is 255, less than one (big) commune below it: moving would not help
    assert assign({"big": 500, "small": 10}, {"a": 900, "b": 900}, first.placement).moves == ()


def test_a_short_cluster_still_places_everything_and_says_who_is_overloaded() -> None:
    result = assign({"x": 500, "y": 500}, {"a": 600, "b": 300})
    assert set(result.placement) == {"x", "y"}
    assert result.overloaded  # 1000 poles, limits 400 + 200
    assert result.unplaced == ()


def test_no_node_leaves_every_commune_unplaced() -> None:
    assert assign({"y": 3, "x": 1}, {}) == Assignment({}, {}, (), (), ("x", "y"))


def test_a_dead_node_in_current_is_ignored() -> None:
    result = assign({"x": 5}, {"a": 100}, {"x": "gone"})
    assert result.moves == (Move("x", 5, "gone", "a"),)


@pytest.mark.parametrize(
    ("communes", "caps", "message"),
    [
        ({"": 1}, {"a": 9}, "commune ids must be non-empty strings, got ''"),
        ({"x": -1}, {"a": 9}, "commune x: poles must be an integer >= 0, got -1"),
        ({"x": True}, {"a": 9}, "commune x: poles must be an integer >= 0, got True"),
        ({"x": 1}, {"a": 0}, "node a: capacity must be an integer >= 1, got 0"),
        ({"x": 1}, {"a": 1.5}, "node a: capacity must be an integer >= 1, got 1.5"),
    ],
)
def test_bad_input_is_refused_by_name(communes: dict, caps: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=f"^{message}$"):
        assign(communes, caps)


@settings(deadline=None)
@given(communes_st, nodes_st, st.randoms(use_true_random=False))
def test_every_commune_placed_and_order_does_not_matter(
    communes: dict[str, int], caps: dict[str, int], rnd: random.Random
) -> None:
    result = assign(communes, caps)
    assert set(result.placement) == set(communes)
    assert set(result.placement.values()) <= set(caps)
    assert sum(result.loads.values()) == sum(communes.values())
    shuffled_c = list(communes.items())
    shuffled_n = list(caps.items())
    rnd.shuffle(shuffled_c)
    rnd.shuffle(shuffled_n)
    assert assign(dict(shuffled_c), dict(shuffled_n)) == result


@settings(deadline=None)
@given(communes_st, nodes_st)
def test_with_room_no_node_passes_two_thirds(
    communes: dict[str, int], caps: dict[str, int]
) -> None:
    result = assign(communes, caps)
    if roomy(communes, caps):
        assert result.overloaded == ()
    for node in caps:
        assert (result.loads[node] <= limit(caps[node])) == (node not in result.overloaded)


@settings(deadline=None)
@given(communes_st, nodes_st)
def test_a_second_pass_moves_nothing(communes: dict[str, int], caps: dict[str, int]) -> None:
    first = assign(communes, caps)
    assert assign(communes, caps, first.placement).moves == ()


@settings(deadline=None)
@given(communes_st, nodes_st)
def test_balanced_within_one_commune_of_the_fair_share(
    communes: dict[str, int], caps: dict[str, int]
) -> None:
    if not roomy(communes, caps):
        return
    result = assign(communes, caps)
    total, capacity = sum(communes.values()), sum(caps.values())
    slack = max(communes.values(), default=0)
    for node, cap in caps.items():
        assert result.loads[node] >= total * cap / capacity - slack


@settings(max_examples=200, deadline=None)  # timing varies on a shared machine
@given(communes_st, nodes_st, st.data())
def test_a_node_leaving_moves_only_its_communes(
    communes: dict[str, int], caps: dict[str, int], data: st.DataObject
) -> None:
    if len(caps) < 2:
        return
    gone = data.draw(st.sampled_from(sorted(caps)))
    survivors = {n: c for n, c in caps.items() if n != gone}
    if not roomy(communes, survivors):
        return
    before = assign(communes, caps)
    after = assign(communes, survivors, before.placement)
    assert {m.commune for m in after.moves} == set(before.communes_of(gone))
    assert after.overloaded == ()


@settings(max_examples=200, deadline=None)  # timing varies on a shared machine
@given(communes_st, nodes_st, st.integers(60, 3000))
def test_a_node_joining_only_receives(
    communes: dict[str, int], caps: dict[str, int], capacity: int
) -> None:
    if not roomy(communes, caps):
        return
    before = assign(communes, caps)
    after = assign(communes, {**caps, "new": capacity}, before.placement)
    assert all(m.target == "new" for m in after.moves)
