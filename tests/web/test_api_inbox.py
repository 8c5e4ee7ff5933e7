"""What the inbox page gets beyond the bulletins: "play now" says when the poles hear it (at
once, after a commune programme's current item with about when, or when a live broadcast
ends), and a preview renders the play as Ogg Opus without putting anything on air."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loa.codecs.opus import OpusDecoder
from loa.codecs.pcm import rms_dbfs
from loa.web.api.inbox import MAX_PREVIEWS
from loa.web.app import NODE, create_app
from loa.web.keys import PREVIEWS
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import wait_for
from tests.support.ogg import OggOpusReader
from tests.web.test_api_admin import account
from tests.web.test_api_bulletins import call, normal


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(tree_config(tmp_path, communes=3)))


async def start(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    made = await call(client, "POST", "/broadcasts", 201, {"chime": False, **body}, headers=headers)
    return str(made["id"])


async def test_play_now_says_when_each_pole_hears_it(client: TestClient) -> None:
    node = client.app[NODE]
    idle = await call(client, "POST", "/bulletins", 201, normal(zones=["c2"]))
    got = await call(client, "POST", f"/bulletins/{idle['id']}/schedule", 200, {})
    assert got["state"] == "scheduled" and got["plays"] == {"now": 2, "waits": []}
    await wait_for(lambda: node.router.holder("c2-e0") is not None, 5, "the bulletin on c2")
    await call(client, "POST", f"/bulletins/{idle['id']}/cancel", 200)
    await wait_for(lambda: node.router.holder("c2-e0") is None, 5, "c2 free again")

    # The commune's own programme (a 120 s item) holds c0: a national bulletin outranks it
    # and takes the floor when that item ends. Someone speaking live holds c1 until they stop.
    xa = await account(client.app, "xa0", "operator", "c0")
    programme = await start(
        client,
        xa,
        name="Chương trình của xã",
        source={"type": "tone", "freq_hz": 440, "duration_s": 120},
        targets={"zones": ["c0"]},
        **{"class": "scheduled"},
    )
    live = await start(
        client,
        AUTH,
        name="Phát trực tiếp",
        source={"type": "tone", "freq_hz": 330},
        targets={"zones": ["c1"]},
        **{"class": "live"},
    )
    await wait_for(
        lambda: {node.router.holder(e) for e in ("c0-e0", "c1-e0")} == {programme, live},
        5,
        "both holding their communes",
    )
    bulletin = await call(client, "POST", "/bulletins", 201, normal(zones=["c0", "c1", "c2"]))
    t0 = time.time()
    got = await call(client, "POST", f"/bulletins/{bulletin['id']}/schedule", 200, {})
    waits = {w["holder"]: w for w in got["plays"]["waits"]}
    assert got["plays"]["now"] == 2 and set(waits) == {programme, live}
    item = waits[programme]
    assert (item["name"], item["endpoints"], item["until"]) == (
        "Chương trình của xã",
        2,
        "item_end",
    )
    assert t0 + 110 < item["at"] < t0 + 121, item  # 120 s less what has played
    assert {k: waits[live][k] for k in ("name", "endpoints", "until", "at")} == {
        "name": "Phát trực tiếp",
        "endpoints": 2,
        "until": "end",
        "at": None,
    }

    later = await call(client, "POST", "/bulletins", 201, normal())
    got = await call(client, "POST", f"/bulletins/{later['id']}/schedule", 200, {"at": 4e9})
    assert got["plays"] is None  # only a play now has an outlook


@pytest.mark.timeout(60)
async def test_a_preview_is_the_play_as_ogg_opus_and_nothing_goes_on_air(
    client: TestClient,
) -> None:
    bulletin = await call(
        client,
        "POST",
        "/bulletins",
        201,
        normal(
            variants=[
                {"language": "vi", "text": "Tiêm chủng tại trạm y tế xã vào sáng thứ bảy."},
                {"language": "en", "text": "Vaccination at the commune clinic on Saturday."},
            ]
        ),
    )
    viewer = await account(client.app, "xem", "viewer", "c0")
    async with client.get(f"/api/v1/bulletins/{bulletin['id']}/audio", headers=viewer) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "audio/ogg"
        data = await resp.read()
    reader = OggOpusReader()
    packets = reader.feed(data)
    assert reader.head is not None and reader.head.channels == 1 and reader.ended
    assert (reader.bad_pages, reader.lost_pages, reader.garbage_bytes) == (0, 0, 0)
    seconds = (reader.granule - reader.head.pre_skip) / 48_000
    # The announcement ("Bản tin phát lúc …") and two sentences: several seconds of speech.
    assert 5 < seconds < 60 and len(packets) == round(reader.granule / 960), seconds
    decoder = OpusDecoder()
    loud = sum(1 for p in packets if rms_dbfs(decoder.decode(p)) > -40)
    assert loud > 100, "speech, not silence"
    assert client.app[NODE].broadcasts == {}  # a preview plays nowhere
    assert (await call(client, "GET", f"/bulletins/{bulletin['id']}", 200))["state"] == "inbox"

    missing = await call(client, "GET", "/bulletins/b-0000000000/audio", 404)
    assert missing["error"]["code"] == "not_found"


async def test_previews_rendering_at_once_are_limited(client: TestClient) -> None:
    bulletin = await call(client, "POST", "/bulletins", 201, normal())
    path = f"/bulletins/{bulletin['id']}/audio"
    previews = client.app[PREVIEWS]
    for _ in range(MAX_PREVIEWS):  # as if that many were rendering now
        await previews.acquire()
    busy = await call(client, "GET", path, 503)
    assert (busy["error"]["code"], busy["error"]["limit"]) == ("too_many_sessions", MAX_PREVIEWS)
    previews.release()
    async with client.get("/api/v1" + path, headers=AUTH) as resp:
        assert resp.status == 200 and len(await resp.read()) > 1000
    assert not previews.locked()  # the one it took is back


async def test_a_priority_bulletin_says_it_waits_for_the_item_an_emergency_that_it_does_not(
    client: TestClient,
) -> None:
    xa = await account(client.app, "xa0", "operator", "c0")
    programme = await start(
        client,
        xa,
        name="Chương trình của xã",
        source={"type": "tone", "freq_hz": 440, "duration_s": 300},
        targets={"zones": ["c0"]},
        **{"class": "scheduled"},
    )
    node = client.app[NODE]
    await wait_for(lambda: node.router.holder("c0-e0") == programme, 5, "the programme")
    made = await call(client, "POST", "/bulletins", 201, normal(level="priority"))
    assert made["state"] == "on_air"
    (wait,) = made["plays"]["waits"]
    assert (made["plays"]["now"], wait["holder"], wait["until"]) == (0, programme, "item_end")
    assert wait["at"] is not None
    await call(client, "POST", f"/bulletins/{made['id']}/cancel", 200)

    made = await call(client, "POST", "/bulletins", 201, normal(level="emergency"))
    assert made["plays"] == {"now": 2, "waits": []}  # it interrupts the programme at once
    await call(client, "POST", f"/bulletins/{made['id']}/cancel", 200)

    filed = await call(client, "POST", "/bulletins", 201, normal())
    assert filed["plays"] is None  # a normal one waits in the inbox: nothing to say yet
