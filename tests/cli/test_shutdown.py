"""Ctrl+C (SIGINT) and SIGTERM stop `loa demo` and `loa serve` within 2 s, exit code 0, no
traceback — with speakers connected (the demo's simulated ones, a real `loa speaker` process
for `loa serve`) and a listener on the Ogg stream. Real processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from loa.web.listen import listen_token
from tests.conftest import ADMIN, AUTH
from tests.relay.relayfix import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(90)]

STOP_WITHIN_S = 2.0
SIGNALS = [pytest.param(signal.SIGINT, id="ctrl-c"), pytest.param(signal.SIGTERM, id="sigterm")]


def _interruptible() -> None:
    # A shell starting a job in the background may leave SIGINT ignored; a terminal does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def start(args: list[str], out: Path, err: Path) -> asyncio.subprocess.Process:
    with out.open("wb") as o, err.open("wb") as e:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loa", *args, stdout=o, stderr=e, preexec_fn=_interruptible
        )


def read(path: Path) -> str:
    return path.read_text(errors="replace")


async def wait_for_text(proc: asyncio.subprocess.Process, path: Path, text: str) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and proc.returncode is None:
        if text in read(path):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared:\n{read(path)[-3000:]}")


async def stopped_in(proc: asyncio.subprocess.Process, sig: int) -> tuple[float, int]:
    """Send ``sig``; seconds until the process exits and its exit code (killed after 15 s)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        code = await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return float("inf"), -9
    return time.monotonic() - t0, code


async def online(url: str, count: int) -> None:
    """Until ``count`` speakers are online (the server may still be starting)."""
    async with aiohttp.ClientSession(headers=AUTH) as http:
        for _ in range(300):
            try:
                async with http.get(url + "/api/v1/endpoints") as resp:
                    rows = (await resp.json())["endpoints"]
            except aiohttp.ClientConnectionError:
                rows = []
            if sum(1 for r in rows if r["online"]) >= count:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{count} speakers never came online")


def clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-4000:]
    assert " ERROR " not in stderr, stderr[-4000:]
    assert "Task was destroyed" not in stderr, stderr[-4000:]


@pytest.mark.parametrize("sig", SIGNALS)
async def test_demo_stops_at_once(tmp_path: Path, sig: int) -> None:
    port = free_port(__import__("socket").SOCK_STREAM)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    args = ["demo", "--port", str(port), "--udp-port", str(free_port())]
    args += ["--data", str(tmp_path / "data"), "--admin-token", ADMIN]
    args += ["--speakers-per-village", "1"]  # 9 simulated speakers and the looping programme
    proc = await start(args, out, err)
    try:
        await wait_for_text(proc, out, "└")  # the sign-in box, printed last
        url = f"http://127.0.0.1:{port}"
        await online(url, 9)
        stdout = read(out)
        box = stdout[stdout.index("┌") :]
        assert "user:  demo" in box and "/login" in box
        password = box.split("password:")[1].split()[0]
        async with aiohttp.ClientSession() as http:
            form = await http.get(url + "/login")
            assert password in await form.text()  # a browser on this machine is told too
            async with http.get(
                f"{url}/listen/dai-tu.ogg?token={listen_token(ADMIN, 'dai-tu')}"
            ) as resp:
                assert (await resp.content.readexactly(4)) == b"OggS"
                took, code = await stopped_in(proc, sig)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = read(err)
    assert took <= STOP_WITHIN_S, f"stopped after {took:.2f} s\n{stderr[-3000:]}"
    assert code == 0, stderr[-3000:]
    clean(stderr)
    # The simulated speakers' chatter is DEBUG: none of it at the default level.
    assert "loa.speaker" not in stderr, stderr[-3000:]


@pytest.mark.parametrize("sig", SIGNALS)
async def test_serve_stops_at_once_with_a_speaker_connected(tmp_path: Path, sig: int) -> None:
    port, udp = free_port(__import__("socket").SOCK_STREAM), free_port()
    config = tmp_path / "loa.toml"
    config.write_text(
        f'admin_token = "{ADMIN}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[relay]\nudp_host = "127.0.0.1"\nudp_port = {udp}\n'
        '[[zones]]\nid = "p"\nname = "P"\n'
        '[[endpoints]]\nid = "p-1"\nname = "P 1"\nzone = "p"\ntoken = "token-p-1-0123456789"\n'
    )
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    proc = await start(["serve", "--config", str(config)], out, err)
    url = f"http://127.0.0.1:{port}"
    speaker = await start(
        ["speaker", "--server", url, "--token", "token-p-1-0123456789"],
        tmp_path / "speaker-out.txt",
        tmp_path / "speaker-err.txt",
    )
    try:
        await online(url, 1)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            body = {"source": {"type": "tone", "freq_hz": 440}, "targets": {"zones": ["p"]}}
            async with http.post(url + "/api/v1/broadcasts", json=body) as resp:
                assert resp.status in (200, 201), await resp.text()
            async with http.get(f"{url}/listen/p.ogg?token={listen_token(ADMIN, 'p')}") as resp:
                assert (await resp.content.readexactly(4)) == b"OggS"
                took, code = await stopped_in(proc, sig)
    finally:
        for p in (proc, speaker):
            if p.returncode is None:
                p.kill()
                await p.wait()
    stderr = read(err)
    assert took <= STOP_WITHIN_S, f"stopped after {took:.2f} s\n{stderr[-3000:]}"
    assert code == 0, stderr[-3000:]
    clean(stderr)
    # Stopped gracefully, not just quickly: the broadcast's log entry was written and the
    # database closed (no WAL left behind) before the process exited.
    db = tmp_path / "data" / "loa.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT state, reason FROM broadcast_log").fetchall()
    assert rows == [("stopped", "shutdown")], rows
    assert not (tmp_path / "data" / "loa.db-wal").exists()
