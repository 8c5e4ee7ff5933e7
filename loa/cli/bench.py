"""`loa bench`: the load generator and report (the `bench` package), from the `loa` command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    try:
        from bench.__main__ import __doc__ as doc
        from bench.__main__ import add_arguments
    except ImportError:  # an install without the bench package (it ships with the source tree)
        return
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
