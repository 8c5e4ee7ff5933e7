"""Bulletins end to end: a real relay, real speakers, bulletins by level and by CAP.

normal waits in the inbox and plays only when scheduled; priority waits for the programme's
item boundary, then plays before the rest of it; emergency interrupts at once and repeats
until cancelled; a CAP typhoon warning goes on air in the mapped communes and its Cancel
stops it; a hostile CAP document plays nothing."""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
import wave
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.bulletins.service import BulletinService, announcement, ordered_variants
from loa.codecs.pcm import dominant_frequency, rms_dbfs
from loa.web.keys import BULLETINS
from tests.conftest import AUTH, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport, tone

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CAP_DIR = Path(__file__).parent.parent / "data" / "cap"


def play(relay: Any, bulletin_id: str, n: int) -> str | None:
    """The running n-th play of a bulletin: ``<bulletin>.<n>-<random tail>``."""
    prefix = f"{bulletin_id}.{n}-"
    return next((b for b in relay.node.broadcasts if b.startswith(prefix)), None)


def wav(freq: float, seconds: float) -> bytes:
    t = np.arange(int(48000 * seconds)) / 48000
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((np.sin(2 * math.pi * freq * t) * 12000).astype(np.int16).tobytes())
    return out.getvalue()


async def upload(relay: Any, freq: float, seconds: float) -> str:
    async with relay.http.post(
        relay.url + "/api/v1/media?filename=t.wav", data=wav(freq, seconds), headers=AUTH
    ) as resp:
        assert resp.status == 201
        return str((await resp.json())["id"])


def bulletin(level: str, media: str, zones: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "level": level,
        "zones": zones,
        "title": f"bản tin {level}",
        "variants": [{"language": "vi", "media": media}],
        **extra,
    }


def runs(frames: Any, t0: float) -> list[tuple[str | None, list[np.ndarray]]]:
    """What a speaker heard since ``t0`` as runs of consecutive frames of one broadcast
    (frames of no broadcast, the speaker's own silence between broadcasts, left out)."""
    heard = [(bc, pcm) for t, bc, _, pcm in frames if t >= t0 and bc is not None]
    return [(bc, [p for _, p in group]) for bc, group in groupby(heard, key=lambda x: x[0])]


def freq(pcms: list[np.ndarray]) -> float:
    loud = [p for p in pcms if rms_dbfs(p) > -50]
    return dominant_frequency(np.concatenate(loud)) if loud else 0.0


async def started(relay: Any, config: Any) -> Fleet:
    fleet = Fleet(relay.url, [(e.id, e.token) for e in config.endpoints])
    await fleet.start()
    ids = [e.id for e in config.endpoints]
    await wait_for(lambda: on_transport(relay.node, ids), 15, "speakers on UDP")
    return fleet


async def test_normal_waits_in_the_inbox_and_plays_when_scheduled(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=2, per_commune=1)
    relay = await relay_factory(config)
    fleet = await started(relay, config)
    try:
        media = await upload(relay, 600, 1.0)
        made = await relay.api("POST", "/bulletins", bulletin("normal", media, ["c0"]), 201)
        await asyncio.sleep(1.0)
        assert relay.node.broadcasts == {}
        assert not fleet.heard["c0-e0"].frames, "a normal bulletin must not play by itself"
        assert (await relay.api("GET", f"/bulletins/{made['id']}"))["state"] == "inbox"

        at = time.time() + 1.5
        scheduled = await relay.api("POST", f"/bulletins/{made['id']}/schedule", {"at": at})
        assert scheduled["state"] == "scheduled"
        await asyncio.sleep(1.0)
        assert relay.node.broadcasts == {}, "it plays at the chosen time, not before"
        await wait_for(lambda: play(relay, made["id"], 1), 2, "the scheduled play")
        bc_id = play(relay, made["id"], 1) or ""
        assert time.time() >= at - 0.05
        bc = relay.node.broadcasts[bc_id]
        assert bc.spec.priority.name == "SCHEDULED" and bc.spec.target_zones == {"c0"}
        assert (await relay.api("GET", f"/bulletins/{made['id']}"))["state"] == "on_air"
        await asyncio.wait_for(bc.ended.wait(), 15)
        await wait_for(lambda: not relay.node.broadcasts, 2, "the end of the bulletin")
        row = await relay.api("GET", f"/bulletins/{made['id']}")
        assert row["state"] == "done" and row["broadcasts"] == [bc_id]

        heard = runs(fleet.heard["c0-e0"].frames, 0)
        assert [b for b, _ in heard] == [bc_id]
        frames = heard[0][1]
        # The announcement (speech) comes first, then the 600 Hz bulletin: its last second.
        assert freq(frames[-40:]) == pytest.approx(600, rel=0.01)
        assert freq(frames[:40]) != pytest.approx(600, rel=0.05)
        assert len(frames) > 50 + 50  # announcement and one second of tone
        assert not fleet.heard["c1-e0"].frames, "c1 is not a target"
    finally:
        await fleet.close()


async def test_priority_waits_for_the_item_boundary_then_plays_before_the_rest(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=1, per_commune=2)
    relay = await relay_factory(config)
    relay.server.app[BULLETINS].announce = False  # short plays: the boundary is the point here
    fleet = await started(relay, config)
    try:
        media = await upload(relay, 800, 0.8)
        items = [
            {"type": "tone", "freq_hz": 500, "duration_s": 1.5},
            {"type": "tone", "freq_hz": 1500, "duration_s": 1.5},
        ]
        t0 = time.monotonic()
        programme = {
            "source": {"type": "playlist", "items": items},
            "targets": {"zones": ["c0"]},
            "class": "scheduled",
        }
        prog_id = (await relay.api("POST", "/broadcasts", programme, 201))["id"]
        await asyncio.sleep(0.4)
        made = await relay.api("POST", "/bulletins", bulletin("priority", media, ["c0"]), 201)
        await wait_for(lambda: play(relay, made["id"], 1), 2, "the priority broadcast")
        bc_id = play(relay, made["id"], 1) or ""
        assert relay.node.broadcasts[bc_id].spec.priority.name == "PRIORITY"
        assert all(relay.node.router.holder(e) == prog_id for e in ("c0-e0", "c0-e1"))
        prog = relay.node.broadcasts[prog_id]
        await wait_for(lambda: relay.node.router.holder("c0-e0") == bc_id, 3, "the boundary")
        # the programme paused exactly at the end of item 1: 1.5 s is 75 frames
        assert prog.frames == 75, prog.frames
        assert relay.node.router.holder("c0-e1") == bc_id
        await wait_for(lambda: prog_id not in relay.node.broadcasts, 8, "the programme's end")
        # speakers in step hear each frame D after it left: the programme's last ones too
        await asyncio.sleep(relay.node.config.relay.playout_delay_ms / 1000 + 0.1)
        row = await relay.api("GET", f"/bulletins/{made['id']}")
        assert row["state"] == "done"

        for ep in ("c0-e0", "c0-e1"):
            heard = runs(fleet.heard[ep].frames, t0)
            assert [b for b, _ in heard] == [prog_id, bc_id, prog_id], (
                ep,
                [(b, len(f)) for b, f in heard],
            )
            item1, bulletin_frames, item2 = (frames for _, frames in heard)
            # item 1 (the speaker may miss its first few frames), the bulletin, item 2 whole
            assert 68 <= len(item1) <= 76, (ep, len(item1))
            assert freq(item1[-10:]) == pytest.approx(500, rel=0.02)
            assert freq(bulletin_frames) == pytest.approx(800, rel=0.01)
            assert freq(item2[:10]) == pytest.approx(1500, rel=0.02)
            assert 70 <= len(item2) <= 77, (ep, len(item2))
    finally:
        await fleet.close()


async def test_emergency_interrupts_at_once_and_repeats_until_cancelled(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=2, per_commune=1)
    relay = await relay_factory(config)
    relay.server.app[BULLETINS].announce = False
    fleet = await started(relay, config)
    try:
        media = await upload(relay, 700, 0.6)
        prog_id = (await relay.api("POST", "/broadcasts", tone(1000, ["p"], "scheduled"), 201))[
            "id"
        ]
        await asyncio.sleep(0.5)
        body = bulletin("emergency", media, ["c0"], repeat_every_s=3)
        t_req = time.monotonic()
        made = await relay.api("POST", "/bulletins", body, 201)
        await wait_for(lambda: play(relay, made["id"], 1), 0.5, "the emergency")
        first = play(relay, made["id"], 1) or ""
        await wait_for(lambda: relay.node.router.holder("c0-e0") == first, 0.5, "interrupt")
        assert relay.node.router.holder("c1-e0") == prog_id
        # chime (1.5 s) + 0.6 s of 700 Hz, then back to the programme until the repeat
        await wait_for(lambda: relay.node.router.holder("c0-e0") == prog_id, 4, "the first end")
        await wait_for(lambda: play(relay, made["id"], 2), 3, "the repeat")
        second = play(relay, made["id"], 2) or ""
        assert time.monotonic() - t_req == pytest.approx(3.0, abs=0.5)  # start to start
        await wait_for(lambda: relay.node.router.holder("c0-e0") == second, 0.5, "repeat on air")
        await asyncio.sleep(1.7)  # into the 700 Hz part of the repeat
        row = await relay.api("GET", f"/bulletins/{made['id']}")
        assert row["state"] == "on_air" and row["broadcasts"] == [first, second]

        cancelled = await relay.api("POST", f"/bulletins/{made['id']}/cancel")
        assert cancelled["state"] == "cancelled"
        assert second not in relay.node.broadcasts
        assert relay.node.router.holder("c0-e0") == prog_id
        await asyncio.sleep(3.5)
        row = await relay.api("GET", f"/bulletins/{made['id']}")
        assert row["broadcasts"] == [first, second], "no repeat after a cancel"
        assert set(relay.node.broadcasts) == {prog_id}

        heard = runs(fleet.heard["c0-e0"].frames, t_req)
        order = [b for b, _ in heard]
        assert order == [prog_id, first, prog_id, second, prog_id][-len(order) :]
        for bc, frames in heard:
            if bc == second:
                assert freq(frames[-15:]) == pytest.approx(700, rel=0.01)
                assert fleet.heard["c0-e0"].volumes(t_req, second) == {100}
        assert fleet.heard["c1-e0"].frequency(t_req, prog_id) == pytest.approx(1000, rel=0.01)
        assert {b for b, _ in runs(fleet.heard["c1-e0"].frames, t_req)} == {prog_id}
    finally:
        await fleet.close()


def typhoon(expires: str = "2099-09-13T08:00:00+07:00") -> bytes:
    text = (CAP_DIR / "typhoon.xml").read_text(encoding="utf-8")
    return text.replace("2025-09-13T08:00:00+07:00</expires>", f"{expires}</expires>").encode()


async def post_cap(relay: Any, body: bytes) -> tuple[int, Any]:
    headers = {**AUTH, "Content-Type": "application/cap+xml"}
    async with relay.http.post(
        relay.url + "/api/v1/bulletins/cap", data=body, headers=headers
    ) as r:
        return r.status, await r.json()


async def test_cap_typhoon_plays_in_the_mapped_communes_until_its_cancel(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=3, per_commune=1)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    geocodes = {"VN-DVHC": {"19183": "c0", "19186": "c1"}}
    (config.data_dir / "geocodes.json").write_text(json.dumps(geocodes), encoding="utf-8")
    relay = await relay_factory(config)
    fleet = await started(relay, config)
    try:
        for name in ("xxe.xml", "billion_laughs.xml"):
            status, data = await post_cap(relay, (CAP_DIR / name).read_bytes())
            assert status == 422 and data["error"]["code"] == "bad_cap", data
        status, data = await post_cap(
            relay, b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>"
        )
        assert status == 422 and data["error"]["message"].startswith("malformed XML at line 1")
        await asyncio.sleep(0.5)
        assert relay.node.broadcasts == {} and not any(h.frames for h in fleet.heard.values())

        t0 = time.monotonic()
        status, made = await post_cap(relay, typhoon())
        assert status == 201 and made["level"] == "emergency", made
        await wait_for(lambda: play(relay, made["id"], 1), 2, "the typhoon warning")
        bc_id = play(relay, made["id"], 1) or ""
        await wait_for(lambda: relay.node.router.holder("c0-e0") == bc_id, 1, "c0 hears it")
        assert relay.node.router.holder("c1-e0") == bc_id
        assert relay.node.router.holder("c2-e0") is None
        await asyncio.sleep(4.0)  # chime, announcement, then the warning spoken
        assert bc_id in relay.node.broadcasts

        status, data = await post_cap(relay, (CAP_DIR / "cancel.xml").read_bytes())
        assert status == 200 and data["cancelled"] == [made["id"]], data
        assert relay.node.broadcasts == {}
        assert relay.node.router.holder("c0-e0") is None
        for ep in ("c0-e0", "c1-e0"):
            heard = fleet.heard[ep]
            assert {b for b, _ in runs(heard.frames, t0)} == {bc_id}, ep
            loud = [p for p in heard.since(t0, bc_id) if rms_dbfs(p) > -50]
            assert len(loud) > 100, (ep, len(loud))  # ~4 s of chime and speech
        assert not fleet.heard["c2-e0"].frames
        row = await relay.api("GET", f"/bulletins/{made['id']}")
        assert row["state"] == "cancelled"
    finally:
        await fleet.close()


def test_announcement_and_language_order() -> None:
    # 2025-09-12 07:05 UTC is 14:05 in Hanoi
    assert (
        announcement(1757660700.0, "Asia/Ho_Chi_Minh") == "Bản tin phát lúc 14:05 ngày 12/09/2025."
    )
    variants = [
        {"language": "en", "text": "a"},
        {"language": "km", "text": "b"},
        {"language": "vi-VN", "text": "c"},
    ]
    assert [v["text"] for v in ordered_variants(variants, ["vi", "en"])] == ["c", "a", "b"]
    assert BulletinService.__doc__


async def test_a_new_leader_follows_the_play_on_air_instead_of_playing_it_again(
    relay_factory: Any, tmp_path: Path
) -> None:
    """In a cluster a deposed leader closes its bulletin tasks while a play goes on (on its
    node, relayed to the others); the next leader's ``start()`` finds the bulletin on air
    with that play still on air, and follows it: no second play, and it settles ``done``
    when the play ends. Here one node plays both leaders."""
    config = tree_config(tmp_path, communes=1, per_commune=1)
    relay = await relay_factory(config)
    service = relay.server.app[BULLETINS]
    service.announce = False
    media = await upload(relay, 600, 2.0)
    made = await relay.api("POST", "/bulletins", bulletin("emergency", media, ["c0"]), 201)
    await wait_for(lambda: play(relay, made["id"], 1), 3, "the first play")
    first = play(relay, made["id"], 1)
    await service.close()  # deposed: its tasks end, the play goes on
    assert first in relay.node.broadcasts
    await service.start()  # the next leader
    assert service.active() == {made["id"]: first}
    ended = relay.node.broadcasts[first or ""].ended
    await asyncio.wait_for(ended.wait(), 5)
    deadline = time.monotonic() + 3
    while (row := await relay.api("GET", f"/bulletins/{made['id']}"))["state"] != "done":
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.05)
    assert row["broadcasts"] == [first]  # played once
