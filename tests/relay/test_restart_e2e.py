"""SIGKILL of a real `loa serve` mid-emergency, then a restart on the same data dir: the
emergency comes back (same id, replayed from its start after "issued at HH:MM"), speakers
with the default reconnect policy hear it again within 3 s of the server listening, and the
log shows the interruption and its length."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency, rms_dbfs
from tests.conftest import ADMIN, AUTH
from tests.relay.fleet import Fleet, Heard, wait_for
from tests.relay.relayfix import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(120)]

POLES = [("p-1", "token-p-1-0123456789"), ("p-2", "token-p-2-0123456789")]
BACK_WITHIN_S = 3.0


async def serve(config: Path, tmp_path: Path, n: int) -> asyncio.subprocess.Process:
    out, err = tmp_path / f"out{n}.txt", tmp_path / f"err{n}.txt"
    with out.open("wb") as o, err.open("wb") as e:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loa", "serve", "--config", str(config), stdout=o, stderr=e
        )


async def listening(port: int, proc: asyncio.subprocess.Process) -> float:
    """Poll until the server accepts TCP connections; the monotonic time it first did."""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and proc.returncode is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        at = time.monotonic()
        writer.close()
        return at
    raise AssertionError("the server never listened")


async def test_sigkill_mid_emergency_then_restart(tmp_path: Path) -> None:
    port, udp = free_port(socket.SOCK_STREAM), free_port()
    config = tmp_path / "loa.toml"
    config.write_text(
        f'admin_token = "{ADMIN}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[relay]\nudp_host = "127.0.0.1"\nudp_port = {udp}\n'
        '[[zones]]\nid = "p"\nname = "P"\n'
        + "".join(
            f'[[endpoints]]\nid = "{e}"\nname = "{e}"\nzone = "p"\ntoken = "{t}"\n'
            for e, t in POLES
        )
    )
    url = f"http://127.0.0.1:{port}"
    procs = [await serve(config, tmp_path, 1)]
    # the speakers' reconnect policy as shipped (loa speaker's defaults)
    fleet = Fleet(url, POLES, backoff_min_s=1.0, backoff_max_s=60.0)
    try:
        await listening(port, procs[0])
        await fleet.start()
        await wait_for(
            lambda: all(s.state.value == "udp" for s in fleet.speakers.values()), 20, "online"
        )
        async with aiohttp.ClientSession(headers=AUTH) as http:
            body = {
                "source": {"type": "tone", "freq_hz": 880, "duration_s": 300},
                "targets": {"zones": ["p"]},
                "class": "emergency",
                "chime": False,
                "name": "Bão số 9",
            }
            async with http.post(url + "/api/v1/broadcasts", json=body) as resp:
                assert resp.status == 201, await resp.text()
                bc_id = (await resp.json())["id"]
            t0 = time.monotonic()
            await wait_for(
                lambda: all(h.frequency(t0, bc_id) > 0 for h in fleet.heard.values()), 10, "tone"
            )
            async with http.get(f"{url}/api/v1/broadcasts/{bc_id}") as resp:
                before = await resp.json()
            assert before["state"] == "playing" and before["interrupted_at"] is None

            await asyncio.sleep(6.5)  # on air longer than the 5 s between signs of life
            procs[0].send_signal(signal.SIGKILL)
            await procs[0].wait()
            killed = time.time()
            await asyncio.sleep(2.0)  # down for a while: the speakers are retrying
            procs.append(await serve(config, tmp_path, 2))
            up = await listening(port, procs[1])

            def back() -> bool:
                return all(h.since(up, bc_id) for h in fleet.heard.values())

            await wait_for(back, 10, "the emergency heard again", step=0.01)
            firsts = [
                next(t for t, bc, _, _ in h.frames if t >= up and bc == bc_id)
                for h in fleet.heard.values()
            ]
            assert max(firsts) - up < BACK_WITHIN_S, [f - up for f in firsts]

            def first_loud(h: Heard) -> list[np.ndarray]:
                return [
                    p for t, bc, _, p in h.frames if t >= up and bc == bc_id and rms_dbfs(p) > -50
                ]

            await wait_for(
                lambda: all(len(first_loud(h)) >= 25 for h in fleet.heard.values()), 10, "speech"
            )
            for h in fleet.heard.values():  # "issued at …" (espeak), not the tone
                first = dominant_frequency(np.concatenate(first_loud(h)[:25]))
                assert not 780 < first < 980, first

            async with http.get(f"{url}/api/v1/broadcasts/{bc_id}") as resp:
                assert resp.status == 200, await resp.text()
                after = await resp.json()
            assert after["state"] == "playing"
            assert after["class"] == "emergency" and after["what"] == "Bão số 9"
            assert after["requested_at"] == before["requested_at"]
            assert after["started_at"] == before["started_at"]
            # the interruption: from the last sign of life (≤ 5 s before the kill) to the restart
            assert killed - 5.5 <= after["interrupted_at"] <= killed
            assert after["interrupted_at"] - before["started_at"] > 4.5  # marked alive since
            assert after["resumed_at"] > killed
            assert after["targets"] == before["targets"]

            # it replays from its start, saying first when it was issued (speech, not the tone)
            # and then the tone again
            t1 = time.monotonic()
            await wait_for(
                lambda: all(780 < h.frequency(t1, bc_id) < 980 for h in fleet.heard.values()),
                30,
                "the tone after the spoken issue time",
            )
            async with http.get(f"{url}/api/v1/log", params={"class": "emergency"}) as resp:
                rows = {r["id"]: r for r in (await resp.json())["entries"]}
            assert rows[bc_id]["interrupted_at"] == after["interrupted_at"]
            assert rows[bc_id]["resumed_at"] == after["resumed_at"]

            async with http.delete(f"{url}/api/v1/broadcasts/{bc_id}") as resp:
                assert resp.status == 200, await resp.text()
            await asyncio.sleep(0.5)
            async with http.get(f"{url}/api/v1/broadcasts/{bc_id}") as resp:
                ended = await resp.json()
            assert ended["state"] == "stopped" and ended["interrupted_at"] is not None
    finally:
        await fleet.close()
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    assert "Traceback" not in (tmp_path / "err2.txt").read_text(errors="replace")
