"""What every experiment's JSON record holds beside its figures, and where it goes.

The machine (CPU, cores, memory, load), the versions (Python, numpy, scipy,
the package and its git commit), a JSON encoder that turns numpy scalars and
non-finite floats into plain JSON, the output paths (``--json -`` is stdout)
and the plotting back end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MODE_SIMULATED = "simulated"
MODE_LIVE = "live"
MODE_TEXT = {
    MODE_SIMULATED: "measured in this process one worker at a time (single-threaded kernel); "
    "round times replayed on a clock built from those measurements plus the injected delays",
    MODE_LIVE: "real worker processes computing concurrently, injected delays really slept",
}

STDOUT = "-"


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the record itself: where it goes, the progress bar, BLAS threads."""
    from .inputs import at_least

    g = parser.add_argument_group("output")
    g.add_argument(
        "--json",
        default=None,
        metavar="F",
        help="write every measurement to this JSON file ('-': standard output)",
    )
    g.add_argument(
        "--plot",
        default=None,
        metavar="P",
        help="write a PNG plot here (needs matplotlib: the [plot] extra)",
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is drawn only when standard error is a terminal)",
    )
    g.add_argument(
        "--blas-threads",
        type=at_least(1),
        default=1,
        help="BLAS threads of this process (default 1: on a loaded machine a "
        "threaded BLAS turns a microsecond decode into tens of milliseconds)",
    )


def machine_info() -> dict[str, Any]:
    """Platform, CPU model, core counts and load: what the figures depend on."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": mem,
        "load_average_at_start": load_average(),
    }


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def versions() -> dict[str, Any]:
    """Versions of everything the figures depend on, and the git commit when there is one."""
    import scipy

    import sparsecoded
    from sparsecoded import kernels

    doc = (kernels.__doc__ or "").strip()
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sparsecoded": sparsecoded.__version__,
        "kernels": doc.splitlines()[0] if doc else "",
        "openmp": bool(sparsecoded.openmp_available()),
    }
    for name in ("tqdm", "matplotlib", "distributed"):
        with contextlib.suppress(Exception):
            out[name] = __import__(name).__version__
    with contextlib.suppress(Exception):
        out["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    return out


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers, NaN as null and infinities as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def check_output(flag: str, path: str | None) -> None:
    """Fail now, not after the run, on an output path that cannot be written; make its folder."""
    if not path or path == STDOUT:
        return
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a directory, expected a file name")
    out.parent.mkdir(parents=True, exist_ok=True)


def write_json(record: dict[str, Any], path: str) -> None:
    """Write ``record`` to ``path``; ``"-"`` writes it to standard output."""
    text = json.dumps(record, indent=1)
    if path == STDOUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        Path(path).write_text(text)


@contextlib.contextmanager
def blas_limit(n_threads: int) -> Iterator[dict[str, Any]]:
    """Limit BLAS threads for the run, and say how (env at numpy's start, or threadpoolctl)."""
    info: dict[str, Any] = {
        "requested": n_threads,
        "env": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
    }
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        info["threadpoolctl"] = False
        yield info
        return
    info["threadpoolctl"] = True
    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield info


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg back end; a clear error when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "--plot needs matplotlib, which is not installed: pip install 'sparsecoded[plot]'"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def headline(record: dict[str, Any]) -> str:
    """The first summary line of every experiment."""
    return f"{record['experiment']}: mode {record.get('mode')}, {record['elapsed_seconds']:.1f} s"


def progress(total: int, desc: str, no_progress: bool = False) -> Any:
    """A tqdm bar on standard error, drawn only when it is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="step",
        disable=no_progress or not _is_terminal(sys.stderr),
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
