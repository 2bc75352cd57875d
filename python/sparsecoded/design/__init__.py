"""Coding theory: bounds, code types, constructions and certificates.

numpy and scipy only: this layer never imports the kernels, the pools, the
jobs or the experiments.  The mathematics is in docs/theory.md.
"""

from __future__ import annotations

from .bounds import (
    coded_density,
    fine_mv_load,
    fine_mv_weight,
    hetero_stragglers,
    hetero_weight,
    mm_conditions,
    mm_counting_ok,
    mm_feasible_pairs,
    mm_load_bounds,
    mm_weights,
    mv_weight,
)
from .certify import Certificate, certify
from .codes import MM_EXTRA_SCHEMES, MM_SCHEMES, MV_EXTRA_SCHEMES, MV_SCHEMES, MMCode, MVCode
from .mm import design_mm
from .mv import design_mv

__all__ = [
    "MM_EXTRA_SCHEMES",
    "MM_SCHEMES",
    "MV_EXTRA_SCHEMES",
    "MV_SCHEMES",
    "Certificate",
    "MMCode",
    "MVCode",
    "certify",
    "coded_density",
    "design_mm",
    "design_mv",
    "fine_mv_load",
    "fine_mv_weight",
    "hetero_stragglers",
    "hetero_weight",
    "mm_conditions",
    "mm_counting_ok",
    "mm_feasible_pairs",
    "mm_load_bounds",
    "mm_weights",
    "mv_weight",
]
