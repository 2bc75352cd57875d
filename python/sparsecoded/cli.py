"""The ``sparsecoded`` command line.

Subcommands: ``design`` (a code and its certificate), ``demo`` (the main job),
``experiment`` (measurements against the baselines).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a coded matrix-vector job and check it against scipy")
    p.add_argument("--workers", type=int, default=20, help="number of workers n (default 20)")
    p.add_argument("--k", type=int, default=16, help="number of row blocks k (default 16)")
    p.add_argument("--size", type=int, nargs=2, default=(40000, 20000), metavar=("M", "C"))
    p.add_argument("--density", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsecoded",
        description="Straggler-resilient distributed sparse matrix computation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # infeasible parameters: one clear line, no traceback
        print(f"sparsecoded {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
