"""Fixtures shared by the end-to-end relay tests: a real server on loopback and its API."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.relay.core.session import Transport
from loa.relay.node import Node
from loa.web.app import NODE
from tests.conftest import ADMIN

AUTH = {"Authorization": f"Bearer {ADMIN}"}


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


def on_transport(node: Node, ids: list[str], transport: Transport = Transport.UDP) -> bool:
    return all(
        (s := node.endpoints[i].session) is not None and s.transport is transport for i in ids
    )


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tone(bc_id: str, freq: float, zones: list[str], klass: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": bc_id,
        "source": {"type": "tone", "freq_hz": freq},
        "targets": {"zones": zones},
        "class": klass,
        "chime": False,
        **extra,
    }
