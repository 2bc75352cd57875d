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

__all__ = [
    "MMCode",
    "MVCode",
    "MV_SCHEMES",
    "MM_SCHEMES",
    "MV_EXTRA_SCHEMES",
    "MM_EXTRA_SCHEMES",
    "as_encoding",
]

MV_SCHEMES = ("sparse", "uncoded", "replication", "mds", "polynomial", "orthopoly")
MM_SCHEMES = (*MV_SCHEMES, "rkrp")
# Also accepted by design_mv / design_mm (docs/theory.md sections 11-12): our
# sparse design at the coarse partition or at the best finer one, and the
# seed authors' schemes rebuilt from their published descriptions.
MV_EXTRA_SCHEMES = ("coarse", "fine", "lcm-optimal", "beta-level")
MM_EXTRA_SCHEMES = ("coarse", "fine", "unified", "beta-level")


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


def _row_load(weights: np.ndarray, blocks: int, density: float) -> np.ndarray:
    """Expected nonzeros of each row as a fraction of the whole matrix's."""
    w = np.asarray(weights, dtype=np.float64)
    if density <= 0.0:
        return w / blocks
    if density >= 1.0:
        return (w > 0) / blocks
    return -np.expm1(w * np.log1p(-density)) / density / blocks


def _device_load(e: sp.csr_array, owner: np.ndarray, n: int, density: float) -> np.ndarray:
    load = _row_load(row_weights(e), e.shape[1], density)
    return np.bincount(owner, weights=load, minlength=n)


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
        Number of row blocks of A; for a finer partition the storage
        parameter (each device stores ``1 / k`` of A), see :attr:`blocks`.
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

    A code on a *finer partition* (docs/theory.md section 11) cuts A into
    ``blocks`` sub-blocks (the columns of ``encoding``, a multiple of k) and
    gives each device ``blocks / k`` rows: the same storage, ``1 / k`` of A.
    Then ``k`` is the storage parameter and ``blocks > k``; a device's answer
    is all its rows (:meth:`device_rows`), and it tolerates ``stragglers``
    whole devices.
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

    @property
    def blocks(self) -> int:
        """Sub-blocks A is cut into: the columns of :attr:`encoding` (``k`` when coarse)."""
        return int(self.encoding.shape[1])

    def device_rows(self, device: int) -> np.ndarray:
        """Encoding rows that ``device`` stores and computes."""
        return np.flatnonzero(np.asarray(self.owner) == device)

    def device_weights(self) -> np.ndarray:
        """Total weight per device: sub-blocks mixed, summed over its rows."""
        return np.bincount(
            np.asarray(self.owner), weights=row_weights(self.encoding), minlength=self.n_workers
        ).astype(np.int64)

    def device_load(self, density: float = 0.0) -> np.ndarray:
        """Expected nonzeros per device as a fraction of ``nnz(A)``.

        A row of weight w mixes w sub-blocks of ``m / blocks`` rows; at density
        p it holds ``coded_density(p, w) / p`` times one sub-block's nonzeros
        (``w`` in the limit p -> 0, the default).  docs/theory.md section 11.
        """
        return _device_load(self.encoding, np.asarray(self.owner), self.n_workers, density)

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
            With an ``owner`` the columns are the sub-blocks.
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
    """A matrix-matrix code: each row r returns ``(a_r . A)(b_r . B)``.

    On the coarse partition row i belongs to worker i: it keeps one coded
    block of A and one of B and returns their product.  On a *finer
    partition* (docs/theory.md section 12) A is cut into ``blocks_a``
    sub-blocks and B into ``blocks_b``; device d stores ``blocks_a / k_a``
    coded A-sub-blocks (its *A-slots*) and ``blocks_b / k_b`` B-slots, the
    same storage as one coarse block of each, and computes every product of
    an A-slot with a B-slot.  Each product is a row of the code, ``owner``
    names its device, and ``slot_a`` / ``slot_b`` name the slots it
    multiplies (equal rows of ``encoding_a`` share a slot id).

    Attributes
    ----------
    n_workers : int
        Devices.
    k_a, k_b : int
        Storage parameters: each device stores ``1 / k_a`` of A and ``1 / k_b``
        of B (on the coarse partition also the block counts).
    stragglers : int
        Devices the code claims to tolerate (``n - k_a k_b`` when optimal).
    weight_a, weight_b : int
        Largest row weights of the two encodings (sub-blocks in one slot).
    encoding_a : scipy.sparse.csr_array
        ``(n_rows, blocks_a)``: row r's A-slot.
    encoding_b : scipy.sparse.csr_array
        ``(n_rows, blocks_b)``: row r's B-slot.
    scheme : str
    target_weights : tuple of int or None
        For the coarse ``"sparse"`` design: the minimal pair
        :func:`sparsecoded.design.bounds.mm_weights`.
    fallback : bool
        True when the coarse search found no verified layout at the minimal
        pair and used the next feasible one.
    fallback_reason : str or None
        Why, for each skipped pair.
    owner : numpy.ndarray or None
        Device of each row; None means row i is device i (coarse codes).
    slot_a, slot_b : numpy.ndarray or None
        Slot id of each row's A- and B-factor (global, distinct per device);
        None means every row has its own.
    generic : bool
        Coefficients drawn i.i.d. from a continuous distribution on their
        support (or systematic single entries, or the Vandermonde-type
        baselines): then the exact flow test of docs/theory.md section 5.1
        proves decodability (see :func:`sparsecoded.certify`).
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
    owner: np.ndarray | None = field(default=None, repr=False)
    slot_a: np.ndarray | None = field(default=None, repr=False)
    slot_b: np.ndarray | None = field(default=None, repr=False)
    generic: bool = False

    @property
    def k(self) -> int:
        """Devices needed, ``k_a * k_b`` (the recovery threshold)."""
        return self.k_a * self.k_b

    @property
    def n_rows(self) -> int:
        """Products computed in all (rows of the encodings)."""
        return int(self.encoding_a.shape[0])

    @property
    def blocks_a(self) -> int:
        """Sub-blocks of A (columns of :attr:`encoding_a`)."""
        return int(self.encoding_a.shape[1])

    @property
    def blocks_b(self) -> int:
        """Sub-blocks of B (columns of :attr:`encoding_b`)."""
        return int(self.encoding_b.shape[1])

    @property
    def unknowns(self) -> int:
        """Product blocks to recover, ``blocks_a * blocks_b``."""
        return self.blocks_a * self.blocks_b

    def row_owner(self) -> np.ndarray:
        """Device of every row (``arange(n)`` for coarse codes)."""
        if self.owner is None:
            return np.arange(self.n_rows)
        return np.asarray(self.owner)

    def device_rows(self, device: int) -> np.ndarray:
        """The rows (products) that ``device`` computes."""
        return np.flatnonzero(self.row_owner() == device)

    def slots(self, side: str) -> tuple[sp.csr_array, np.ndarray]:
        """The distinct coded sub-blocks devices store on one side.

        Parameters
        ----------
        side : {"a", "b"}

        Returns
        -------
        (scipy.sparse.csr_array, numpy.ndarray)
            One row per slot (its coefficients) and the slot's device.
        """
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        e = self.encoding_a if side == "a" else self.encoding_b
        ids = self.slot_a if side == "a" else self.slot_b
        if ids is None:
            ids = np.arange(self.n_rows)
        ids = np.asarray(ids)
        uniq, first = np.unique(ids, return_index=True)
        return sp.csr_array(e[first]), self.row_owner()[first]

    def device_load(self, density_a: float = 0.0, density_b: float | None = None):
        """Expected nonzeros stored per device, as fractions of nnz(A) and nnz(B).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            ``x_d`` and ``y_d`` (docs/theory.md section 12): device d holds
            about ``x_d nnz(A) + y_d nnz(B)`` nonzeros; ``p -> 0`` by default.
        """
        density_b = density_a if density_b is None else density_b
        ea, oa = self.slots("a")
        eb, ob = self.slots("b")
        return (
            _device_load(ea, oa, self.n_workers, density_a),
            _device_load(eb, ob, self.n_workers, density_b),
        )

    def product_rows(self) -> np.ndarray:
        """Dense ``(n_rows, blocks_a blocks_b)`` system: row r is ``a_r kron b_r``.

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
        return (a[:, :, None] * b[:, None, :]).reshape(self.n_rows, -1)

    @classmethod
    def from_matrices(
        cls,
        encoding_a: object,
        encoding_b: object,
        *,
        stragglers: int | None = None,
        scheme: str = "custom",
        owner: Sequence[int] | None = None,
        storage: tuple[int, int] | None = None,
        generic: bool = False,
    ) -> MMCode:
        """Wrap a user's pair of encoding matrices.

        Parameters
        ----------
        encoding_a : array_like or sparse matrix
            ``(n_rows, k_a)`` (or ``(n_rows, blocks_a)`` with ``owner``).
        encoding_b : array_like or sparse matrix
            ``(n_rows, k_b)``.
        stragglers : int, optional
            Claimed tolerance, default ``n - k_a k_b``.
        scheme : str
        owner : sequence of int, optional
            Device of each row; default one row per device.  Slots are then
            identified by equal rows on the same device.
        storage : (int, int), optional
            With ``owner``: the storage parameters ``(k_a, k_b)``; default
            the column counts divided by the largest number of distinct
            slots a device holds.
        generic : bool
            Declare the coefficients i.i.d. continuous (see the attribute).

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
        n_rows, ka = ea.shape
        kb = eb.shape[1]
        own = sa = sb = None
        n = n_rows
        if owner is not None:
            own = np.asarray(owner, dtype=np.int64)
            if own.shape != (n_rows,):
                raise ValueError(f"owner must have length n_rows = {n_rows}, got {own.shape}")
            if own.min() < 0:
                raise ValueError(f"owner entries must be >= 0, got {own.min()}")
            n = int(own.max()) + 1
            sa = _slot_ids(ea, own)
            sb = _slot_ids(eb, own)
            if storage is None:
                per_a = max(1, int(np.bincount(own[np.unique(sa, return_index=True)[1]]).max()))
                per_b = max(1, int(np.bincount(own[np.unique(sb, return_index=True)[1]]).max()))
                storage = (max(1, ka // per_a), max(1, kb // per_b))
            ka, kb = (int(v) for v in storage)
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
            owner=own,
            slot_a=sa,
            slot_b=sb,
            generic=bool(generic),
        )


def _slot_ids(e: sp.csr_array, owner: np.ndarray) -> np.ndarray:
    """Equal rows on one device are one slot."""
    seen: dict[tuple, int] = {}
    out = np.empty(e.shape[0], dtype=np.int64)
    for r in range(e.shape[0]):
        lo, hi = e.indptr[r], e.indptr[r + 1]
        key = (int(owner[r]), e.indices[lo:hi].tobytes(), e.data[lo:hi].tobytes())
        out[r] = seen.setdefault(key, len(seen))
    return out
