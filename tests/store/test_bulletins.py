"""The bulletin inbox repository: rows round-trip, CAP identity is unique, states move only
from the states a change names."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loa.errors import Conflict, NotFound
from loa.store import Store
from loa.store.bulletins import BulletinRow
from tests.store.conftest import FakeClock

ROW = BulletinRow(
    id="b-1",
    level="emergency",
    zones=("c0", "c1"),
    title="Bão số 5",
    variants=({"language": "vi", "text": "Sơ tán ngay."}, {"language": "en", "media": "m1"}),
    issued_at=1_700_000_000.0,
    expires_at=1_700_003_600.0,
    repeat_every_s=600.0,
    state="on_air",
    source="cap",
    cap_sender="pctt@qt.gov.vn",
    cap_identifier="QT-1",
    broadcasts=(),
    created_by="admin",
    created_at=1_700_000_000.0,
    updated_at=1_700_000_000.0,
)


async def test_a_row_round_trips_with_its_lists(store: Store) -> None:
    await store.bulletins.add(ROW)
    got = await store.bulletins.get("b-1")
    assert got == ROW
    assert got.as_json()["variants"] == [
        {"language": "vi", "text": "Sơ tán ngay."},
        {"language": "en", "media": "m1"},
    ]
    assert await store.bulletins.by_cap("pctt@qt.gov.vn", "QT-1") == ROW
    assert await store.bulletins.by_cap("pctt@qt.gov.vn", "QT-2") is None


async def test_duplicates_are_conflicts_naming_the_first(store: Store) -> None:
    await store.bulletins.add(ROW)
    with pytest.raises(Conflict, match="bulletin b-1 already exists"):
        await store.bulletins.add(replace(ROW, cap_identifier="QT-9"))
    with pytest.raises(Conflict) as info:
        await store.bulletins.add(replace(ROW, id="b-2"))
    assert str(info.value) == (
        "CAP alert QT-1 from pctt@qt.gov.vn was already received as bulletin b-1"
    )
    # bulletins that did not come by CAP have no identity to clash on
    await store.bulletins.add(replace(ROW, id="b-3", cap_sender=None, cap_identifier=None))
    await store.bulletins.add(replace(ROW, id="b-4", cap_sender=None, cap_identifier=None))


async def test_list_newest_first_and_by_state(store: Store) -> None:
    await store.bulletins.add(
        replace(ROW, id="old", issued_at=1.0, state="done", cap_identifier=None)
    )
    await store.bulletins.add(
        replace(ROW, id="new", issued_at=2.0, state="inbox", cap_identifier=None)
    )
    assert [r.id for r in await store.bulletins.list()] == ["new", "old"]
    assert [r.id for r in await store.bulletins.list(("done",))] == ["old"]
    assert [r.id for r in await store.bulletins.list(("inbox", "done"))] == ["new", "old"]
    assert await store.bulletins.list(("expired",)) == []


async def test_transitions_name_where_they_may_come_from(store: Store, clock: FakeClock) -> None:
    await store.bulletins.add(replace(ROW, state="inbox"))
    clock.advance(5)
    row = await store.bulletins.transition("b-1", "scheduled", expect={"inbox"})
    assert (row.state, row.updated_at) == ("scheduled", 1_700_000_005.0)
    with pytest.raises(Conflict) as info:
        await store.bulletins.transition("b-1", "scheduled", expect={"inbox"})
    assert (
        str(info.value) == "bulletin b-1 is scheduled; it cannot become scheduled (only from inbox)"
    )
    assert info.value.fields == {"bulletin": "b-1", "state": "scheduled", "reason": "scheduled"}
    with pytest.raises(NotFound, match="bulletin nope not found"):
        await store.bulletins.transition("nope", "done", expect={"on_air"})
    with pytest.raises(ValueError, match="unknown bulletin state 'lost'"):
        await store.bulletins.transition("b-1", "lost", expect={"scheduled"})


async def test_broadcasts_are_appended(store: Store, clock: FakeClock) -> None:
    await store.bulletins.add(ROW)
    await store.bulletins.add_broadcast("b-1", "b-1.1")
    clock.advance(1)
    row = await store.bulletins.add_broadcast("b-1", "b-1.2")
    assert row.broadcasts == ("b-1.1", "b-1.2")
    assert row.updated_at == 1_700_000_001.0
    assert row.expired(1_700_003_600.0) and not row.expired(1_700_003_599.0)
    assert not replace(row, expires_at=None).expired(1e12)


async def test_the_time_it_plays_is_kept(store: Store) -> None:
    held = replace(ROW, id="b-2", cap_identifier="QT-2", state="scheduled", scheduled_at=1.8e9)
    await store.bulletins.add(held)
    assert (await store.bulletins.get("b-2")).scheduled_at == 1.8e9  # CAP effective, held
    await store.bulletins.add(replace(ROW, state="inbox", cap_identifier=None))
    assert (await store.bulletins.get("b-1")).scheduled_at is None
    row = await store.bulletins.transition("b-1", "scheduled", expect={"inbox"}, at=1.75e9)
    assert row.scheduled_at == 1.75e9
    assert row.as_json()["scheduled_at"] == 1.75e9
    row = await store.bulletins.transition("b-1", "on_air", expect={"scheduled"})
    assert row.scheduled_at == 1.75e9  # when it was due, kept after it played
