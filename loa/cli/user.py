"""`loa user add|passwd|token|list`: manage accounts in the node's database directly.

Works on ``<data>/loa.db`` while the server runs (SQLite WAL lets both write). Zones come from
the database: start ``loa serve`` once so it seeds them from the config file."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import TextIO

from loa.errors import BadRequest
from loa.store import DB_NAME, ROLES, Store
from loa.web.auth import add_user, set_password

ACTOR = "cli"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "user", help="add users, set passwords, issue API tokens", description=__doc__
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_text)
        a.add_argument(
            "--data", type=Path, default=Path("data"), help="data directory (default ./data)"
        )
        return a

    add = action("add", "create a user")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--zone", help="the zone whose subtree an operator or viewer is scoped to")
    add.add_argument("--emergency", action="store_true", help="may broadcast emergencies")
    _password_options(add)
    add.set_defaults(func=cmd_add)

    passwd = action("passwd", "set a user's password (ends their sessions)")
    passwd.add_argument("username")
    _password_options(passwd)
    passwd.set_defaults(func=cmd_passwd)

    token = action("token", "issue an API token (printed once)")
    token.add_argument("username")
    token.add_argument("--label", default="", help="what the token is for")
    token.set_defaults(func=cmd_token)

    lst = action("list", "list users")
    lst.set_defaults(func=cmd_list)


def _password_options(p: argparse.ArgumentParser) -> None:
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin's first line (the default without a terminal)",
    )
    how.add_argument(
        "--password-file", type=Path, metavar="PATH", help="read it from this file's first line"
    )


def read_password(args: argparse.Namespace, stdin: TextIO | None = None) -> str:
    """From ``--password-file``'s first line; from stdin's first line with
    ``--password-stdin`` or when stdin is not a terminal (a script, a pipe, systemd); else
    typed twice at a prompt that does not echo."""
    if args.password_file is not None:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise BadRequest(f"cannot read {args.password_file}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{args.password_file} is not UTF-8 text") from exc
        password = text.splitlines()[0] if text else ""
        if not password:
            raise BadRequest(f"no password in {args.password_file}")
        return password
    source = stdin or sys.stdin
    if args.password_stdin or not source.isatty():
        password = source.readline().rstrip("\r\n")
        if not password:
            raise BadRequest("no password on stdin")
        return password
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
        raise BadRequest("the two passwords differ")
    return first


def _store(args: argparse.Namespace) -> Store:
    return Store(Path(args.data) / DB_NAME)


def cmd_add(args: argparse.Namespace) -> int:
    password = read_password(args)

    async def go() -> None:
        async with _store(args) as store:
            await add_user(
                store,
                args.username,
                password,
                args.role,
                zone=args.zone,
                emergency_right=args.emergency,
                actor=ACTOR,
            )

    asyncio.run(go())
    print(f"loa: user {args.username} added ({args.role})")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    password = read_password(args)

    async def go() -> None:
        async with _store(args) as store:
            await set_password(store, args.username, password, actor=ACTOR)

    asyncio.run(go())
    print(f"loa: password of {args.username} changed; their sessions ended")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    async def go() -> str:
        async with _store(args) as store:
            _, token = await store.users.add_token(args.username, args.label, actor=ACTOR)
            return token

    token = asyncio.run(go())
    print(token)
    print("loa: shown once; store it now", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    async def go() -> None:
        async with _store(args) as store:
            for acc in await store.users.list():
                flags = [
                    f
                    for f, on in (("emergency", acc.emergency_right), ("disabled", acc.disabled))
                    if on
                ]
                print(f"{acc.username}\t{acc.role}\t{acc.zone or '-'}\t{','.join(flags) or '-'}")

    asyncio.run(go())
    return 0
