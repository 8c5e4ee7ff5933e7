"""`loa cluster-demo`: a cluster on this machine — its own redis-server and PostgreSQL (free
ports, a temporary directory), N `loa serve` nodes on the demo's province, and simulated
speakers that all dial the first node (the cluster redirects them to their communes'
nodes). Ctrl+C stops everything. Kill a node (its pid is printed) to watch its speakers
move and what it played come back on the leader."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

import psycopg

from loa.cli.demo import COMMUNES, device_token
from loa.localservers import PostgresServer, RedisServer, free_port
from loa.speaker.client import Speaker
from loa.speaker.output import NullOutput

READY_TIMEOUT_S = 60.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster-demo", help="a three-node cluster on this machine",
                       description=__doc__)  # fmt: skip
    p.add_argument("--nodes", type=int, default=3, help="how many loa serve nodes (default 3)")
    p.add_argument(
        "--port",
        type=int,
        default=8081,
        help="the first node's HTTP port; the next ones follow (default 8081)",
    )
    p.add_argument("--per-village", type=int, default=2,
                   help="simulated speakers per village (default 2; 0 for none)")  # fmt: skip
    p.add_argument("--data", type=Path, help="configs and logs go here (default: a temp dir)")
    p.add_argument("--admin-token", help="admin API token (default $LOA_ADMIN_TOKEN or random)")
    p.set_defaults(func=run)


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def inventory_toml(secret: bytes, per_village: int) -> tuple[str, dict[str, str]]:
    """The demo province as TOML ``[[zones]]``/``[[endpoints]]``, and the device tokens."""
    lines = ["[[zones]]", 'id = "thai-nguyen"', 'name = "Tỉnh Thái Nguyên"']
    tokens: dict[str, str] = {}
    for c_id, c_name, lat, lon, villages in COMMUNES:
        lines += ["[[zones]]", f"id = {_q(c_id)}", f"name = {_q(c_name)}",
                  'parent = "thai-nguyen"']  # fmt: skip
        for v, v_name in enumerate(villages):
            v_id = f"{c_id}-{v + 1}"
            lines += ["[[zones]]", f"id = {_q(v_id)}", f"name = {_q(v_name)}",
                      f"parent = {_q(c_id)}"]  # fmt: skip
            for k in range(max(1, per_village)):
                ep_id = f"{v_id}-loa{k + 1}"
                tokens[ep_id] = device_token(secret, ep_id)
                name = f"Cụm loa {v_name} {k + 1}"
                lines += [
                    "[[endpoints]]", f"id = {_q(ep_id)}", f"name = {_q(name)}",
                    f"zone = {_q(v_id)}", f"token = {_q(tokens[ep_id])}",
                    f"lat = {round(lat + 0.02 * v - 0.01 * k, 4)}",
                    f"lon = {round(lon + 0.015 * k - 0.02 * v, 4)}",
                ]  # fmt: skip
    return "\n".join(lines) + "\n", tokens


def node_toml(
    *, name: str, port: int, udp_port: int, data: Path, admin: str, redis_url: str,
    store_url: str, inventory: str,
) -> str:  # fmt: skip
    return "\n".join([
        f"data_dir = {_q(str(data))}", f"admin_token = {_q(admin)}",
        "[web]", 'host = "127.0.0.1"', f"port = {port}",
        "[relay]", 'udp_host = "127.0.0.1"', f"udp_port = {udp_port}",
        "[store]", f"url = {_q(store_url)}",
        "[cluster]", f"redis_url = {_q(redis_url)}", f"node_id = {_q(name)}",
        f'public_url = "http://127.0.0.1:{port}"',
    ]) + "\n" + inventory  # fmt: skip


def _healthy(url: str) -> bool:
    try:
        with urlopen(url + "/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 9:
        raise SystemExit("loa cluster-demo: --nodes must be 1..9")
    root = args.data or Path(tempfile.mkdtemp(prefix="loa-cluster-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    admin = args.admin_token or os.environ.get("LOA_ADMIN_TOKEN") or secrets.token_urlsafe(18)
    redis, postgres = RedisServer(), PostgresServer()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis.start()
        postgres.start()
        with psycopg.connect(postgres.url(), autocommit=True) as admin_conn:
            admin_conn.execute("CREATE DATABASE loa")
        store_url = postgres.url("loa")
        secret = (root / "demo-secret").read_bytes() if (root / "demo-secret").exists() else None
        if secret is None:
            secret = secrets.token_bytes(32)
            (root / "demo-secret").write_bytes(secret)
        inventory, tokens = inventory_toml(secret, args.per_village)
        urls = []
        for n in range(args.nodes):
            name, port = f"node{n + 1}", args.port + n
            config = root / f"{name}.toml"
            config.write_text(node_toml(name=name, port=port, udp_port=free_port(),
                                        data=root / name, admin=admin, redis_url=redis.url,
                                        store_url=store_url, inventory=inventory),
                              encoding="utf-8")  # fmt: skip
            with (root / f"{name}.log").open("ab") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "loa", "serve", "--config", str(config)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                ))  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(_healthy(u) for u in urls):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"loa cluster-demo: a node did not start; see {root}/*.log")
            time.sleep(0.2)
        for n, (url, proc) in enumerate(zip(urls, procs, strict=True)):
            print(f"loa: node{n + 1} on {url} (pid {proc.pid}, log {root}/node{n + 1}.log)")
        print(f"loa: redis {redis.url}, PostgreSQL {store_url}")
        print(f"loa: admin token {admin}; dashboards on any node")
        speakers = [] if args.per_village == 0 else list(tokens.items())
        print(f"loa: cluster demo ready: {len(speakers)} simulated speakers dial {urls[0]}; "
              "Ctrl+C stops it", flush=True)  # fmt: skip
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_speakers(urls[0], speakers))
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.close()
        postgres.close()
    return 0


async def _speakers(url: str, tokens: list[tuple[str, str]]) -> None:
    """Simulated speakers until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    speakers = [Speaker(url, token, NullOutput(), backoff_min_s=0.2, backoff_max_s=2.0)
                for _, token in tokens]  # fmt: skip
    async with asyncio.TaskGroup() as tg:
        for speaker in speakers:
            tg.create_task(speaker.run())
        await stop.wait()
        for speaker in speakers:
            speaker.stop()
