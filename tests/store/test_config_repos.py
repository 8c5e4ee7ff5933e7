"""Zones, endpoints and seeding from the config file: CRUD and each error's exact message."""

from __future__ import annotations

from pathlib import Path

import pytest

from loa.config import Config, EndpointSpec, ZoneSpec
from loa.errors import BadRequest, ConfigError, Conflict, NotFound
from loa.store import Store, hash_token, zones
from tests.conftest import tree_config
from tests.store.conftest import province


async def test_zone_crud(store: Store) -> None:
    await province(store)
    zone = await store.zones.get("v0")
    assert (zone.name, zone.parent, zone.timezone, zone.languages) == (
        "Thôn 0",
        "c0",
        "Asia/Ho_Chi_Minh",
        ("vi",),
    )
    assert zone.as_json() == {
        "id": "v0",
        "name": "Thôn 0",
        "parent": "c0",
        "timezone": "Asia/Ho_Chi_Minh",
        "languages": ["vi"],
        "voice": None,
        "frame_ms": None,
        "redundancy": None,
        "playout_delay_ms": None,
    }
    changed = await store.zones.update("v0", name="Thôn Mới", languages=["vi", "tay"])
    assert (changed.name, changed.languages) == ("Thôn Mới", ("vi", "tay"))
    assert await store.zones.subtree("c0") == {"c0", "v0"}
    assert await store.zones.subtree("p") == {"p", "c0", "c1", "v0"}
    moved = await store.zones.move("v0", "c1")
    assert moved.parent == "c1" and await store.zones.subtree("c1") == {"c1", "v0"}
    assert await store.zones.parents() == {"p": None, "c0": "p", "c1": "p", "v0": "c1"}
    await store.zones.remove("v0")
    with pytest.raises(NotFound, match=r"^zone 'v0' does not exist$"):
        await store.zones.get("v0")


async def test_zone_voices_are_inherited_down_the_tree(store: Store) -> None:
    """p ⊃ c0 ⊃ v0, p ⊃ c1: nobody chose, all speak the North's; the province goes South, all
    follow; c0 goes Central, v0 under it follows; v0 back to inheriting: c0's again."""
    await province(store)
    await store.endpoints.add("e1", "Loa 1", "v0")
    assert {z: await store.zones.voice(z) for z in ("p", "c0", "v0", "c1")} == dict.fromkeys(
        ("p", "c0", "v0", "c1"), "vi"
    )
    await store.zones.update("p", voice="vi-vn-x-south")
    c0 = await store.zones.update("c0", voice="vi-vn-x-central", name="Xã Giữa")
    assert (c0.voice, c0.name) == ("vi-vn-x-central", "Xã Giữa")
    voices = {z: await store.zones.voice(z) for z in ("p", "c0", "v0", "c1")}
    assert voices == {
        "p": "vi-vn-x-south",
        "c0": "vi-vn-x-central",
        "v0": "vi-vn-x-central",
        "c1": "vi-vn-x-south",
    }
    assert zones.effective_voices(await store.zones.list()) == voices
    await store.zones.update("v0", voice="vi")
    assert await store.zones.voice("v0") == "vi"
    await store.zones.update("v0", name="Thôn 0")  # the voice stays when not given
    assert (await store.zones.get("v0")).voice == "vi"
    await store.zones.update("v0", voice=None)
    assert await store.zones.voice("v0") == "vi-vn-x-central"
    # a broadcast's voice: its first zone's by id, else its first endpoint's zone's
    assert await store.zones.targets_voice(["c1", "c0"]) == "vi-vn-x-central"
    assert await store.zones.targets_voice(["gone", "c1"]) == "vi-vn-x-south"
    assert await store.zones.targets_voice([], ["e1"]) == "vi-vn-x-central"
    assert await store.zones.targets_voice([], ["nobody"]) == "vi"
    added = await store.zones.add("v9", "Thôn 9", "c1", voice="vi")
    assert added.voice == "vi" and await store.zones.voice("v9") == "vi"
    with pytest.raises(BadRequest, match=r"^voice must be one of vi, vi-vn-x-central, vi-vn-x"):
        await store.zones.update("c1", voice="en")
    with pytest.raises(BadRequest, match=r"^voice must be one of"):
        await store.zones.add("v8", "Thôn 8", "c1", voice="hmn")


async def test_zone_errors(store: Store) -> None:
    await province(store)
    with pytest.raises(NotFound) as nf:
        await store.zones.add("x", "X", "nowhere")
    assert nf.value.message == "parent zone 'nowhere' does not exist"
    with pytest.raises(Conflict) as dup:
        await store.zones.add("c0", "again", "p")
    assert dup.value.message == "zone 'c0' already exists"
    with pytest.raises(Conflict) as kids:
        await store.zones.remove("p")
    assert kids.value.message == (
        "zone 'p' still has child zones (c0, c1); move or remove them first"
    )
    await store.endpoints.add("e2", "Loa 2", "c1")
    await store.endpoints.add("e1", "Loa 1", "c1")
    with pytest.raises(Conflict) as eps:
        await store.zones.remove("c1")
    assert eps.value.message == "zone 'c1' still has endpoints (e1, e2); move or remove them first"
    assert eps.value.fields["endpoints"] == ["e1", "e2"]
    with pytest.raises(BadRequest) as loop:
        await store.zones.move("c0", "v0")
    assert loop.value.message == "cannot move zone 'c0' under 'v0': 'v0' is inside 'c0''s subtree"
    with pytest.raises(BadRequest, match=r"^cannot move zone 'c0' under 'c0'"):
        await store.zones.move("c0", "c0")
    with pytest.raises(BadRequest) as tz:
        await store.zones.add("y", "Y", timezone="Mars/Olympus")
    assert (
        tz.value.message
        == "unknown timezone 'Mars/Olympus'; use an IANA name like 'Asia/Ho_Chi_Minh'"
    )
    with pytest.raises(BadRequest, match=r"^zone name must be a non-empty string, got '  '$"):
        await store.zones.add("y", "  ")
    with pytest.raises(BadRequest, match=r"^languages: 'v' is not a language tag"):
        await store.zones.update("c0", languages=["v"])
    with pytest.raises(NotFound, match=r"^zone 'nope' does not exist$"):
        await store.zones.move("nope", None)


async def test_zone_with_users_cannot_be_removed(store: Store) -> None:
    await province(store)
    await store.users.add("op", "scrypt$x", "operator", zone="c1", actor="t")
    with pytest.raises(Conflict) as info:
        await store.zones.remove("c1")
    assert info.value.message == "zone 'c1' still has users (op); move or remove them first"


async def test_tree_has_zones_and_endpoints(store: Store) -> None:
    await province(store)
    await store.endpoints.add("e1", "Loa 1", "v0")
    await store.endpoints.add("e2", "Loa 2", "c1", kind="rtp", address="10.0.0.2:5004")
    tree = await store.zones.tree()
    assert tree.endpoints_in("p") == {"e1", "e2"}
    assert tree.endpoints_in("c0") == {"e1"}
    assert tree.lineage("v0") == ("v0", "c0", "p")


async def test_endpoint_crud_and_tokens(store: Store) -> None:
    await province(store)
    ep, token = await store.endpoints.add("e1", "Loa 1", "v0", lat=21.59, lon=105.85, volume=70)
    assert token is not None and len(token) == 32  # token_urlsafe(24)
    assert ep.token_hash == hash_token(token)
    assert ep.as_json() == {
        "id": "e1",
        "name": "Loa 1",
        "zone": "v0",
        "kind": "managed",
        "address": None,
        "lat": 21.59,
        "lon": 105.85,
        "volume": 70,
        "emergency_volume": 100,
        "has_token": True,
    }
    rtp, none = await store.endpoints.add("r1", "RTP", "c1", kind="rtp", address="10.0.0.9:5004")
    assert none is None and rtp.token_hash is None
    assert [e.id for e in await store.endpoints.list()] == ["e1", "r1"]
    assert [e.id for e in await store.endpoints.list(await store.zones.subtree("c0"))] == ["e1"]
    updated = await store.endpoints.update("e1", volume=55, zone="c1", name="Loa Chợ")
    assert (updated.volume, updated.zone, updated.name) == (55, "c1", "Loa Chợ")
    new = await store.endpoints.rotate_token("e1")
    assert new != token
    assert await store.endpoints.by_token(token) is None
    assert (await store.endpoints.by_token(new)) == await store.endpoints.get("e1")
    await store.endpoints.remove("e1")
    with pytest.raises(NotFound, match=r"^endpoint 'e1' does not exist$"):
        await store.endpoints.get("e1")


async def test_endpoint_errors(store: Store) -> None:
    await province(store)
    await store.endpoints.add("e1", "Loa 1", "v0")
    cases = [
        (
            lambda: store.endpoints.add("e1", "Again", "v0"),
            Conflict,
            "endpoint 'e1' already exists",
        ),
        (
            lambda: store.endpoints.add("e2", "Loa", "nowhere"),
            NotFound,
            "zone 'nowhere' does not exist",
        ),
        (
            lambda: store.endpoints.add("e2", "Loa", "v0", kind="sip"),
            BadRequest,
            "endpoint e2: kind must be one of ('managed', 'rtp'), got 'sip'",
        ),
        (
            lambda: store.endpoints.add("e2", "Loa", "v0", kind="rtp"),
            BadRequest,
            "endpoint e2: an rtp endpoint needs address = 'host:port'",
        ),
        (
            lambda: store.endpoints.add("e2", "Loa", "v0", kind="rtp", address="10.0.0.1"),
            BadRequest,
            "address must be 'host:port' with a port 1..65535, got '10.0.0.1'",
        ),
        (
            lambda: store.endpoints.add("e2", "Loa", "v0", volume=101),
            BadRequest,
            "endpoint e2: volume must be an integer 0..100, got 101",
        ),
        (
            lambda: store.endpoints.add("e2", "Loa", "v0", lat=91.0),
            BadRequest,
            "endpoint e2: lat must be -90..90, got 91.0",
        ),
        (
            lambda: store.endpoints.update("e1", token_hash="x"),
            BadRequest,
            "endpoint e1: cannot change token_hash",
        ),
        (
            lambda: store.endpoints.update("e1", zone="nowhere"),
            NotFound,
            "zone 'nowhere' does not exist",
        ),
        (lambda: store.endpoints.update("zz", volume=3), NotFound, "endpoint 'zz' does not exist"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as info:
            await call()
        assert info.value.message == message
    await store.endpoints.add("r1", "RTP", "v0", kind="rtp", address="h:9")
    with pytest.raises(BadRequest) as info:
        await store.endpoints.rotate_token("r1")
    assert info.value.message == "endpoint r1: only managed endpoints have a device token"


async def test_seed_from_config_once_then_database_is_authoritative(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tree_config(tmp_path, rtp=("127.0.0.1:9",))
    assert await store.seed_from_config(config) is True
    assert [z.id for z in await store.zones.list()] == ["p", "c0", "c1"]
    e = await store.endpoints.get("c0-e1")
    assert e.token_hash == hash_token("tok-c0-e1") and e.zone == "c0"
    assert (await store.endpoints.get("rtp0")).address == "127.0.0.1:9"
    await store.endpoints.remove("c1-e0")
    assert await store.seed_from_config(config) is False
    assert "c1-e0" not in {x.id for x in await store.endpoints.list()}
    assert "the config lists c1-e0, absent from the database" in caplog.text


async def test_seed_orders_parents_first_and_refuses_bad_ids(store: Store) -> None:
    config = Config(
        zones=(ZoneSpec("v", "V", parent="c"), ZoneSpec("c", "C")),
        endpoints=(EndpointSpec("bad id", "E", "v", token="t"),),
    )
    with pytest.raises(BadRequest, match=r"^endpoint id 'bad id' may not contain whitespace"):
        await store.seed_from_config(config)
    assert await store.zones.list() == []  # all or nothing
    ok = Config(zones=config.zones)
    assert await store.seed_from_config(ok) is True
    assert [z.id for z in await store.zones.list()] == ["c", "v"]


async def test_seed_takes_the_zones_voices(store: Store) -> None:
    config = Config(
        zones=(ZoneSpec("p", "P", voice="vi-vn-x-south"), ZoneSpec("c", "C", parent="p"))
    )
    assert await store.seed_from_config(config) is True
    assert [(z.id, z.voice) for z in await store.zones.list()] == [
        ("p", "vi-vn-x-south"),
        ("c", None),
    ]
    assert await store.zones.voice("c") == "vi-vn-x-south"


def test_a_config_zone_voice_is_one_of_three() -> None:
    with pytest.raises(ConfigError, match=r"^zone p: voice must be one of vi, vi-vn-x-central"):
        ZoneSpec("p", "P", voice="hmn")
