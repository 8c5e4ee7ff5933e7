"""The relay under test: a generated province config, a `loa serve` subprocess (or a running
relay to attach to), its HTTP API, and its CPU and memory read from /proc.

Attach contract (``--relay URL``): the bench needs the relay's own TOML config (``--config``)
to know the speakers' device tokens and the zone tree, the admin token (``--token``, else the
config's ``admin_token``) to start and stop broadcasts, and, for CPU and RSS, the relay's pid
on this machine (``--relay-pid``; without it those numbers are null). The relay must run with
``relay.stamp_frames = true``, or latency cannot be measured (it is then reported as null)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

COMMUNE_SIZE = 20
PROVINCE = "bench"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class SpeakerSpec:
    """One simulated speaker: the endpoint it logs in as and the commune it belongs to."""

    endpoint: str
    zone: str
    token: str


@dataclass(frozen=True)
class Layout:
    """What the bench drives: the speakers, the communes they sit in, the zones to target."""

    speakers: tuple[SpeakerSpec, ...]
    communes: tuple[str, ...]  # leaf zones holding the speakers, in config order
    roots: tuple[str, ...]  # zones with no parent: "the whole province"
    admin_token: str

    def emergency_communes(self, fraction: float) -> tuple[str, ...]:
        """Every k-th commune, so the emergency's speakers are spread over the workers."""
        count = max(1, round(len(self.communes) * fraction))
        step = len(self.communes) / count
        return tuple(self.communes[int(i * step)] for i in range(count))


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def generate_config(
    speakers: int,
    *,
    web_port: int,
    data_dir: Path,
    sendmmsg: bool = True,
    frame_ms: int = 20,
    steady_groups: bool = True,
) -> tuple[str, Layout]:
    """A province of communes of ``COMMUNE_SIZE`` managed endpoints each, random tokens,
    stamped frames, an ephemeral UDP port, packets of ``frame_ms`` (``opus.frame_ms``).
    Returns the TOML text and its layout."""
    admin = secrets.token_urlsafe(18)
    lines = [
        f"admin_token = {_q(admin)}",
        f"data_dir = {_q(str(data_dir))}",
        "",
        "[web]",
        'host = "127.0.0.1"',
        f"port = {web_port}",
        "",
        "[relay]",
        'udp_host = "127.0.0.1"',
        "udp_port = 0",
        "stamp_frames = true",
        f"sendmmsg = {'true' if sendmmsg else 'false'}",
        f"steady_groups = {'true' if steady_groups else 'false'}",
        "",
        "[opus]",
        f"frame_ms = {frame_ms}",
        "",
        "[[zones]]",
        f"id = {_q(PROVINCE)}",
        'name = "Tỉnh Bench"',
    ]
    communes = [
        f"{PROVINCE}-x{i:03d}" for i in range((speakers + COMMUNE_SIZE - 1) // COMMUNE_SIZE)
    ]
    for i, zone in enumerate(communes):
        lines += [
            "",
            "[[zones]]",
            f"id = {_q(zone)}",
            f'name = "Xã {i}"',
            f"parent = {_q(PROVINCE)}",
        ]
    specs = []
    for n in range(speakers):
        zone = communes[n // COMMUNE_SIZE]
        spec = SpeakerSpec(f"{zone}-{n % COMMUNE_SIZE:02d}", zone, secrets.token_urlsafe(18))
        specs.append(spec)
        lines += [
            "",
            "[[endpoints]]",
            f"id = {_q(spec.endpoint)}",
            f'name = "Loa {spec.endpoint}"',
            f"zone = {_q(zone)}",
            f"token = {_q(spec.token)}",
        ]
    layout = Layout(tuple(specs), tuple(communes), (PROVINCE,), admin)
    return "\n".join(lines) + "\n", layout


def layout_from_config(path: Path, speakers: int, admin_token: str | None) -> Layout:
    """Attach mode: the first ``speakers`` managed endpoints of the relay's own config."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    zones = data.get("zones", [])
    managed = [e for e in data.get("endpoints", []) if e.get("kind", "managed") == "managed"]
    if len(managed) < speakers:
        raise SystemExit(f"bench: {path} has {len(managed)} managed endpoints, {speakers} asked")
    token = admin_token or data.get("admin_token")
    if not token:
        raise SystemExit("bench: attach mode needs --token or admin_token in the config")
    specs = tuple(SpeakerSpec(e["id"], e["zone"], e["token"]) for e in managed[:speakers])
    communes = tuple(dict.fromkeys(s.zone for s in specs))
    roots = tuple(z["id"] for z in zones if not z.get("parent"))
    return Layout(specs, communes, roots, token)


# -- /proc --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_s: float  # utime + stime
    rss_mb: float  # VmRSS
    wait_s: float  # main thread's time runnable but not running (schedstat): CPU starvation
    user_s: float = 0.0  # utime
    sys_s: float = 0.0  # stime


def sample(pid: int) -> ProcSample | None:
    """CPU seconds and resident memory of ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        schedstat = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    user_s, sys_s = int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK  # stat 14, 15
    cpu_s = user_s + sys_s
    rss_kb = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
            break
    wait_s = int(schedstat[1]) / 1e9
    return ProcSample(time.monotonic(), cpu_s, rss_kb / 1024, wait_s, user_s, sys_s)


# -- the relay process -----------------------------------------------------------------------
class RelayProcess:
    """A `loa serve --config FILE` subprocess, owned by a ``with`` block."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RelayProcess:
        cmd = [sys.executable, "-m", "bench.relay", "serve", "--config", str(self.config_path)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # aiohttp's run_app shuts down cleanly on SIGINT
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"relay exited with {self.proc.returncode}:\n{tail}")


# The relay closes a keep-alive connection idle for ``web.header_timeout_s`` (10 s by default;
# loa/web/server.py), aiohttp's client keeps one for 15 s: a request sent on a connection
# the server is closing that instant fails with ServerDisconnectedError (the bench's
# emergency, 10 s after its previous call, did so in 1 run of 4). Idle connections are let
# go well before the server would.
CLIENT_KEEPALIVE_S = 2.0


def client_session() -> aiohttp.ClientSession:
    """An HTTP client for the relay's API that never reuses a connection the relay may be
    closing (see ``CLIENT_KEEPALIVE_S``)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEPALIVE_S)
    )


class RelayApi:
    """The few API calls the bench makes, with the admin token."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    async def wait_healthy(
        self, timeout_s: float, relay: RelayProcess | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            if relay is not None:
                relay.check_alive()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.http.get(f"{self.url}/healthz") as resp:
                    if resp.status == 200:
                        health: dict[str, Any] = await resp.json()
                        return health
            if time.monotonic() > deadline:
                raise TimeoutError(f"relay at {self.url} not healthy within {timeout_s:g} s")
            await asyncio.sleep(0.2)

    async def start_broadcast(
        self, cls: str, zones: tuple[str, ...], freq_hz: float
    ) -> dict[str, Any]:
        body = {
            "source": {"type": "tone", "freq_hz": freq_hz},
            "targets": {"zones": list(zones)},
            "class": cls,
            "chime": False,
            "name": f"bench {cls} {freq_hz:g} Hz",
        }
        async with self.http.post(
            f"{self.url}/api/v1/broadcasts", json=body, headers=self.headers
        ) as resp:
            data: dict[str, Any] = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"POST /api/v1/broadcasts: {resp.status} {data}")
            return data

    async def stop_broadcast(self, bc_id: str) -> None:
        async with self.http.delete(
            f"{self.url}/api/v1/broadcasts/{bc_id}", headers=self.headers
        ) as resp:
            if resp.status not in (200, 404):
                raise RuntimeError(f"DELETE broadcast {bc_id}: {resp.status} {await resp.text()}")

    async def packets_sent(self) -> int | None:
        """loa_packets_sent_total from /metrics (no auth), or None if it is not there."""
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with self.http.get(f"{self.url}/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith("loa_packets_sent_total "):
                        return int(float(line.split()[1]))
        return None


def _serve(argv: list[str]) -> int:
    """`loa serve` without the rest of the CLI: only the serve command's own module."""
    from loa.cli import serve

    parser = argparse.ArgumentParser(prog="loa")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
