"""The ``sparsecoded`` command line.

Subcommands: ``design`` (a code and its certificate), ``demo`` (the main job),
``experiment`` (measurements against the baselines).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run a coded matrix-vector job on the local pool with injected stragglers",
        description="Run A @ x as a coded job on local worker processes, with s workers delayed, "
        "and compare the sparse code with the uncoded and dense-MDS jobs on the same workers.",
    )
    p.add_argument("--workers", type=int, default=8, help="number of worker processes n (default 8)")
    p.add_argument("--k", type=int, default=6, help="number of row blocks k (default 6: s = n - k stragglers)")
    p.add_argument("--size", type=int, nargs=2, default=(60000, 40000), metavar=("M", "C"),
                   help="shape of the random sparse matrix (default 60000 40000)")
    p.add_argument("--density", type=float, default=0.005, help="its density (default 0.005)")
    p.add_argument("--delay", type=float, default=1.0, help="seconds each straggler sleeps (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="rounds timed per job (median; default 3)")
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
