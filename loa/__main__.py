"""`loa …` and `python -m loa …`: argparse → Config → run. Each subcommand lives in the module
that owns it and registers itself through a ``register(subparsers)`` function.

A pole's board installs loa without the server's dependencies (the ``server`` extra): the
commands that need them cannot be imported there, and asking for one says what to install
instead of failing on an import."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from loa import __version__
from loa.errors import LoaError

# Each module registers one subcommand with its own flags and --help.
COMMANDS = (
    "loa.cli.serve",
    "loa.cli.broadcast",
    "loa.cli.speaker",
    "loa.cli.demo",
    "loa.cli.cluster_demo",
    "loa.cli.bench",
    "loa.cli.user",
)


def build_parser(unavailable: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command this install can run; ``unavailable`` collects the
    others (command → the missing module)."""
    parser = argparse.ArgumentParser(
        prog="loa",
        description="loa — broadcast relay for commune IP radio (đài truyền thanh cấp xã)",
    )
    parser.add_argument("--version", action="version", version=f"loa {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "loa":
                raise  # our own module is missing: a broken install, not an extra
            if unavailable is not None:
                unavailable[name.rpartition(".")[2]] = exc.name
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    unavailable: dict[str, str] = {}
    parser = build_parser(unavailable)
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in unavailable:
        print(
            f"loa: `loa {command}` needs the server's dependencies (no module "
            f"{unavailable[command]!r}): pip install 'loa[server]'",
            file=sys.stderr,
        )
        return 2
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except LoaError as exc:
        print(f"loa: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
