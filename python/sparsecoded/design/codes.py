"""The code types: :class:`MVCode` and :class:`MMCode`.

A matrix-vector code (:class:`MVCode`) is an ``n_rows x k`` encoding matrix ``E``:
row ``r`` holds the coefficients with which its owner mixes the ``k`` row
blocks of ``A``.  A matrix-matrix code (:class:`MMCode`) has one such matrix
for ``A`` (``n x k_a``) and one for ``B`` (``n x k_b``).  The constructions
are in :mod:`sparsecoded.design.mv` and :mod:`sparsecoded.design.mm`; see
docs/theory.md sections 1, 3 and 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import bounds

__all__ = ["MMCode", "MVCode", "MV_SCHEMES", "MM_SCHEMES", "as_encoding"]

MV_SCHEMES = ("sparse", "uncoded", "replication", "mds", "polynomial", "orthopoly")
MM_SCHEMES = (*MV_SCHEMES, "rkrp")


def as_encoding(matrix: object, name: str) -> sp.csr_array:
    if sp.issparse(matrix):
        out = sp.csr_array(matrix, dtype=np.float64)
    else:
        arr = np.asarray(matrix, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {arr.ndim} dimensions")
        out = sp.csr_array(arr)
    out.eliminate_zeros()
    out.sort_indices()
    return out


# schemes whose coefficients are generic for their support (MVCode.generic)
GENERIC_MV = frozenset({"sparse", "mds", "polynomial", "orthopoly"})


def row_weights(e: sp.csr_array) -> np.ndarray:
    return np.diff(e.indptr)


@dataclass(frozen=True, eq=False)
class MVCode:
    """A matrix-vector code: which blocks each stored row mixes, and how.

    Build one with :func:`design_mv`, or from your own matrix with
    :meth:`from_matrix` so that :func:`sparsecoded.certify` can judge it.

    Attributes
    ----------
    n_workers : int
        Physical devices.
    k : int
        Number of row blocks of A.
    stragglers : int
        Physical devices the code claims to tolerate in the worst case.
    weight : int
        Largest number of blocks mixed into one row.
    encoding : scipy.sparse.csr_array
        ``(n_rows, k)`` float64; ``n_rows == n_workers`` unless capacities.
    owner : numpy.ndarray
        Device of each row (``np.arange(n)`` for homogeneous codes).
    capacities : tuple of int or None
        Rows per device for heterogeneous codes.
    scheme : str
        How it was built (``"custom"`` for :meth:`from_matrix`).
    generic : bool
        True when the coefficients decode every responder set that the
        support pattern allows: drawn i.i.d. from a continuous distribution
        (``"sparse"``, ``"mds"``; singular with probability 0) or rows of a
        (Chebyshev-)Vandermonde matrix on distinct nodes (``"polynomial"``,
        ``"orthopoly"``).  Only then does :func:`sparsecoded.certify` accept
        its polynomial flow test on the support as a proof; a user's own
        matrix is ``False`` unless declared otherwise.
    """

    n_workers: int
    k: int
    stragglers: int
    weight: int
    encoding: sp.csr_array = field(repr=False)
    owner: np.ndarray = field(repr=False)
    capacities: tuple[int, ...] | None = None
    scheme: str = "custom"
    generic: bool = False

    @property
    def n_rows(self) -> int:
        """Number of stored coded blocks (rows of :attr:`encoding`)."""
        return int(self.encoding.shape[0])

    @classmethod
    def from_matrix(
        cls,
        encoding: object,
        *,
        owner: Sequence[int] | None = None,
        stragglers: int | None = None,
        scheme: str = "custom",
        generic: bool = False,
    ) -> MVCode:
        """Wrap a user's encoding matrix.

        Parameters
        ----------
        encoding : array_like or sparse matrix
            ``(n_rows, k)`` coefficients.
        owner : sequence of int, optional
            Device of each row; default one row per device.
        stragglers : int, optional
            Claimed tolerance; default the best possible (``n - k`` when
            homogeneous, :func:`sparsecoded.design.bounds.hetero_stragglers` otherwise).
        scheme : str
            Label.
        generic : bool
            Declare that the coefficients were drawn i.i.d. from a continuous
            distribution (see the class attribute); leave False otherwise, and
            :func:`sparsecoded.certify` will not take the support's flow test
            as a proof for your coefficients.

        Returns
        -------
        MVCode

        Examples
        --------
        >>> code = MVCode.from_matrix([[1, 0], [0, 1], [1, 1]])
        >>> code.n_workers, code.k, code.stragglers, code.weight
        (3, 2, 1, 2)
        """
        e = as_encoding(encoding, "encoding")
        n_rows, k = e.shape
        if k < 1 or n_rows < 1:
            raise ValueError(f"encoding must have at least 1 row and 1 column, got {e.shape}")
        if owner is None:
            own = np.arange(n_rows)
            caps = None
            n = n_rows
        else:
            own = np.asarray(owner, dtype=np.int64)
            if own.shape != (n_rows,):
                raise ValueError(f"owner must have length n_rows = {n_rows}, got {own.shape}")
            if own.min() < 0:
                raise ValueError(f"owner entries must be >= 0, got {own.min()}")
            n = int(own.max()) + 1
            caps = tuple(int(c) for c in np.bincount(own, minlength=n))
        if n_rows < k:
            raise ValueError(f"encoding must have at least k = {k} rows, got {n_rows}")
        if stragglers is None:
            stragglers = n - k if caps is None else bounds.hetero_stragglers(caps, k)
        return cls(
            n_workers=int(n),
            k=int(k),
            stragglers=int(stragglers),
            weight=int(row_weights(e).max()),
            encoding=e,
            owner=own,
            capacities=caps,
            scheme=scheme,
            generic=bool(generic),
        )


@dataclass(frozen=True, eq=False)
class MMCode:
    """A matrix-matrix code: worker i returns ``(a_i . A)(b_i . B)``.

    Attributes
    ----------
    n_workers : int
    k_a, k_b : int
        Blocks of A (by rows) and of B (by columns).
    stragglers : int
        Workers the code claims to tolerate (``n - k_a k_b`` when optimal).
    weight_a, weight_b : int
        Largest row weights of the two encodings.
    encoding_a : scipy.sparse.csr_array
        ``(n, k_a)``.
    encoding_b : scipy.sparse.csr_array
        ``(n, k_b)``.
    scheme : str
    target_weights : tuple of int or None
        For ``"sparse"``: the minimal pair :func:`sparsecoded.design.bounds.mm_weights`.
    fallback : bool
        True when the search found no verified layout at the minimal pair and
        used the next feasible one (then ``(weight_a, weight_b) != target_weights``).
    fallback_reason : str or None
        Why, for each skipped pair: provably infeasible (fails
        :func:`sparsecoded.design.bounds.mm_counting_ok`) or not found by the search.
    """

    n_workers: int
    k_a: int
    k_b: int
    stragglers: int
    weight_a: int
    weight_b: int
    encoding_a: sp.csr_array = field(repr=False)
    encoding_b: sp.csr_array = field(repr=False)
    scheme: str = "custom"
    target_weights: tuple[int, int] | None = None
    fallback: bool = False
    fallback_reason: str | None = None

    @property
    def k(self) -> int:
        """Number of unknown product blocks, ``k_a * k_b``."""
        return self.k_a * self.k_b

    def product_rows(self) -> np.ndarray:
        """Dense ``(n, k_a k_b)`` system: row i is ``a_i kron b_i``.

        Returns
        -------
        numpy.ndarray

        Examples
        --------
        >>> code = MMCode.from_matrices([[1, 0], [0, 1]], [[1], [1]])
        >>> code.product_rows().tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        """
        a = self.encoding_a.toarray()
        b = self.encoding_b.toarray()
        return (a[:, :, None] * b[:, None, :]).reshape(self.n_workers, -1)

    @classmethod
    def from_matrices(
        cls,
        encoding_a: object,
        encoding_b: object,
        *,
        stragglers: int | None = None,
        scheme: str = "custom",
    ) -> MMCode:
        """Wrap a user's pair of encoding matrices.

        Parameters
        ----------
        encoding_a : array_like or sparse matrix
            ``(n, k_a)``.
        encoding_b : array_like or sparse matrix
            ``(n, k_b)``.
        stragglers : int, optional
            Claimed tolerance, default ``n - k_a k_b``.
        scheme : str

        Returns
        -------
        MMCode

        Examples
        --------
        >>> code = MMCode.from_matrices([[1, 0], [0, 1], [1, 1]], [[1], [1], [1]])
        >>> code.k_a, code.k_b, code.stragglers
        (2, 1, 1)
        """
        ea = as_encoding(encoding_a, "encoding_a")
        eb = as_encoding(encoding_b, "encoding_b")
        if ea.shape[0] != eb.shape[0]:
            raise ValueError(
                f"encoding_b has {eb.shape[0]} rows, expected encoding_a.shape[0] = {ea.shape[0]}"
            )
        n, ka = ea.shape
        kb = eb.shape[1]
        bounds.check_mm_params(n, ka, kb)
        if stragglers is None:
            stragglers = n - ka * kb
        return cls(
            n_workers=int(n),
            k_a=int(ka),
            k_b=int(kb),
            stragglers=int(stragglers),
            weight_a=int(row_weights(ea).max()),
            weight_b=int(row_weights(eb).max()),
            encoding_a=ea,
            encoding_b=eb,
            scheme=scheme,
        )
