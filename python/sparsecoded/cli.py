"""The ``sparsecoded`` command line.

Subcommands: ``design`` (a code and its certificate), ``demo`` (the main job),
``experiment`` (measurements against the baselines).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _int_at_least(lo: int):
    """An argparse type: an integer >= lo, with a message naming both."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {value}")
        return value

    return parse


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run a coded matrix-vector job on the local pool with injected stragglers",
        description="Run A @ x as a coded job on local worker processes, with s workers delayed, "
        "and compare the sparse code with the uncoded and dense-MDS jobs on the same workers.",
    )
    p.add_argument(
        "--workers", type=int, default=8, help="number of worker processes n (default 8)"
    )
    p.add_argument(
        "--k", type=int, default=6, help="number of row blocks k (default 6: s = n - k stragglers)"
    )
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(60000, 40000),
        metavar=("M", "C"),
        help="shape of the random sparse matrix (default 60000 40000)",
    )
    p.add_argument("--density", type=float, default=0.005, help="its density (default 0.005)")
    p.add_argument(
        "--delay", type=float, default=1.0, help="seconds each straggler sleeps (default 1)"
    )
    p.add_argument(
        "--rounds",
        type=_int_at_least(1),
        default=3,
        help="rounds timed per job (median; default 3)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


# kept here so that building the parser does not import the experiments' dependencies
EXPERIMENT_NAMES = (
    "worker-time",
    "encode-time",
    "completion",
    "stability",
    "iterative",
    "heterogeneous",
)


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="measure the sparse code against uncoded and dense codes (JSON + PNG)",
        description="Run one experiment comparing coding schemes on the same workers, matrix "
        "and injected stragglers. Figures are 'simulated' (products measured in this process "
        "one worker at a time, rounds replayed from those measurements) unless --live or "
        "--dask runs them on real worker processes.",
    )
    p.add_argument("name", choices=EXPERIMENT_NAMES, help="which experiment")
    g = p.add_argument_group("input")
    g.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("M", "C"),
        help="random matrix shape (default 32000 20000; stability 2000 400)",
    )
    g.add_argument(
        "--density",
        default="0.01",
        help="random matrix density; a comma list sweeps it (default 0.01)",
    )
    g.add_argument(
        "--matrix",
        default=None,
        metavar="FILE",
        help="a Matrix Market file (.mtx or .mtx.gz) instead of a random matrix",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="seed of the matrix, codes, x and stragglers"
    )
    g = p.add_argument_group("code")
    g.add_argument("--workers", default=None, help="workers n; a comma list sweeps it")
    g.add_argument("--k", default=None, help="row blocks k; a comma list sweeps it")
    g.add_argument(
        "--schemes",
        default=None,
        help="comma list: sparse, uncoded, replication, mds, polynomial, orthopoly "
        "(matrix-matrix also rkrp)",
    )
    g.add_argument(
        "--ka",
        type=int,
        default=None,
        help="worker-time: matrix-matrix A @ B with k_a row blocks of A",
    )
    g.add_argument(
        "--kb", type=int, default=None, help="worker-time: ... and k_b column blocks of B"
    )
    g.add_argument(
        "--stragglers",
        type=int,
        default=None,
        help="stability: s (k = n - s, default 4); iterative: workers delayed; "
        "heterogeneous: devices to tolerate",
    )
    g.add_argument(
        "--capacities",
        default=None,
        help="heterogeneous: comma list, one per device (default 1,2,3,1,...)",
    )
    g = p.add_argument_group("measurement")
    g.add_argument(
        "--reps",
        type=_int_at_least(1),
        default=5,
        help="timed repetitions per figure (median; default 5)",
    )
    g.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="worker-time: the worker's CPU time (default; immune to time slicing on "
        "a busy machine) or elapsed time; both are recorded",
    )
    g.add_argument(
        "--rounds",
        type=_int_at_least(1),
        default=3,
        help="rounds per straggler setting (default 3)",
    )
    g.add_argument(
        "--warmup",
        type=_int_at_least(0),
        default=1,
        help="untimed rounds after placing the blocks (default 1)",
    )
    g.add_argument(
        "--iters", type=_int_at_least(1), default=30, help="iterative: iterations (default 30)"
    )
    g.add_argument(
        "--trials",
        type=_int_at_least(1),
        default=5,
        help="stability: random straggler sets decoded per scheme (default 5)",
    )
    g.add_argument(
        "--max-subsets",
        type=_int_at_least(1),
        default=20000,
        help="stability: certify enumerates responder sets up to this many",
    )
    g.add_argument(
        "--models",
        default="fixed,shiftexp,crash",
        help="straggler models: fixed (delay), shiftexp (shifted exponential), crash",
    )
    g.add_argument(
        "--delay",
        type=float,
        default=0.5,
        help="straggler delay / exponential shift, seconds (default 0.5)",
    )
    g.add_argument(
        "--timeout", type=float, default=60.0, help="pool round timeout, seconds (default 60)"
    )
    g.add_argument(
        "--threads",
        type=_int_at_least(1),
        default=1,
        help="encode-time: threads of the encoding kernel (default 1, like the "
        "dense baseline's BLAS with --blas-threads 1)",
    )
    g.add_argument(
        "--no-dense", action="store_true", help="encode-time: skip the dense-array MDS baseline"
    )
    g.add_argument(
        "--dense-limit-mb",
        type=float,
        default=4096,
        help="encode-time: skip the dense-array baseline above this memory (MiB)",
    )
    g = p.add_argument_group("backend and output")
    g.add_argument("--live", action="store_true", help="run rounds on LocalPool processes")
    g.add_argument("--dask", action="store_true", help="run rounds on a Dask LocalCluster")
    g.add_argument(
        "--json", default=None, metavar="F", help="write every measurement to this JSON file"
    )
    g.add_argument(
        "--plot",
        default=None,
        metavar="P",
        help="write a PNG plot here (needs matplotlib: the [plot] extra)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .edge_experiment import add_arguments as _add_edge  # issue 11; moves at the merge

    _add_edge(p)
    g.add_argument(
        "--blas-threads",
        type=_int_at_least(1),
        default=1,
        help="BLAS threads of this process (default 1: on a loaded machine a "
        "threaded BLAS turns a microsecond decode into tens of milliseconds)",
    )
    p.set_defaults(func=_run_experiment)


def _run_experiment(args: argparse.Namespace) -> int:
    if "numpy" not in sys.modules:  # BLAS reads these once, when numpy loads it
        import os

        # not OMP_NUM_THREADS: it would also bind the OpenMP kernels
        for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(args.blas_threads))
    if getattr(args, "emulate", None):  # live on an emulated edge cluster (issue 11)
        from .edge_experiment import run_from_args

        return run_from_args(args)
    from .experiments import run_experiment, summary_lines

    record = run_experiment(args)
    for line in summary_lines(record):
        print(line)
    return 0


def _add_design(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "design",
        help="design a code, certify it and compare its weight with dense codes",
        description="MV code with --k, MM code with --ka and --kb.",
    )
    p.add_argument("--workers", type=int, default=20, help="number of workers n (default 20)")
    p.add_argument("--k", type=int, default=16, help="row blocks of A for MV (default 16)")
    p.add_argument("--ka", type=int, default=None, help="MM: row blocks of A")
    p.add_argument("--kb", type=int, default=None, help="MM: column blocks of B")
    p.add_argument(
        "--scheme",
        default="sparse",
        help="sparse (default), uncoded, replication, mds, polynomial, orthopoly, rkrp (MM)",
    )
    p.add_argument(
        "--density",
        type=float,
        default=0.01,
        help="density p of the input blocks for the nnz estimate (default 0.01)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--trials", type=_int_at_least(1), default=5, help="coefficient draws (default 5)"
    )
    p.add_argument(
        "--layout",
        choices=("cyclic", "random"),
        default="random",
        help="MV sparse support: random (default, better conditioned) or cyclic (SPEC section 2)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_design)


def _run_design(args: argparse.Namespace) -> int:
    if (args.ka is None) != (args.kb is None):
        raise ValueError("--ka and --kb go together (an MM code), got only one of them")
    if not 0.0 < args.density <= 1.0:
        raise ValueError(f"--density must be in (0, 1], got {args.density}")
    report = _design_report(args)
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    else:
        print(_format_design(report))
    return 0


def _design_report(args: argparse.Namespace) -> dict:
    from . import bounds
    from .codes import design_mm, design_mv
    from .verify import certify

    p = args.density
    if args.ka is None:
        code = design_mv(
            args.workers,
            args.k,
            args.scheme,
            seed=args.seed,
            trials=args.trials,
            layout=args.layout,
        )
        w = code.weight
        report = {
            "kind": "mv",
            "workers": code.n_workers,
            "k": code.k,
            "scheme": code.scheme,
            "stragglers": code.stragglers,
            "weight": w,
            "lower_bound": bounds.mv_weight(code.n_workers, code.k),
            "dense_weight": code.k,
            "nnz_ratio_vs_dense": _mean_density(code.encoding, p) / bounds.coded_density(p, code.k),
        }
    else:
        code = design_mm(
            args.workers, args.ka, args.kb, args.scheme, seed=args.seed, trials=args.trials
        )
        report = {
            "kind": "mm",
            "workers": code.n_workers,
            "k_a": code.k_a,
            "k_b": code.k_b,
            "scheme": code.scheme,
            "stragglers": code.stragglers,
            "weight": [code.weight_a, code.weight_b],
            "lower_bound": list(bounds.mm_weights(code.n_workers, code.k_a, code.k_b)),
            "fallback": code.fallback,
            "dense_weight": [code.k_a, code.k_b],
            "nnz_ratio_vs_dense": [
                _mean_density(code.encoding_a, p) / bounds.coded_density(p, code.k_a),
                _mean_density(code.encoding_b, p) / bounds.coded_density(p, code.k_b),
            ],
        }
    cert = certify(code, seed=args.seed)
    report["density"] = p
    report["certificate"] = {
        "straggler_optimal": cert.straggler_optimal,
        "method": cert.method,
        "proven": cert.proven,
        "subsets_checked": cert.subsets_checked,
        "witness": None if cert.witness is None else list(cert.witness),
    }
    report["worst_condition"] = (
        cert.worst_condition if cert.worst_condition < float("inf") else None
    )
    return report


def _mean_density(encoding, p: float) -> float:
    import numpy as np

    from .bounds import coded_density

    weights = np.diff(encoding.indptr)
    return float(np.mean([coded_density(p, int(w)) for w in weights]))


def _format_design(r: dict) -> str:
    def pair(v):
        return " x ".join(str(x) for x in v) if isinstance(v, list) else str(v)

    shape = f"k = {r['k']}" if r["kind"] == "mv" else f"k_a x k_b = {r['k_a']} x {r['k_b']}"
    cert = r["certificate"]
    verdict = "straggler-optimal" if cert["straggler_optimal"] else "NOT straggler-optimal"
    if not cert.get("proven", True):
        verdict = (
            "straggler-optimal on the sets checked (evidence, not proof)"
            if cert["straggler_optimal"]
            else "not proven either way"
        )
    ratio = r["nnz_ratio_vs_dense"]
    ratio_s = f"{ratio:.3f}" if r["kind"] == "mv" else f"A {ratio[0]:.3f}, B {ratio[1]:.3f}"
    cond = (
        "n/a (a responder set is singular)"
        if r["worst_condition"] is None
        else (f"{r['worst_condition']:.3g}")
    )
    lines = [
        f"{r['kind'].upper()} code '{r['scheme']}': n = {r['workers']}, {shape}, "
        f"tolerates {r['stragglers']} stragglers",
        f"  weight              {pair(r['weight'])}"
        + ("  (fallback: minimal pair not verified)" if r.get("fallback") else ""),
        f"  lower bound         {pair(r['lower_bound'])}",
        f"  dense weight        {pair(r['dense_weight'])}",
        f"  nnz vs dense codes  {ratio_s}  (blocks of density {r['density']:g})",
        f"  certificate         {verdict} ({cert['method']}, "
        f"{cert['subsets_checked']} responder sets factorised)",
    ]
    if cert["witness"] is not None:
        lines.append(f"  witness             workers {cert['witness']} cannot decode")
    lines.append(f"  worst condition     {cond}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsecoded",
        description="Straggler-resilient distributed sparse matrix computation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_design(sub)
    _add_demo(sub)
    _add_experiment(sub)
    from .emulate import add_cli as _add_emulate  # `emulate up/down/list` (issue 11)

    _add_emulate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: what was started has been stopped on the way out
        print(f"sparsecoded {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # bad parameters or paths: one clear line
        print(f"sparsecoded {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
