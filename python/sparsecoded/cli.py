"""The ``sparsecoded`` command line.

Subcommands: ``design`` (a code and its certificate), ``demo`` (the main job),
``experiment NAME`` (measurements against the baselines, one subcommand per
experiment, built from the experiment's own ``add_arguments``), ``emulate
up|down|list`` (an emulated edge cluster, :mod:`sparsecoded.emulate`).

Exit status: 0 on success, 1 when the work fails (a file that cannot be read,
a round that cannot be decoded, ...: one line on standard error), 2 for usage
errors (bad flags or parameter values), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from . import __version__


def _int_at_least(lo: int):
    """An argparse type: an integer >= lo, with a message naming both."""
    from .experiments.inputs import at_least

    return at_least(lo)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from . import demo

    p = sub.add_parser(
        "demo",
        help="run a coded matrix-vector job on the local pool with injected stragglers",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is drawn only when standard error is a terminal)",
    )
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(**_params(args))


def _params(args: argparse.Namespace) -> dict:
    """The parsed flags as keyword parameters (without the CLI's own entries)."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "name", "func", "argv")}


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    from .experiments import EXPERIMENTS, experiment
    from .experiments.record import add_output_arguments

    p = sub.add_parser(
        "experiment",
        help="measure the sparse code against uncoded and dense codes (JSON + PNG)",
        description="Run one experiment comparing coding schemes on the same workers, matrix "
        "and injected stragglers. Figures are 'simulated' (products measured in this process "
        "one worker at a time, rounds replayed from those measurements) unless --live or "
        "--dask runs them on real worker processes. 'sparsecoded experiment NAME --help' says "
        "what NAME measures and which flags it reads.",
    )
    names = p.add_subparsers(dest="name", required=True, metavar="NAME")
    for name in EXPERIMENTS:
        module = experiment(name)
        doc = (module.__doc__ or "").strip()
        e = names.add_parser(
            name,
            help=doc.splitlines()[0] if doc else None,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(e)
        add_output_arguments(e)
        e.set_defaults(func=_run_experiment)


def _run_experiment(args: argparse.Namespace) -> int:
    from .experiments import experiment, run_experiment

    params = _params(args)
    out = {key: params.pop(key) for key in ("json", "plot", "blas_threads")}
    record = run_experiment(args.name, params, command="sparsecoded " + " ".join(args.argv), **out)
    # with --json - the record is standard output; the summary then goes to standard error
    stream = sys.stderr if out["json"] == "-" else sys.stdout
    for line in experiment(args.name).summary(record):
        print(line, file=stream)
    return 0


def _limit_blas(argv: Sequence[str]) -> None:
    """Set the BLAS thread count of an experiment before numpy loads BLAS (it reads it once)."""
    if "numpy" in sys.modules or "experiment" not in argv:
        return
    n = "1"
    for i, a in enumerate(argv):
        if a == "--blas-threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--blas-threads="):
            n = a.split("=", 1)[1]
    if n.isdigit() and int(n) >= 1:
        # not OMP_NUM_THREADS: it would also bind the OpenMP kernels
        for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, n)


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
        help="sparse (default), uncoded, replication, mds, polynomial, orthopoly, rkrp (MM); "
        "coarse, fine (our design on the coarse / a finer partition), the seed authors' "
        "lcm-optimal (MV), unified (MM), beta-level",
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
        help="MV sparse support: random (default, better conditioned) or cyclic (docs/theory.md)",
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
    from .design import MMCode, MVCode, bounds, certify, design_mm, design_mv

    p = args.density
    code: MVCode | MMCode
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
    load = _load_report(code, p)
    report.update(load)
    if load["partition"] == "fine":
        # the weight of one stored block against the coarse bound says nothing here
        report["nnz_ratio_vs_dense"] = load["device_load"]["nnz_ratio_vs_dense"]
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


def _load_report(code, p: float) -> dict:
    """Per-device storage: ``device_load()`` against its lower bound (docs/theory.md 11-12).

    A code is *fine* when a device stores several coded sub-blocks (rows of
    an MV code, slots of an MM code); then the per-block ``weight`` and the
    coarse ``lower_bound`` no longer compare, and the load does.  Loads are
    fractions of nnz(A) (MV) or of nnz(A) + nnz(B) with equal nonzeros (MM),
    in the limit p -> 0 (what the bounds count) and at the density p.
    """
    import numpy as np

    from .design import MMCode, bounds

    def stats(v) -> dict:
        return {"max": float(np.max(v)), "mean": float(np.mean(v))}

    if isinstance(code, MMCode):
        ea, oa = code.slots("a")
        eb, ob = code.slots("b")
        per_a = np.bincount(oa, minlength=code.n_workers)
        per_b = np.bincount(ob, minlength=code.n_workers)
        fine = code.owner is not None
        x0, y0 = code.device_load(0.0)
        xp, yp = code.device_load(p)
        dense = (
            bounds.coded_density(p, code.k_a) / (p * code.k_a),
            bounds.coded_density(p, code.k_b) / (p * code.k_b),
        )
        largest, mean = bounds.mm_load_bounds(code.n_workers, code.k_a, code.k_b, code.stragglers)
        load = {
            **stats(x0 + y0),
            "a_max": float(x0.max()),
            "b_max": float(y0.max()),
            "at_density": {**stats(xp + yp), "a_max": float(xp.max()), "b_max": float(yp.max())},
            "nnz_ratio_vs_dense": [float(xp.mean() / dense[0]), float(yp.mean() / dense[1])],
        }
        return {
            "partition": "fine" if fine else "coarse",
            "blocks": [code.blocks_a, code.blocks_b],
            "slots_per_device": [int(per_a.max()), int(per_b.max())],
            "products_per_device": int(np.bincount(code.row_owner()).max()),
            "lower_bound_applies": not fine,
            "device_load": load,
            "load_bound": {"largest": largest, "mean": mean, "bound": "mm_load_bounds"},
        }
    owner = np.asarray(code.owner)
    rows = np.bincount(owner, minlength=code.n_workers)
    fine = bool(code.blocks != code.k or rows.max() > 1)
    l0, lp = code.device_load(0.0), code.device_load(p)
    dense = bounds.coded_density(p, code.k) / (p * code.k)
    out = {
        "partition": "fine" if fine else "coarse",
        "blocks": code.blocks,
        "slots_per_device": int(rows.max()),
        "lower_bound_applies": not fine,
        "device_weight_max": int(code.device_weights().max()),
        "device_load": {
            **stats(l0),
            "at_density": stats(lp),
            "nnz_ratio_vs_dense": float(lp.mean() / dense),
        },
        "load_bound": {
            "largest": bounds.fine_mv_load(code.n_workers, code.k, code.stragglers),
            "bound": "fine_mv_load",
        },
    }
    if code.capacities is None or code.blocks % code.k == 0:
        with contextlib.suppress(ValueError):
            out["weight_bound"] = bounds.fine_mv_weight(
                code.n_workers, code.k, code.blocks, code.stragglers
            )
    return out


def _mean_density(encoding, p: float) -> float:
    import numpy as np

    from .design.bounds import coded_density

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
    ]
    if r.get("partition") == "fine":
        lines += _format_fine(r)
    else:
        lines += [
            f"  weight              {pair(r['weight'])}"
            + ("  (fallback: minimal pair not verified)" if r.get("fallback") else ""),
            f"  lower bound         {pair(r['lower_bound'])}",
        ]
    lines += [
        f"  dense weight        {pair(r['dense_weight'])}",
        f"  nnz vs dense codes  {ratio_s}  (blocks of density {r['density']:g})",
        f"  certificate         {verdict} ({cert['method']}, "
        f"{cert['subsets_checked']} responder sets factorised)",
    ]
    if cert["witness"] is not None:
        lines.append(f"  witness             workers {cert['witness']} cannot decode")
    lines.append(f"  worst condition     {cond}")
    return "\n".join(lines)


def _format_fine(r: dict) -> list[str]:
    """The lines of a code with several coded sub-blocks per device: its load, not its weight."""
    load, bound = r["device_load"], r["load_bound"]
    if r["kind"] == "mm":
        part = (
            f"A in {r['blocks'][0]}, B in {r['blocks'][1]} sub-blocks; per device "
            f"{r['slots_per_device'][0]} A-slot(s) x {r['slots_per_device'][1]} B-slot(s), "
            f"{r['products_per_device']} products"
        )
        weight = " x ".join(str(v) for v in r["weight"])
        unit = "of nnz(A) + nnz(B), equal nonzeros"
        split = f" (A {load['a_max']:.4f}, B {load['b_max']:.4f})"
        bound_s = (
            f"largest {bound['largest']:.4f}, mean {bound['mean']:.4f}  (mm_load_bounds, "
            "linear model p -> 0; at a density p a slot holds a little less)"
        )
    else:
        part = f"A in {r['blocks']} sub-blocks; up to {r['slots_per_device']} rows per device"
        weight = f"{r['weight']} (per row); per device {r['device_weight_max']}" + (
            f", bound {r['weight_bound']}" if "weight_bound" in r else ""
        )
        unit = "of nnz(A)"
        split = ""
        bound_s = f"{bound['largest']:.4f}  (fine_mv_load: (s + 1) / n, linear model p -> 0)"
    at = load["at_density"]
    return [
        f"  partition           {part}",
        f"  slot weight         {weight}  (the coarse bound {_pair(r['lower_bound'])} "
        "applies to the coarse partition only)",
        f"  load per device     max {load['max']:.4f}{split}, mean {load['mean']:.4f} {unit} "
        f"(p -> 0); max {at['max']:.4f} at density {r['density']:g}",
        f"  load lower bound    {bound_s}",
    ]


def _pair(v) -> str:
    return " x ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsecoded",
        description="Straggler-resilient distributed sparse matrix computation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_design(sub)
    _add_demo(sub)
    _add_experiment(sub)
    _add_emulate(sub)
    return parser


def _add_emulate(sub: argparse._SubParsersAction) -> None:
    from .emulate import add_cli

    add_cli(sub)


# failures of the work itself (files, memory, pools, missing extras): exit 1
_RUNTIME_ERRORS = (OSError, MemoryError, ImportError, RuntimeError, EOFError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "sparsecoded"
    try:
        _limit_blas(argv)
        args = build_parser().parse_args(argv)  # usage errors exit 2 here
        args.argv = argv
        command = f"sparsecoded {args.command}"
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (| head): say nothing, and keep Python's exit flush quiet too
        _stdout_to_devnull()
        return 1
    except ValueError as exc:  # bad parameters: a usage error, one clear line
        _error(command, exc)
        return 2
    except _RUNTIME_ERRORS as exc:
        _error(command, exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug, still one line; the traceback on request
        if os.environ.get("SPARSECODED_TRACEBACK"):
            raise
        _error(
            command,
            f"internal error, {type(exc).__name__}: {exc} "
            "(set SPARSECODED_TRACEBACK=1 for the traceback)",
        )
        return 1


def _error(command: str, exc: object) -> None:
    text = " ".join(str(exc).split()) or type(exc).__name__
    try:
        print(f"{command}: error: {text}", file=sys.stderr)
    except (OSError, ValueError):  # standard error itself is gone
        pass


def _stdout_to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pytest's captured stdout has no fd
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
