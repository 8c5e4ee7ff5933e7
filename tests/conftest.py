"""Shared fixtures: a small zone tree and endpoint set, and a config built from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loa.config import Config, EndpointSpec, RelayConfig, WebConfig, ZoneSpec

ADMIN = "test-admin-token"


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
