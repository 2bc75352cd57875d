"""``sparsecoded experiment NAME``: the package measured against its baselines.

One module per experiment, each comparing coding schemes on the same
workers, the same matrix and the same injected stragglers: ``worker-time``,
``encode-time``, ``completion``, ``stability``, ``iterative``,
``heterogeneous``, ``train``.  Each module has ``add_arguments(parser)`` (the flags it
reads), ``run(**params) -> dict`` (plain keyword parameters: a library call),
``plot(record, path)`` and ``summary(record) -> list[str]``; its docstring says
what it measures.  :func:`run_experiment` adds the machine, versions,
parameters and seeds, and writes the JSON record and the plot.

Modes.  ``"simulated"``: :class:`~sparsecoded.pools.inline.InlinePool`, the real
products computed one worker at a time, the round replayed on a clock built
from those measurements (injected delays are added on that clock, not slept).
``"live"``: real worker processes (:class:`~sparsecoded.LocalPool`, or a Dask
``LocalCluster`` with ``--dask``), real sleeps.  Every figure in the JSON file
says which mode produced it.

Nothing but the CLI imports this package.
"""

from __future__ import annotations

import importlib
import inspect
import time
from types import ModuleType
from typing import Any

__all__ = ["EXPERIMENTS", "experiment", "run_experiment"]

#: experiment name -> module
EXPERIMENTS = {
    "worker-time": "worker_time",
    "encode-time": "encode_time",
    "completion": "completion",
    "stability": "stability",
    "iterative": "iterative",
    "heterogeneous": "heterogeneous",
    "train": "train",
}


def experiment(name: str) -> ModuleType:
    """The module of the experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}, expected one of {sorted(EXPERIMENTS)}")
    return importlib.import_module(f".{EXPERIMENTS[name]}", __name__)


def run_experiment(
    name: str,
    params: dict[str, Any],
    *,
    json: str | None = None,
    plot: str | None = None,
    blas_threads: int = 1,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the experiment ``name`` with ``params``; write ``json`` / ``plot``; return the record.

    ``json="-"`` writes the record to standard output.  Output paths, the
    plotting back end and a ``matrix`` file are checked before the work.

    Examples
    --------
    >>> record = run_experiment(
    ...     "worker-time",
    ...     {"size": (200, 100), "workers": 4, "k": 3, "schemes": "sparse,uncoded", "reps": 1,
    ...      "no_progress": True})
    >>> record["schemes"]["sparse"]["weight"], record["schemes"]["sparse"]["mode"]
    (2, 'simulated')
    """
    from . import inputs, record

    module = experiment(name)
    if plot:
        record.pyplot()  # fail before the work, not after
    record.check_output("--json", json)
    record.check_output("--plot", plot)
    if params.get("matrix"):
        inputs.check_matrix_file(params["matrix"])
    if params.get("live") and params.get("dask"):
        raise ValueError("--live and --dask are exclusive")
    kwargs = dict(params)
    if "blas_threads" in inspect.signature(module.run).parameters:
        kwargs["blas_threads"] = blas_threads
    started = time.time()
    machine = record.machine_info()
    with record.blas_limit(blas_threads) as blas:
        body = module.run(**kwargs)
    machine["load_average_at_end"] = record.load_average()
    seed = params.get("seed", 0)
    rec = {
        "experiment": name,
        "command": command or f"sparsecoded experiment {name}",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_seconds": time.time() - started,
        "machine": machine,
        "versions": record.versions(),
        "parameters": {
            "name": name,
            **params,
            "json": json,
            "plot": plot,
            "blas_threads": blas_threads,
        },
        "seeds": {"matrix": seed, "code": seed, "operand_and_stragglers": seed},
        "modes": record.MODE_TEXT,
        "blas_threads": blas,
        **body,
    }
    rec = record.jsonable(rec)
    if json:
        record.write_json(rec, json)
    if plot:
        module.plot(rec, plot)
    return rec
