"""`loa cluster-demo` (`./scripts/demo --cluster`): its own Redis and PostgreSQL, N real
`loa serve` nodes and simulated speakers that all dial the first node; the nodes agree on
the communes, the speakers end up on their communes' nodes, and Ctrl+C stops it all."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from loa.localservers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def test_the_cluster_demo_runs_and_stops(tmp_path: Path) -> None:
    port = free_port()
    while port + 1 == 5432 or port + 1 == 6379:
        port = free_port()
    out = tmp_path / "out.txt"
    with out.open("wb") as o:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loa", "cluster-demo", "--nodes", "2", "--port", str(port),
            "--per-village", "1", "--data", str(tmp_path / "demo"), "--admin-token", "t" * 20,
            stdout=o, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "cluster demo ready" not in out.read_text(errors="replace"):
            assert proc.returncode is None and time.monotonic() < deadline, out.read_text()
            await asyncio.sleep(0.2)
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                healths = []
                for url in urls:
                    async with http.get(url + "/healthz") as resp:
                        healths.append(await resp.json())
                online = sum(h["endpoints_online"] for h in healths)
                communes = sorted(c for h in healths for c in h["cluster"]["communes"])
                if online == 9 and communes == ["dai-tu", "phu-luong", "vo-nhai"]:
                    break  # 3 communes × 3 villages × 1 speaker, each on its commune's node
                assert time.monotonic() < deadline, healths
                await asyncio.sleep(0.3)
        assert all(h["endpoints_online"] > 0 for h in healths)  # the speakers were spread
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.read_text(errors="replace")
    assert "Traceback" not in text, text
