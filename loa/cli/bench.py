"""`loa bench`: the load generator and report (the source tree's `bench` package), from the
`loa` command. bench/ is not installed with the package; from a checkout (or an editable
install of one) this finds it beside `loa/`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import loa

SOURCE_TREE = Path(loa.__file__).resolve().parent.parent


def _bench_importable() -> bool:
    """Put the checkout on the path if bench/ is there; False when there is no bench at all."""
    if (SOURCE_TREE / "bench" / "__main__.py").is_file():
        if str(SOURCE_TREE) not in sys.path:
            sys.path.append(str(SOURCE_TREE))
        return True
    return False


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    if not _bench_importable():  # an installed wheel: bench ships with the source tree only
        return
    from bench.__main__ import __doc__ as doc
    from bench.__main__ import add_arguments

    p = sub.add_parser(
        "bench",
        help="load-test a relay with simulated speakers; JSON report",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run, bench_parser=p)


def run(args: argparse.Namespace) -> int:
    from bench.__main__ import check_args
    from bench.__main__ import run as bench_run

    return bench_run(check_args(args.bench_parser, args))
