"""Straggler-resilient distributed sparse matrix computation with minimum-weight codes.

A matrix ``A`` is split into ``k`` row blocks; each of ``n`` workers stores one
*coded* block, a linear combination of as few blocks as the weight lower bound
allows, so that the results of any ``k`` workers give ``A @ x``.  The
mathematics is in docs/theory.md.

Layers, every import pointing down: :mod:`sparsecoded.design` (coding theory),
:mod:`sparsecoded.kernels` (the C++ core), :mod:`sparsecoded.pools` (where
coded blocks live and rounds run), :mod:`sparsecoded.decode` and
:mod:`sparsecoded.jobs` (the coded computation), ``experiments`` and the CLI.

The public names are imported on first use, so ``import sparsecoded`` stays
cheap and does not pull in Dask.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from ._core import default_threads, openmp_available
    from .design import Certificate, MMCode, MVCode, certify, design_mm, design_mv
    from .errors import NotEnoughWorkers, RoundTimeout
    from .jobs import CodedMatMat, CodedMatVec, JobReport
    from .pools.dask import DaskPool, ssh_pool
    from .pools.inline import InlinePool
    from .pools.local import LocalPool

__version__ = "0.1.0"

# silent unless the application configures logging (worker deaths, decode fallbacks)
logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it
_LAZY = {
    "design_mv": "design",
    "design_mm": "design",
    "MVCode": "design",
    "MMCode": "design",
    "certify": "design",
    "Certificate": "design",
    "LocalPool": "pools.local",
    "DaskPool": "pools.dask",
    "ssh_pool": "pools.dask",
    "InlinePool": "pools.inline",
    "CodedMatVec": "jobs",
    "CodedMatMat": "jobs",
    "JobReport": "jobs",
    "NotEnoughWorkers": "errors",
    "RoundTimeout": "errors",
    "default_threads": "_core",
    "openmp_available": "_core",
}
_NEEDS_DASK = {"DaskPool", "ssh_pool"}


def _public() -> list[str]:
    import importlib.util

    names = set(_LAZY)
    try:
        have_dask = importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):
        have_dask = False
    if not have_dask:  # the star import works without the [dask] extra
        names -= _NEEDS_DASK
    return ["__version__", *sorted(names)]


__all__ = _public()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        try:
            module = importlib.import_module(f".{_LAZY[name]}", __name__)
        except ImportError as exc:
            if name in _NEEDS_DASK and exc.name in {"distributed", "dask"}:
                raise ImportError(
                    f"sparsecoded.{name} needs Dask distributed, which is not installed: "
                    'pip install "sparsecoded[dask]"',
                    name=exc.name,
                ) from exc
            raise
        value = getattr(module, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    try:  # subpackages and modules: sparsecoded.kernels, sparsecoded.design, ...
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'sparsecoded' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
