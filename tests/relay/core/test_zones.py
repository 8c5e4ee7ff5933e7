"""The zone tree: structure, levels, subtree endpoint sets and their cache, precise errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loa.errors import BadRequest, Conflict, NotFound
from loa.relay.core.zones import ZoneTree


@contextmanager
def raises(kind: type[Exception], message: str) -> Iterator[pytest.ExceptionInfo[Exception]]:
    """Like pytest.raises, and the message must be exactly ``message``."""
    with pytest.raises(kind) as info:
        yield info
    assert str(info.value) == message


@pytest.fixture
def tree() -> ZoneTree:
    # Two provinces; Hà Tĩnh has a commune with two villages, Nghệ An a commune.
    return ZoneTree.build(
        [
            ("ha-tinh", None),
            ("ky-anh", "ha-tinh"),
            ("thon-1", "ky-anh"),
            ("thon-2", "ky-anh"),
            ("nghe-an", None),
            ("dien-chau", "nghe-an"),
        ]
    )


def test_levels_ancestors_and_lineage(tree: ZoneTree) -> None:
    assert [tree.level(z) for z in ("ha-tinh", "ky-anh", "thon-1")] == [0, 1, 2]
    assert tree.ancestors("thon-1") == ("ky-anh", "ha-tinh")
    assert tree.ancestors("ha-tinh") == ()
    assert tree.lineage("thon-2") == ("thon-2", "ky-anh", "ha-tinh")
    assert tree.parent("ky-anh") == "ha-tinh"
    assert tree.parent("nghe-an") is None
    assert tree.children("ky-anh") == ("thon-1", "thon-2")
    assert len(tree) == 6
    assert "thon-1" in tree
    assert "thon-9" not in tree


def test_subtree_and_contains(tree: ZoneTree) -> None:
    assert tree.subtree("ha-tinh") == {"ha-tinh", "ky-anh", "thon-1", "thon-2"}
    assert tree.subtree("thon-1") == {"thon-1"}
    assert tree.contains("ha-tinh", "thon-2")
    assert tree.contains("thon-2", "thon-2")
    assert not tree.contains("thon-2", "ha-tinh")
    assert not tree.contains("nghe-an", "thon-1")


def test_deep_tree_has_no_fixed_depth() -> None:
    tree = ZoneTree()
    tree.add("z0")
    for i in range(1, 30):
        tree.add(f"z{i}", f"z{i - 1}")
    tree.attach("deep", "z29")
    assert tree.level("z29") == 29
    assert tree.endpoints_in("z0") == {"deep"}


def test_endpoints_in_covers_the_subtree(tree: ZoneTree) -> None:
    tree.attach("loa-1", "thon-1")
    tree.attach("loa-2", "thon-2")
    tree.attach("loa-3", "ky-anh")
    tree.attach("loa-4", "dien-chau")
    assert tree.endpoints_in("ha-tinh") == {"loa-1", "loa-2", "loa-3"}
    assert tree.endpoints_in("thon-1") == {"loa-1"}
    assert tree.endpoints_in("nghe-an") == {"loa-4"}
    assert tree.zone_of("loa-3") == "ky-anh"
    assert tree.endpoints() == {"loa-1", "loa-2", "loa-3", "loa-4"}


def test_cache_follows_attach_detach_and_move(tree: ZoneTree) -> None:
    tree.attach("loa-1", "thon-1")
    assert tree.endpoints_in("ha-tinh") == {"loa-1"}  # now cached
    tree.attach("loa-2", "thon-1")
    assert tree.endpoints_in("ha-tinh") == {"loa-1", "loa-2"}
    assert tree.detach("loa-1") == "thon-1"
    assert tree.endpoints_in("ha-tinh") == {"loa-2"}
    assert tree.endpoints_in("nghe-an") == frozenset()
    tree.move("ky-anh", "nghe-an")
    assert tree.endpoints_in("ha-tinh") == frozenset()
    assert tree.endpoints_in("nghe-an") == {"loa-2"}
    assert tree.level("thon-1") == 2
    assert tree.ancestors("thon-1") == ("ky-anh", "nghe-an")


def test_move_to_root_and_back(tree: ZoneTree) -> None:
    tree.attach("loa-1", "thon-1")
    tree.move("ky-anh", None)
    assert tree.level("thon-1") == 1
    assert tree.endpoints_in("ha-tinh") == frozenset()
    tree.move("ky-anh", "ha-tinh")
    assert tree.endpoints_in("ha-tinh") == {"loa-1"}


def test_resolve_zones_and_single_endpoints(tree: ZoneTree) -> None:
    tree.attach("loa-1", "thon-1")
    tree.attach("loa-2", "thon-2")
    tree.attach("loa-4", "dien-chau")
    got = tree.resolve(["thon-1"], ["loa-4", "offline-speaker"])
    assert got == {"loa-1", "loa-4"}
    assert tree.resolve([], []) == frozenset()
    with raises(NotFound, "zone 'nowhere' does not exist"):
        tree.resolve(["nowhere"], [])


def test_targets_by_zone_ancestor_or_id(tree: ZoneTree) -> None:
    tree.attach("loa-1", "thon-1")
    assert tree.targets("loa-1", frozenset({"ha-tinh"}), frozenset())
    assert tree.targets("loa-1", frozenset(), frozenset({"loa-1"}))
    assert not tree.targets("loa-1", frozenset({"thon-2", "nghe-an"}), frozenset({"loa-9"}))


def test_errors_are_precise(tree: ZoneTree) -> None:
    with raises(Conflict, "zone 'ky-anh' already exists"):
        tree.add("ky-anh", "nghe-an")
    with raises(NotFound, "zone 'hue' does not exist"):
        tree.add("phu-vang", "hue")
    with raises(BadRequest, "zone id must be a non-empty string, got ''"):
        tree.add("")
    with raises(
        Conflict, "zone 'ky-anh' still has child zones (thon-1, thon-2); move or remove them first"
    ):
        tree.remove("ky-anh")
    tree.attach("loa-1", "thon-1")
    with raises(Conflict, "zone 'thon-1' still has endpoints (loa-1); detach them first"):
        tree.remove("thon-1")
    with raises(
        BadRequest,
        "cannot move zone 'ha-tinh' under 'thon-1': 'thon-1' is inside 'ha-tinh''s subtree",
    ):
        tree.move("ha-tinh", "thon-1")
    with raises(
        BadRequest,
        "cannot move zone 'ky-anh' under 'ky-anh': 'ky-anh' is inside 'ky-anh''s subtree",
    ):
        tree.move("ky-anh", "ky-anh")
    with raises(Conflict, "endpoint 'loa-1' is already attached in zone 'thon-1'"):
        tree.attach("loa-1", "thon-2")
    with raises(NotFound, "endpoint 'loa-9' is not attached") as info:
        tree.detach("loa-9")
    assert info.value.fields == {"endpoint": "loa-9"}
    with raises(NotFound, "zone 'x' does not exist"):
        tree.level("x")


def test_remove_leaf_updates_parent(tree: ZoneTree) -> None:
    tree.remove("thon-2")
    assert tree.children("ky-anh") == ("thon-1",)
    assert "thon-2" not in tree
    tree.add("thon-2", "dien-chau")  # the id is free again
    assert tree.ancestors("thon-2") == ("dien-chau", "nghe-an")


# A random forest, random attachments and random moves: the cached subtree sets always equal
# a brute-force walk over parent links.
@st.composite
def _scripts(draw: st.DrawFn) -> tuple[list[int | None], list[tuple[str, int, int]]]:
    n = draw(st.integers(1, 9))
    parents = [draw(st.none() | st.integers(0, i - 1)) if i else None for i in range(n)]
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["attach", "detach", "move", "query"]),
                st.integers(0, n - 1),
                st.integers(-1, n - 1),
            ),
            max_size=30,
        )
    )
    return parents, ops


@settings(max_examples=200, deadline=None)
@given(_scripts())
def test_cached_sets_equal_brute_force(
    script: tuple[list[int | None], list[tuple[str, int, int]]],
) -> None:
    parents, ops = script
    tree = ZoneTree.build((f"z{i}", None if p is None else f"z{p}") for i, p in enumerate(parents))
    parent = {f"z{i}": (None if p is None else f"z{p}") for i, p in enumerate(parents)}
    where: dict[str, str] = {}
    for n, (op, a, b) in enumerate(ops):
        zone = f"z{a}"
        if op == "attach":
            tree.attach(f"e{n}", zone)
            where[f"e{n}"] = zone
        elif op == "detach" and where:
            victim = sorted(where)[a % len(where)]
            assert tree.detach(victim) == where.pop(victim)
        elif op == "move":
            target = None if b < 0 else f"z{b}"
            cycle = target is not None and zone in _lineage(parent, target)
            if cycle:
                with pytest.raises(BadRequest):
                    tree.move(zone, target)
            else:
                tree.move(zone, target)
                parent[zone] = target
        for z in parent:  # also exercises partly warm caches
            expected = {e for e, home in where.items() if z in _lineage(parent, home)}
            assert tree.endpoints_in(z) == expected
            assert tree.level(z) == len(_lineage(parent, z)) - 1


def _lineage(parent: dict[str, str | None], zone: str) -> list[str]:
    out: list[str] = []
    cur: str | None = zone
    while cur is not None:
        out.append(cur)
        cur = parent[cur]
    return out
