"""Fixtures shared by the end-to-end relay tests: a real server on loopback and its API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any

from loa import localservers
from loa.relay.core.session import Transport
from loa.relay.node import Node
from tests.conftest import AUTH

__all__ = ["AUTH", "free_port", "on_transport", "tone"]


def on_transport(node: Node, ids: list[str], transport: Transport = Transport.UDP) -> bool:
    return all(
        (s := node.endpoints[i].session) is not None and s.transport is transport for i in ids
    )


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A UDP port (or ``kind``) for a server started later: ``loa.localservers.free_port``."""
    return localservers.free_port(kind=kind)


def tone(freq: float, zones: list[str], klass: str, **extra: Any) -> dict[str, Any]:
    """A tone broadcast's body; the server names it (the answer's ``id``)."""
    return {
        "source": {"type": "tone", "freq_hz": freq},
        "targets": {"zones": zones},
        "class": klass,
        "chime": False,
        **extra,
    }


async def tone_into(
    relay: Any, receiver: asyncio.subprocess.Process, ready: Awaitable[Any], timeout: float
) -> bytes:
    """Once ``ready`` (the external receiver is listening), a live 1 kHz tone to commune c0;
    waits for ``receiver`` to finish (killed if it outlives ``timeout`` or the test) and
    fails with its stderr unless it exited 0; its stderr."""
    try:
        await ready
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        _, err = await asyncio.wait_for(receiver.communicate(), timeout)
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
    assert receiver.returncode == 0, err.decode()
    return err
