"""Real `loa serve` processes in cluster mode (one Redis, one PostgreSQL, from the suite's
fixtures), their config files, and what the tests ask them."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.netns import Bridge, Member
from loa.localservers import free_port as free_tcp_port
from tests.conftest import ADMIN, AUTH
from tests.relay.relayfix import free_port

COMMUNES = ("c0", "c1", "c2")


def tokens(communes: int, per_commune: int) -> list[tuple[str, str]]:
    return [(f"c{c}-e{e}", f"tok-c{c}-e{e}") for c in range(communes) for e in range(per_commune)]


def cluster_toml(
    *, node: str, port: int, udp_port: int, data: Path, redis_url: str, store_url: str,
    communes: int, per_commune: int, capacity: int = 1000, rtp: dict[str, str] | None = None,
    admit_per_s: int | None = None, host: str = "127.0.0.1",
) -> str:  # fmt: skip
    lines = [
        f'data_dir = "{data}"',
        f'admin_token = "{ADMIN}"',
        "[web]",
        f'host = "{host}"',
        f"port = {port}",
        "[relay]",
        f'udp_host = "{host}"',
        f"udp_port = {udp_port}",
        "keepalive_s = 1.0",
        "session_timeout_s = 3.0",
        "chime = false",
        "[store]",
        f'url = "{store_url}"',
        "[cluster]",
        f'redis_url = "{redis_url}"',
        f'node_id = "{node}"',
        f'public_url = "http://{host}:{port}"',
        f"capacity = {capacity}",
        *([f"admit_per_s = {admit_per_s}"] if admit_per_s is not None else []),
        "[[zones]]",
        'id = "p"',
        'name = "Tỉnh P"',
    ]
    for c in range(communes):
        lines += ["[[zones]]", f'id = "c{c}"', f'name = "Xã {c}"', 'parent = "p"']
    for ep, token in tokens(communes, per_commune):
        lines += ["[[endpoints]]", f'id = "{ep}"', f'name = "Loa {ep}"',
                  f'zone = "{ep.split("-")[0]}"', f'token = "{token}"']  # fmt: skip
    for commune, address in (rtp or {}).items():  # a plain RTP receiver in that commune
        lines += ["[[endpoints]]", f'id = "{commune}-rtp"', f'name = "RTP {commune}"',
                  f'zone = "{commune}"', 'kind = "rtp"', f'address = "{address}"']  # fmt: skip
    return "\n".join(lines) + "\n"


@dataclass
class ServeNode:
    """One `loa serve` process."""

    name: str
    port: int
    udp_port: int
    config: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    started: list[float] = field(default_factory=list)
    host: str = "127.0.0.1"
    netns: Member | None = None  # runs in this network namespace (bench/netns.py)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        prefix = self.netns.exec_prefix() if self.netns is not None else ()
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *prefix, sys.executable, "-m", "loa", "serve", "--config", str(self.config),
                stdout=out, stderr=out,
            )  # fmt: skip
        self.started.append(time.monotonic())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def health(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(self.url + "/healthz") as resp:
                return dict(await resp.json()) if resp.status == 200 else None
        except (aiohttp.ClientError, OSError):
            return None

    async def health_inside(self) -> dict[str, Any] | None:
        """/healthz asked from inside the node's network namespace: it answers there while
        its link is cut."""
        assert self.netns is not None
        ask = (f"import urllib.request; print(urllib.request.urlopen("
               f"{self.url + '/healthz'!r}, timeout=2).read().decode())")  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *self.netns.exec_prefix(), sys.executable, "-c", ask,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return dict(json.loads(out)) if proc.returncode == 0 else None

    async def api(
        self, http: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> Any:
        async with http.request(method, self.url + "/api/v1" + path, json=body,
                                headers=AUTH) as resp:  # fmt: skip
            data = await resp.json()
            assert resp.status < 300, (resp.status, data)
            return data

    async def metric(self, http: aiohttp.ClientSession, name: str) -> float:
        async with http.get(self.url + "/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError(f"{name} not in {self.name}'s metrics")


def make_nodes(
    tmp_path: Path, names: tuple[str, ...], *, redis_url: str, store_url: str,
    communes: int, per_commune: int, rtp: dict[str, str] | None = None,
    admit_per_s: int | None = None, bridge: Bridge | None = None,
) -> list[ServeNode]:  # fmt: skip
    """Config files for ``names``; with ``bridge``, each node in a network namespace of its
    own on that bridge (a port free here is free there: the namespace is new)."""
    nodes = []
    for name in names:
        port, udp_port = free_tcp_port(), free_port()  # HTTP on TCP, RTP on UDP
        member = bridge.add(name) if bridge is not None else None
        host = member.address if member is not None else "127.0.0.1"
        config = tmp_path / f"{name}.toml"
        config.write_text(
            cluster_toml(node=name, port=port, udp_port=udp_port, data=tmp_path / name,
                         redis_url=redis_url, store_url=store_url, communes=communes,
                         per_commune=per_commune, rtp=rtp, admit_per_s=admit_per_s, host=host),
            encoding="utf-8",
        )  # fmt: skip
        nodes.append(ServeNode(name, port, udp_port, config, tmp_path / f"{name}.log",
                               host=host, netns=member))  # fmt: skip
    return nodes


async def converged(
    http: aiohttp.ClientSession, nodes: list[ServeNode], timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Until every node sees all of them alive and follows one assignment placing every
    commune, and one leader runs its jobs; their /healthz cluster views by node."""
    deadline = time.monotonic() + timeout
    views: dict[str, dict[str, Any]] = {}
    names = sorted(n.name for n in nodes)
    while time.monotonic() < deadline:
        healths = [await n.health(http) for n in nodes]
        views = {n.name: h["cluster"] for n, h in zip(nodes, healths, strict=True) if h}
        if (
            len(views) == len(nodes)
            and all(v["nodes"] == names for v in views.values())
            and len({v["assignment"] for v in views.values()}) == 1
            and next(iter(views.values()))["assignment"] > 0
            and sum(1 for v in views.values() if v["leader"]) == 1
            and all(v["leader_jobs"] for v in views.values() if v["leader"])  # started
        ):
            return views
        for n in nodes:
            assert n.proc is not None and n.proc.returncode is None, n.text()[-3000:]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the cluster did not converge: {views}")
