"""`loa serve`: run the relay and its control plane from a config file."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

from loa import config as cfg
from loa.web.app import create_app
from loa.web.server import run_options


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the relay server", description=__doc__)
    p.add_argument("--config", type=Path, help="TOML file: zones, endpoints, admin token, tuning")
    p.add_argument("--host", help="address to listen on for HTTP (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="HTTP port (default 8080)")
    p.add_argument("--udp-port", type=int, help="UDP port for speakers' RTP (default 5004)")
    p.add_argument("--data", type=Path, help="directory for the database and media")
    p.add_argument("--admin-token", help="the admin API token (or LOA_ADMIN_TOKEN)")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace) -> cfg.Config:
    return cfg.load(
        args.config,
        overrides={
            "web.host": args.host,
            "web.port": args.port,
            "relay.udp_port": args.udp_port,
            "data_dir": str(args.data) if args.data else None,
            "admin_token": args.admin_token,
        },
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    print(f"loa: serving on http://{config.web.host}:{config.web.port}", flush=True)
    web.run_app(
        create_app(config),
        host=config.web.host,
        port=config.web.port,
        print=None,
        **run_options(config.web),  # request-head timeout, access log without tokens
    )
    return 0
