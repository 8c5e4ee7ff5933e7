"""A zone's packet settings (frame_ms, redundancy, playout_delay_ms) through the API on the real
create_app: set, inherited, cleared, refused with the field named, carried to the running
node, and the playout delay in the welcome of the zone's speakers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from loa.config import with_changes
from loa.inventory import load_inventory
from loa.relay.core.control import CLOSE_REPLACED
from loa.relay.core.zones import AudioSettings
from loa.relay.node import Node
from loa.web.app import create_app
from tests.conftest import tree_config
from tests.web.test_api_admin import call, hello, node_of, store_of

SETTINGS = ("frame_ms", "redundancy", "playout_delay_ms")


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    config = tree_config(tmp_path, communes=2, per_commune=1)
    relay = with_changes(config.relay, playout_delay_ms=250)
    config = with_changes(config, relay=relay, opus=with_changes(config.opus, frame_ms=20))
    return await aiohttp_client(create_app(config))


def own(zone: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(zone[k] for k in SETTINGS)


def effective(zone: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(zone["effective_audio"][k] for k in SETTINGS)


async def test_settings_round_trip_and_are_inherited(client: TestClient) -> None:
    p = await call(client, "GET", "/zones/p")
    assert (own(p), effective(p)) == ((None, None, None), (20, False, 250))  # the config's
    p = await call(client, "PATCH", "/zones/p", {"frame_ms": 40, "playout_delay_ms": 500})
    assert (own(p), effective(p)) == ((40, None, 500), (40, False, 500))
    c0 = await call(client, "PATCH", "/zones/c0", {"redundancy": True, "frame_ms": 60})
    assert (own(c0), effective(c0)) == ((60, True, None), (60, True, 500))
    body = {"id": "v0", "name": "Thôn 0", "parent": "c0", "playout_delay_ms": 80}
    v0 = await call(client, "POST", "/zones", body, status=201)
    assert (own(v0), effective(v0)) == ((None, None, 80), (60, True, 80))
    listed = {z["id"]: effective(z) for z in (await call(client, "GET", "/zones"))["zones"]}
    assert listed == {
        "p": (40, False, 500),
        "c0": (60, True, 500),
        "c1": (40, False, 500),
        "v0": (60, True, 80),
    }
    c0 = await call(client, "PATCH", "/zones/c0", {"frame_ms": None, "name": "Xã Không"})
    assert (own(c0), effective(c0), c0["name"]) == ((None, True, None), (40, True, 500), "Xã Không")
    # the running node routes on the same settings, and the store kept them
    assert node_of(client).zones.audio("v0") == AudioSettings(40, True, 80)
    assert (await store_of(client).zones.get("p")).audio.frame_ms == 40
    restarted = Node(node_of(client).config)  # a restart (or another node) reads the store
    await load_inventory(restarted, store_of(client))
    assert {z: restarted.zones.audio(z) for z in restarted.zones} == {
        z: node_of(client).zones.audio(z) for z in ("p", "c0", "c1", "v0")
    }


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"frame_ms": 30}, "frame_ms", "one of 20, 40, 60"),
        ({"frame_ms": "40"}, "frame_ms", "must be int"),
        ({"redundancy": "yes"}, "redundancy", "must be bool"),
        ({"playout_delay_ms": 20}, "playout_delay_ms", "expected int >= 40"),
        ({"playout_delay_ms": 5000}, "playout_delay_ms", "expected int <= 1000"),
    ],
)
async def test_bad_settings_are_refused_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str, words: str
) -> None:
    before = await call(client, "GET", "/zones/c1")
    for method, path, sent in (
        ("PATCH", "/zones/c1", {**body, "name": "Xã Sai"}),
        ("POST", "/zones", {"id": "v9", "name": "Thôn 9", "parent": "c1", **body}),
    ):
        data = await call(client, method, path, sent, status=400)
        assert data["error"]["code"] in ("invalid_value", "wrong_type")
        assert data["error"]["field"] == field
        assert words in data["error"]["message"]
    assert await call(client, "GET", "/zones/c1") == before  # nothing changed
    assert "v9" not in node_of(client).zones


async def texts_until_quiet(ws: Any) -> None:
    """Read text messages until none comes for 0.3 s (TimeoutError); fail on anything else."""
    while True:
        assert (await ws.receive(timeout=0.3)).type is WSMsgType.TEXT


async def test_the_welcome_carries_the_zones_playout_delay(client: TestClient) -> None:
    ws, welcome = await hello(client, "tok-c0-e0")
    assert welcome["playout_delay_ms"] == 250  # relay.playout_delay_ms: no zone sets one
    await call(client, "PATCH", "/zones/p", {"frame_ms": 40})  # not the delay: stays connected
    await call(client, "PATCH", "/zones/c1", {"playout_delay_ms": 120})  # not its zone
    with pytest.raises(TimeoutError):  # still connected: what it plays, and no close
        await texts_until_quiet(ws)
    await call(client, "PATCH", "/zones/p", {"playout_delay_ms": 600})  # its zone's, inherited
    closing = await ws.receive(timeout=5)
    while closing.type is WSMsgType.TEXT:  # what it plays, sent before
        closing = await ws.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, CLOSE_REPLACED)
    await ws.close()
    ws, welcome = await hello(client, "tok-c0-e0")
    assert welcome["playout_delay_ms"] == 600
    await ws.close()
    ws, welcome = await hello(client, "tok-c1-e0")
    assert welcome["playout_delay_ms"] == 120
    await ws.close()
