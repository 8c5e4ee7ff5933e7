"""Regional voices through the API on the real create_app and the real espeak-ng: a zone's
voice (own or inherited) set through /zones, used by live text broadcasts and bulletins; a
text in a language with no voice refused at submission (422, code ``no_voice``, naming the
language; a CAP alert's info block in it left out, with a warning); a bulletin whose play
breaks off on air ends ``failed``, logged, never ``done``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loa.bulletins.service import BulletinService
from loa.store.bulletins import BulletinRow
from loa.streamer.playlist import Playlist
from loa.streamer.tts import TtsSource
from loa.web.app import NODE, create_app
from loa.web.keys import BULLETINS
from loa.web.pages import STATIC
from tests.conftest import AUTH, need_binary, tree_config
from tests.relay.fleet import wait_for

CAP_DIR = Path(__file__).parent.parent / "data" / "cap"
GEOCODES = {"VN-DVHC": {"02680": "c0", "02686": "c1"}}
SOUTH, CENTRAL, NORTH = "vi-vn-x-south", "vi-vn-x-central", "vi"


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    need_binary("espeak-ng")
    config = tree_config(tmp_path, communes=2, per_commune=1)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    (config.data_dir / "geocodes.json").write_text(json.dumps(GEOCODES), encoding="utf-8")
    return await aiohttp_client(create_app(config))


async def call(client: TestClient, method: str, path: str, status: int, body: Any = None) -> Any:
    kw: dict[str, Any] = {} if body is None else {"json": body}
    async with client.request(method, "/api/v1" + path, headers=AUTH, **kw) as resp:
        data = await resp.json()
        assert resp.status == status, data
        return data


def bulletin(level: str, zones: list[str], variants: list[dict[str, str]]) -> dict[str, Any]:
    return {"level": level, "zones": zones, "title": "Thông báo", "variants": variants}


def voices_of(source: Any) -> list[str]:
    items = source.items if isinstance(source, Playlist) else [source]
    return [s.voice for s in items if isinstance(s, TtsSource)]


async def test_a_zones_voice_is_set_and_inherited(client: TestClient) -> None:
    p = await call(client, "GET", "/zones/p", 200)
    assert (p["voice"], p["effective_voice"]) == (None, NORTH)  # nobody chose: the North's
    p = await call(client, "PATCH", "/zones/p", 200, {"voice": SOUTH})
    assert (p["voice"], p["effective_voice"]) == (SOUTH, SOUTH)
    c0 = await call(client, "PATCH", "/zones/c0", 200, {"voice": CENTRAL})
    assert (c0["voice"], c0["effective_voice"]) == (CENTRAL, CENTRAL)
    added = await call(
        client, "POST", "/zones", 201, {"id": "v0", "name": "Thôn 0", "parent": "c0"}
    )
    assert (added["voice"], added["effective_voice"]) == (None, CENTRAL)
    listed = {
        z["id"]: (z["voice"], z["effective_voice"])
        for z in (await call(client, "GET", "/zones", 200))["zones"]
    }
    assert listed == {
        "p": (SOUTH, SOUTH),
        "c0": (CENTRAL, CENTRAL),
        "c1": (None, SOUTH),
        "v0": (None, CENTRAL),
    }
    renamed = await call(client, "PATCH", "/zones/c0", 200, {"name": "Xã Giữa"})
    assert renamed["voice"] == CENTRAL  # not given: kept
    back = await call(client, "PATCH", "/zones/c0", 200, {"voice": None})
    assert (back["voice"], back["effective_voice"]) == (None, SOUTH)
    bad = await call(client, "PATCH", "/zones/c0", 400, {"voice": "hmn"})
    assert bad["error"]["code"] == "invalid_value"


async def test_text_broadcasts_and_bulletins_speak_in_the_zones_voice(client: TestClient) -> None:
    await call(client, "PATCH", "/zones/c1", 200, {"voice": SOUTH})
    node = client.app[NODE]
    text = {"type": "tts", "text": "Thông báo của Ủy ban xã."}
    south = await call(
        client, "POST", "/broadcasts", 201, {"source": text, "targets": {"zones": ["c1"]}}
    )
    assert voices_of(node.broadcasts[south["id"]].source) == [SOUTH]
    north = await call(
        client, "POST", "/broadcasts", 201, {"source": text, "targets": {"zones": ["c0"]}}
    )
    assert voices_of(node.broadcasts[north["id"]].source) == [NORTH]
    # a pole's zone when only poles are targeted; a voice named in the source wins
    pole = await call(
        client, "POST", "/broadcasts", 201, {"source": text, "targets": {"endpoints": ["c1-e0"]}}
    )
    assert voices_of(node.broadcasts[pole["id"]].source) == [SOUTH]
    named = {**text, "voice": CENTRAL}
    chosen = await call(
        client, "POST", "/broadcasts", 201, {"source": named, "targets": {"zones": ["c1"]}}
    )
    assert voices_of(node.broadcasts[chosen["id"]].source) == [CENTRAL]
    for bc in (south, north, pole, chosen):
        await call(client, "DELETE", f"/broadcasts/{bc['id']}", 200)

    # a priority bulletin to the South zone: the announcement and the Vietnamese text in the
    # South's voice, the English one in espeak-ng's English
    variants = [
        {"language": "vi-VN", "text": "Cắt điện từ 8 giờ."},
        {"language": "en", "text": "Power cut."},
    ]
    made = await call(client, "POST", "/bulletins", 201, bulletin("priority", ["c1"], variants))
    await wait_for(
        lambda: any(b.startswith(made["id"]) for b in node.broadcasts), 5, "the bulletin"
    )
    bc = next(b for i, b in node.broadcasts.items() if i.startswith(made["id"]))
    assert voices_of(bc.source) == [SOUTH, SOUTH, "en"]
    await call(client, "POST", f"/bulletins/{made['id']}/cancel", 200)


async def test_a_text_in_a_language_with_no_voice_is_refused(client: TestClient) -> None:
    variants = [
        {"language": "vi", "text": "Họp thôn lúc 8 giờ."},
        {"language": "hmn", "text": "Nyob zoo."},
    ]
    refused = await call(client, "POST", "/bulletins", 422, bulletin("normal", ["c0"], variants))
    assert refused["error"]["code"] == "no_voice"
    assert refused["error"]["language"] == "hmn"
    assert "'hmn'" in refused["error"]["message"]
    assert (await call(client, "GET", "/bulletins", 200))["bulletins"] == []  # nothing stored
    # the page words it in Vietnamese, naming the language
    vi = json.loads((STATIC / "i18n" / "vi.json").read_text(encoding="utf-8"))
    assert "{language}" in vi["error.no_voice.language"]
    assert "giọng đọc" in vi["error.no_voice.language"]
    # a language espeak-ng speaks, by its whole tag or its primary subtag, is accepted
    for language in ("en", "en-GB", "zh"):
        ok = [{"language": language, "text": "Hello."}]
        await call(client, "POST", "/bulletins", 201, bulletin("normal", ["c0"], ok))


async def test_a_cap_info_block_with_no_voice_is_left_out(client: TestClient) -> None:
    """multilang.xml: a Vietnamese info block and one in Hmong (hnj): the alert goes on air
    in Vietnamese, the Hmong text is left out with a warning naming the language."""
    text = (CAP_DIR / "multilang.xml").read_text(encoding="utf-8")
    text = text.replace(
        "2025-08-08T17:30:00+07:00</expires>", "2099-08-08T17:30:00+07:00</expires>"
    )
    headers = {**AUTH, "Content-Type": "application/cap+xml"}
    async with client.post("/api/v1/bulletins/cap", data=text.encode(), headers=headers) as resp:
        made = await resp.json()
        assert resp.status == 201, made
    assert [v["language"] for v in made["variants"]] == ["vi"]
    assert "no text-to-speech voice for hnj: not spoken" in made["warnings"]
    await call(client, "POST", f"/bulletins/{made['id']}/cancel", 200)


async def test_a_bulletin_whose_play_breaks_off_ends_failed(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A normal bulletin stored before the check (a Hmong text) is scheduled: the
    announcement and the Vietnamese text play, espeak-ng refuses the Hmong one, the play
    breaks off: the bulletin is ``failed`` (never ``done``) and the error is logged."""
    service: BulletinService = client.app[BULLETINS]
    now = service.clock()
    row = BulletinRow(
        id="b-old", level="normal", zones=("c0",), title="Họp thôn",
        variants=(
            {"language": "vi", "text": "Họp thôn."},
            {"language": "hmn", "text": "Nyob zoo."},
        ),
        issued_at=now, expires_at=None, repeat_every_s=None, state="inbox", source="api",
        cap_sender=None, cap_identifier=None, broadcasts=(), created_by="admin",
        created_at=now, updated_at=now,
    )  # fmt: skip
    await service.store.bulletins.add(row)
    caplog.set_level(logging.ERROR, logger="loa.bulletins.service")
    await call(client, "POST", "/bulletins/b-old/schedule", 200, {})

    async def state() -> str:
        return str((await call(client, "GET", "/bulletins/b-old", 200))["state"])

    deadline = asyncio.get_running_loop().time() + 20
    while await state() in ("scheduled", "on_air"):
        assert asyncio.get_running_loop().time() < deadline, "the play never ended"
        await asyncio.sleep(0.1)
    assert await state() == "failed"
    failed = await call(client, "GET", "/bulletins?state=failed", 200)
    assert [b["id"] for b in failed["bulletins"]] == ["b-old"]
    assert any(
        "b-old" in r.getMessage() and "unknown espeak-ng voice 'hmn'" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    log = await call(client, "GET", "/log", 200)
    entry = next(e for e in log["entries"] if e["id"].startswith("b-old.1-"))
    assert entry["state"] == "failed"


@pytest.mark.slow
async def test_a_schedules_text_speaks_in_its_zones_voice(client: TestClient) -> None:
    """A schedule to the South commune starting in 2 s: its text item naming no voice speaks
    in the South's, the one naming the Central voice in that."""
    await call(client, "PATCH", "/zones/c1", 200, {"voice": SOUTH})
    at = int(time.time()) + 2
    schedule = {
        "id": "soon",
        "name": "Bản tin trưa",
        "dtstart": at,
        "rrule": "FREQ=MINUTELY;COUNT=1",
        "items": [
            {"type": "tts", "text": "Bản tin trưa."},
            {"type": "tts", "text": "Hết bản tin.", "voice": CENTRAL},
        ],
        "targets": {"zones": ["c1"]},
    }
    await call(client, "POST", "/schedules", 201, schedule)
    node = client.app[NODE]
    runs = lambda: [b for b in node.broadcasts if b.startswith(f"sch-soon-{at}-")]  # noqa: E731
    await wait_for(runs, 6, "the scheduled broadcast")
    assert voices_of(node.broadcasts[runs()[0]].source) == [SOUTH, CENTRAL]
