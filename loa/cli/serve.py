"""`loa serve`: run the relay and its control plane from a config file."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

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
    serve_until_stopped(create_app(config), config)


def serve_until_stopped(app: web.Application, config: cfg.Config) -> NoReturn:
    """Run the app until SIGINT (Ctrl+C) or SIGTERM, then exit 0 at once.

    aiohttp turns both signals into a graceful stop: listening ends, ``on_shutdown`` closes
    the long-lived connections, the cleanup contexts close the node and the store. Once that
    has returned everything is closed and flushed; the interpreter's own teardown (a final
    garbage collection over every object and module, 0.3–1 s on a busy two-core board) is
    skipped, so the process is gone within the 2 s an operator waits for."""
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            app,
            host=config.web.host,
            port=config.web.port,
            print=None,
            **run_options(config.web),  # request-head timeout, access log without tokens
        )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
