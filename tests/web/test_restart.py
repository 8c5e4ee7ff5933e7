"""What a restarted server does with what was on air (loa.onair), in process: a graceful
restart brings a broadcast back; records left by a crash are resumed, logged as expired or
as interrupted (live sessions, sources that cannot be rebuilt)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from loa.config import Config
from loa.store import Store
from tests.conftest import tree_config
from tests.relay.relayfix import tone
from tests.streamer.test_icecast import icecast_ids, legacy_source, mount_config, mp3_tone


def rec(klass: str, source: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    return {
        "spec": {
            "class": klass,
            "origin_zone": None,
            "targets": {"zones": ["c0"], "endpoints": []},
            "interrupt": None,
            "exclusive": False,
            "expires_at": None,
            "live": False,
            **spec,
        },
        "source": source,
        "chime": False,
        "what": f"{klass} test",
        "source_kind": "whip" if source is None else source["type"],
        "created_by": "admin",
        "requested_at": time.time() - 60,
    }


async def crashed_with(config: Config, records: dict[str, dict[str, Any]]) -> float:
    """A data dir as a crash leaves it: these on air, last alive now (returned)."""
    store = await Store.open(Path(config.data_dir) / "loa.db")
    try:
        for bc_id, record in records.items():
            await store.onair.put(bc_id, record, record["requested_at"])
        return time.time()
    finally:
        await store.close()


async def test_a_graceful_restart_brings_a_broadcast_back(
    tmp_path: Path, relay_factory: Any
) -> None:
    config = tree_config(tmp_path)
    relay = await relay_factory(config)
    bc = await relay.api("POST", "/broadcasts", tone(440, ["c0"], "live"), status=201)
    await relay.server.close()  # the node stops it with reason "shutdown"; it stays on air
    relay = await relay_factory(config)
    back = await relay.api("GET", f"/broadcasts/{bc['id']}")
    assert back["state"] in ("playing", "paused", "pending")
    assert back["requested_at"] == bc["requested_at"]
    assert back["interrupted_at"] is not None and back["resumed_at"] >= back["interrupted_at"]
    assert bc["id"] in relay.node.broadcasts
    await relay.api("DELETE", f"/broadcasts/{bc['id']}")
    await asyncio.sleep(0.2)
    await relay.server.close()  # stopped by a person: it does not come back
    relay = await relay_factory(config)
    assert bc["id"] not in relay.node.broadcasts
    assert (await relay.api("GET", f"/broadcasts/{bc['id']}"))["state"] == "stopped"


async def test_after_a_crash(tmp_path: Path, relay_factory: Any) -> None:
    config = tree_config(tmp_path)
    tone_src = {"type": "tone", "freq_hz": 500}
    alive = await crashed_with(
        config,
        {
            "bc-resume": rec("scheduled", tone_src),
            "bc-whip": rec("live", None, live=True),
            "bc-expired": rec("emergency", tone_src, expires_at=time.time() - 5),
            "bc-gone": rec("live", {"type": "media", "id": "0123456789abcdef"}),
            "bc-nowhere": rec("live", tone_src, targets={"zones": ["gone"], "endpoints": []}),
        },
    )
    relay = await relay_factory(config)
    assert set(relay.node.broadcasts) == {"bc-resume"}
    resumed = await relay.api("GET", "/broadcasts/bc-resume")
    assert resumed["what"] == "scheduled test" and resumed["class"] == "scheduled"
    assert alive - 1 < resumed["interrupted_at"] <= alive <= resumed["resumed_at"]
    whip = await relay.api("GET", "/broadcasts/bc-whip")
    assert (whip["state"], whip["reason"]) == ("stopped", "interrupted")
    assert whip["ended_at"] == whip["interrupted_at"] and alive - 1 < whip["ended_at"] <= alive
    assert whip["resumed_at"] is None
    expired = await relay.api("GET", "/broadcasts/bc-expired")
    assert (expired["state"], expired["reason"]) == ("expired", "expired")
    assert expired["ended_at"] < alive
    for bc_id in ("bc-gone", "bc-nowhere"):  # said why, kept in the log, not on air
        row = await relay.api("GET", f"/broadcasts/{bc_id}")
        assert row["state"] == "failed" and row["reason"].startswith(
            "interrupted; not brought back"
        )
    store = await Store.open(Path(config.data_dir) / "loa.db")
    try:
        assert [r.id for r in await store.onair.all()] == ["bc-resume"]
    finally:
        await store.close()


async def test_a_live_icecast_source_is_logged_interrupted(
    tmp_path: Path, relay_factory: Any
) -> None:
    config = mount_config(tmp_path)
    relay = await relay_factory(config)
    mp3 = await mp3_tone(tmp_path, 500, 2)
    _, writer, _ = await legacy_source(relay, "audio/mpeg")
    writer.write(mp3[:4000])
    await writer.drain()
    (bc_id,) = icecast_ids(relay)
    await asyncio.sleep(0.3)  # the log writer has recorded it on air
    await relay.server.close()
    writer.close()
    relay = await relay_factory(config)  # the encoder has not reconnected: nothing live
    assert relay.node.broadcasts == {}
    row = await relay.api("GET", f"/broadcasts/{bc_id}")
    assert (row["state"], row["reason"], row["resumed_at"]) == ("stopped", "interrupted", None)
    assert row["interrupted_at"] is not None and row["ended_at"] == row["interrupted_at"]
    assert row["source"] == "icecast"
