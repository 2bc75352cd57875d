"""Where coded blocks live and rounds run.

:mod:`.base` is the interface every backend implements; :mod:`.inline` runs in
this process on a virtual clock; :mod:`.local` uses worker processes on this
machine; :mod:`.dask` any dask.distributed cluster (and SSH hosts).  Pools
never import the design layer, the jobs or the experiments.
"""

from __future__ import annotations

from .base import Pool, RoundResult, SlotKey

__all__ = ["Pool", "RoundResult", "SlotKey"]
