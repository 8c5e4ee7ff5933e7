"""Fixtures for the relay's end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from loa.config import Config
from loa.web.app import create_app
from tests.relay.relayfix import Relay


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
