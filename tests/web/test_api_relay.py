"""The broadcast, endpoint and media API through aiohttp's test client."""

from __future__ import annotations

import asyncio
import io
import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from loa.web.app import CONFIG, create_app
from loa.web.keys import NODE
from tests.conftest import ADMIN, tree_config

AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    config = tree_config(tmp_path, rtp=("127.0.0.1:9",))
    return await aiohttp_client(create_app(config))


def tone_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"type": "tone", "freq_hz": 1000},
        "targets": {"zones": ["p"]},
        "class": "scheduled",
    }
    body.update(extra)
    return body


async def start(client: TestClient, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    resp = await client.post("/api/v1/broadcasts", json=body, headers=AUTH)
    data = await resp.json()
    assert resp.status == status, data
    return data


async def test_healthz_and_metrics_need_no_token(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    text = await (await client.get("/metrics")).text()
    assert "# TYPE loa_packets_sent_total counter" in text
    assert "loa_endpoints 5" in text


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
async def test_api_refuses_missing_or_wrong_token(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    resp = await client.get("/api/v1/broadcasts", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_start_list_stop_and_log(client: TestClient) -> None:
    bc = await start(client, tone_body())
    assert bc["id"].startswith("bc-") and len(bc["id"]) == 19  # the server's, random
    bc_id = bc["id"]
    assert bc["state"] == "playing"
    assert bc["listeners"] == ["c0-e0", "c0-e1", "c1-e0", "c1-e1", "rtp0"]
    listed = await (await client.get("/api/v1/broadcasts", headers=AUTH)).json()
    assert [b["id"] for b in listed["broadcasts"]] == [bc_id]
    await asyncio.sleep(0.1)
    stopped = await (await client.delete(f"/api/v1/broadcasts/{bc_id}", headers=AUTH)).json()
    assert stopped["state"] == "stopped" and stopped["reason"] == "stopped"
    log = await (await client.get("/api/v1/log", headers=AUTH)).json()
    assert log["entries"][0]["id"] == bc_id
    assert log["entries"][0]["heard_s"]["rtp0"] > 0.05
    resp = await client.get(f"/api/v1/broadcasts/{bc_id}", headers=AUTH)
    assert (await resp.json())["state"] == "stopped"


async def test_emergency_preempts_one_commune(client: TestClient) -> None:
    prog_id = (await start(client, tone_body()))["id"]
    em = await start(
        client,
        {
            "source": {"type": "tone", "freq_hz": 700},
            "targets": {"zones": ["c1"]},
            "class": "emergency",
            "chime": False,
        },
    )
    assert em["listeners"] == ["c1-e0", "c1-e1"]
    prog = await (await client.get(f"/api/v1/broadcasts/{prog_id}", headers=AUTH)).json()
    assert prog["listeners"] == ["c0-e0", "c0-e1", "rtp0"]
    await client.delete(f"/api/v1/broadcasts/{em['id']}", headers=AUTH)
    prog = await (await client.get(f"/api/v1/broadcasts/{prog_id}", headers=AUTH)).json()
    assert prog["listeners"] == ["c0-e0", "c0-e1", "c1-e0", "c1-e1", "rtp0"]


async def test_exclusive_conflict_names_the_holder(client: TestClient) -> None:
    holder = (await start(client, tone_body(**{"class": "live"})))["id"]
    err = await start(client, tone_body(exclusive=True, **{"class": "scheduled"}), status=409)
    assert err["error"]["code"] == "conflict"
    assert err["error"]["holder"] == holder
    assert holder in err["error"]["message"]
    listed = await (await client.get("/api/v1/broadcasts", headers=AUTH)).json()
    assert [b["id"] for b in listed["broadcasts"]] == [holder]


async def test_expired_broadcast_never_plays(client: TestClient) -> None:
    import time

    bc = await start(client, tone_body(expires_at=time.time() - 1))
    assert bc["state"] == "expired" and bc["listeners"] == []


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"targets": {"zones": ["p"]}}, 400, "missing_field", 'missing field "source"'),
        (tone_body(targets={"zones": []}), 400, "invalid_value", "at least one target"),
        (tone_body(targets={"zones": ["nowhere"]}), 404, "not_found", "zone nowhere not found"),
        (tone_body(targets={"endpoints": ["ghost"]}), 404, "not_found", "endpoint ghost not found"),
        (tone_body(**{"class": "urgent"}), 400, "invalid_value", "one of background, scheduled"),
        (tone_body(source={"type": "laser"}), 400, "invalid_value", "one of tone, silence, tts"),
        (tone_body(source={"type": "tone", "freq_hz": 1e6}), 400, "invalid_value", "freq_hz"),
        (tone_body(source={"type": "tts", "text": ""}), 400, "invalid_value", "source.text"),
        (tone_body(source={"type": "media", "id": "nope"}), 404, "not_found", "media"),
        (tone_body(expires_at="soon"), 400, "wrong_type", 'field "expires_at" must be float'),
        (tone_body(id="mine"), 400, "unknown_field", 'unknown field "id"'),
        (tone_body(idempotency_key="a b"), 400, "invalid_value", 'field "idempotency_key"'),
        (tone_body(clas="emergency"), 400, "unknown_field", 'unknown field "clas"'),
        (
            tone_body(source={"type": "tone", "frq_hz": 440}),
            400,
            "unknown_field",
            'unknown field "source.frq_hz"',
        ),
    ],
)
async def test_bad_broadcast_requests(
    client: TestClient, body: dict[str, Any], status: int, code: str, message: str
) -> None:
    err = await start(client, body, status=status)
    assert err["error"]["code"] == code
    assert message in err["error"]["message"]


async def test_non_json_body_is_415_and_bad_json_is_400(client: TestClient) -> None:
    resp = await client.post("/api/v1/broadcasts", data=b"x", headers=AUTH)
    assert resp.status == 415
    resp = await client.post(
        "/api/v1/broadcasts", data=b"{", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 400 and "not valid JSON" in (await resp.json())["error"]["message"]


async def test_stop_unknown_is_404(client: TestClient) -> None:
    resp = await client.delete("/api/v1/broadcasts/nope", headers=AUTH)
    assert resp.status == 404


async def test_sdp_for_rtp_endpoint(client: TestClient) -> None:
    resp = await client.get("/api/v1/endpoints/rtp0/sdp", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/sdp"
    sdp = await resp.text()
    assert "m=audio 9 RTP/AVP 111" in sdp and "c=IN IP4 127.0.0.1" in sdp
    assert "a=rtpmap:111 opus/48000/2" in sdp
    assert "a=ptime:20\r\n" in sdp and "a=maxptime:20\r\n" in sdp and "a=rtcp:10\r\n" in sdp
    await client.patch("/api/v1/zones/p", json={"frame_ms": 60}, headers=AUTH)  # inherited
    resp = await client.patch("/api/v1/zones/c0", json={"frame_ms": 40}, headers=AUTH)
    assert resp.status == 200
    sdp = await (await client.get("/api/v1/endpoints/rtp0/sdp", headers=AUTH)).text()
    assert "a=ptime:40\r\n" in sdp and "a=maxptime:40\r\n" in sdp  # its zone's packets
    resp = await client.get("/api/v1/endpoints/c0-e0/sdp", headers=AUTH)
    assert resp.status == 409  # a managed endpoint has no static address to describe
    assert (await resp.json())["error"]["endpoint"] == "c0-e0"


def write_wav(path: Path, seconds: float) -> None:
    t = np.arange(int(48000 * seconds)) / 48000
    pcm = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())


async def test_media_upload_then_broadcast(client: TestClient, tmp_path: Path) -> None:
    wav = tmp_path / "thong-bao.wav"
    write_wav(wav, 0.5)
    resp = await client.post(
        "/api/v1/media?filename=thong-bao.wav", data=wav.read_bytes(), headers=AUTH
    )
    info = await resp.json()
    assert resp.status == 201, info
    assert info["duration_s"] == pytest.approx(0.5, abs=0.02)
    assert -20 < info["rms_dbfs"] < -10
    bc = await start(client, tone_body(source={"type": "media", "id": info["id"]}))
    assert bc["what"] == f"media {info['id']}"


async def test_media_upload_rejects_garbage_and_leaves_nothing(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/media?filename=fake.mp3", data=b"this is not audio" * 100, headers=AUTH
    )
    err = await resp.json()
    assert resp.status == 422 and err["error"]["code"] == "bad_media"
    assert "fake.mp3" in err["error"]["message"]
    media_dir = client.app[CONFIG].data_dir / "media"
    assert list(media_dir.iterdir()) == []


async def test_media_upload_empty(client: TestClient) -> None:
    resp = await client.post("/api/v1/media?filename=x.wav", data=b"", headers=AUTH)
    assert resp.status == 422


async def test_media_upload_too_large_is_413_and_leaves_nothing(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from loa.config import with_changes as replace

    config = tree_config(tmp_path)
    config = replace(config, web=replace(config.web, max_upload_mb=1))
    client = await aiohttp_client(create_app(config))
    big = io.BytesIO(b"\0" * (1024**2 + 10))
    resp = await client.post("/api/v1/media?filename=big.wav", data=big, headers=AUTH)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"

    async def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
        for _ in range(20):
            yield b"\0" * 65536

    resp = await client.post("/api/v1/media?filename=big.wav", data=chunks(), headers=AUTH)
    assert resp.status == 413
    media_dir = config.data_dir / "media"
    assert not media_dir.exists() or list(media_dir.iterdir()) == []


async def test_patch_endpoint_levels(client: TestClient) -> None:
    resp = await client.patch(
        "/api/v1/endpoints/c0-e0", json={"volume": 35, "muted": True}, headers=AUTH
    )
    data = await resp.json()
    assert resp.status == 200, data
    assert (data["volume"], data["muted"], data["emergency_volume"]) == (35, True, 100)
    for body, message in [
        ({"volume": 101}, 'field "volume": expected int <= 100'),
        ({"volume": True}, 'field "volume" must be int, got bool'),
        ({"muted": "yes"}, 'field "muted" must be bool, got str'),
        ({"colour": 1}, 'unknown field "colour"'),
    ]:
        resp = await client.patch("/api/v1/endpoints/c0-e0", json=body, headers=AUTH)
        assert resp.status == 400
        assert message in (await resp.json())["error"]["message"]
    resp = await client.patch("/api/v1/endpoints/ghost", json={"volume": 1}, headers=AUTH)
    assert resp.status == 404


async def test_metrics_has_a_fanout_histogram(client: TestClient) -> None:
    await start(client, tone_body())
    await asyncio.sleep(0.3)
    text = await (await client.get("/metrics")).text()
    lines = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("loa_fanout_seconds")
    }
    count = lines["loa_fanout_seconds_count"]
    assert count >= 5
    assert lines['loa_fanout_seconds_bucket{le="+Inf"}'] == count
    buckets = [v for k, v in lines.items() if "_bucket" in k]
    assert buckets == sorted(buckets)  # cumulative
    assert 0 < lines["loa_fanout_seconds_sum"] < count * 0.05


async def test_a_killed_upload_leaves_no_entry(client: TestClient) -> None:
    """The client dies half-way through its body: no media entry, no partial file."""
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            "POST /api/v1/media?filename=half.wav HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {ADMIN}\r\n"
            "Content-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
        + b"RIFF"
        + b"\0" * 300_000
    )
    await writer.drain()
    media_dir = client.app[CONFIG].data_dir / "media"
    parts: list[Path] = []
    for _ in range(100):  # wait until the server is writing the part file
        parts = list(media_dir.glob("*.part")) if media_dir.exists() else []
        if parts:
            break
        await asyncio.sleep(0.02)
    assert parts, "the server never started writing the upload"
    writer.transport.abort()  # killed: no FIN, no rest of the body
    await asyncio.sleep(0.5)
    assert list(media_dir.iterdir()) == []
    listed = await (await client.get("/api/v1/media", headers=AUTH)).json()
    assert listed["media"] == []
    del reader


async def test_metrics_export_each_in_step_poles_playout_error_and_skip_bad_ones(
    client: TestClient,
) -> None:
    node = client.app[NODE]
    first, second, third, fourth = node.poles()[:4]
    node.report_status(first, {"playout_error_ms": -2.5, "synced": True})
    node.report_status(second, {"playout_error_ms": None, "synced": False})  # not in step
    node.report_status(third, {"playout_error_ms": "late", "synced": True})  # nonsense
    node.report_status(fourth, {"playout_error_ms": True})  # nonsense too
    text = await (await client.get("/metrics")).text()
    lines = [x for x in text.splitlines() if x.startswith("loa_pole_playout_error_seconds")]
    assert lines == [f'loa_pole_playout_error_seconds{{endpoint="{first.id}"}} -0.0025']
