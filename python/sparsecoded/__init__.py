"""Straggler-resilient distributed sparse matrix computation with minimum-weight codes.

A matrix ``A`` is split into ``k`` row blocks; each of ``n`` workers stores one
*coded* block, a linear combination of as few blocks as the weight lower bound
allows, so that the results of any ``k`` workers give ``A @ x``.  See
``SPEC.md``-style background in the README.

The heavy names are imported on first use, so ``import sparsecoded`` stays
cheap and does not pull in Dask.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._core import default_threads, openmp_available

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "design_mv": "codes",
    "design_mm": "codes",
    "MVCode": "codes",
    "MMCode": "codes",
    "certify": "verify",
    "Certificate": "verify",
    "LocalPool": "localpool",
    "DaskPool": "daskpool",
    "ssh_pool": "daskpool",
    "CodedMatVec": "jobs",
    "CodedMatMat": "jobs",
    "NotEnoughWorkers": "errors",
    "InlinePool": "inlinepool",
}
_SUBMODULES = {
    "bounds",
    "codes",
    "verify",
    "kernels",
    "decode",
    "jobs",
    "localpool",
    "inlinepool",
    "demo",
    "daskpool",
    "pool",
    "stragglers",
    "errors",
    "validation",
    "cli",
    "experiments",
}

__all__ = [
    "__version__",
    "default_threads",
    "openmp_available",
    *sorted(_LAZY),
    *sorted(_SUBMODULES),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sparsecoded' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
