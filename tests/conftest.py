"""Shared fixtures: a small zone tree and endpoint set, and a config built from them."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.config import Config, EndpointSpec, RelayConfig, WebConfig, ZoneSpec
from loa.relay.node import Node
from loa.web.app import NODE, create_app

# the suite's own redis-server and PostgreSQL (tests/support/servers.py)
pytest_plugins = ("tests.support.servers",)

ADMIN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def tree_config(
    tmp_path: Path, *, communes: int = 2, per_commune: int = 2, rtp: tuple[str, ...] = ()
) -> Config:
    """A province 'p' with communes 'c0'..; each commune has endpoints 'c0-e0'.. (token = id)."""
    zones = [ZoneSpec("p", "Tỉnh P")]
    endpoints = []
    for c in range(communes):
        zones.append(ZoneSpec(f"c{c}", f"Xã {c}", parent="p"))
        for e in range(per_commune):
            ep_id = f"c{c}-e{e}"
            endpoints.append(EndpointSpec(ep_id, f"Loa {ep_id}", f"c{c}", token=f"tok-{ep_id}"))
    for i, address in enumerate(rtp):
        endpoints.append(EndpointSpec(f"rtp{i}", f"RTP {i}", "c0", kind="rtp", address=address))
    return Config(
        web=WebConfig(host="127.0.0.1", port=0),
        relay=RelayConfig(udp_host="127.0.0.1", udp_port=0, keepalive_s=1.0, session_timeout_s=3.0),
        data_dir=tmp_path / "data",
        admin_token=ADMIN,
        zones=tuple(zones),
        endpoints=tuple(endpoints),
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return tree_config(tmp_path)


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; the README's test command installs it")
    return path


class Relay:
    """A real server on 127.0.0.1 plus an HTTP client for its API."""

    def __init__(self, server: TestServer, http: ClientSession) -> None:
        self.server = server
        self.http = http

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def node(self) -> Node:
        return self.server.app[NODE]

    async def api(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        async with self.http.request(
            method, self.url + "/api/v1" + path, json=body, headers=AUTH
        ) as resp:
            data = await resp.json()
            assert resp.status == status, data
            return data


@pytest.fixture
async def relay_factory() -> AsyncIterator[Any]:
    made: list[Relay] = []

    async def make(config: Config) -> Relay:
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        relay = Relay(server, ClientSession())
        made.append(relay)
        return relay

    yield make
    for relay in made:
        await relay.http.close()
        await relay.server.close()
