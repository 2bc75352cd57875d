"""Pools over a dask.distributed cluster: :class:`DaskPool` and :func:`ssh_pool`.

Importing this package imports ``distributed``; ``import sparsecoded`` does not.
"""

from __future__ import annotations

from .pool import DaskPool
from .ssh import ssh_pool

__all__ = ["DaskPool", "ssh_pool"]
