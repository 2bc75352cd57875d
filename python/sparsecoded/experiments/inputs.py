"""The experiments' input matrices: files (Matrix Market or scipy ``.npz``) and random ones.

A file is checked before anything is allocated for it: its header (the
Matrix Market banner and size line, or the ``.npy`` headers inside an
``.npz``) says how large the matrix is, and a file whose declared size would
not fit in the memory this process may use is refused with one line, as are
complex matrices (the kernels compute in real arithmetic), corrupt or
truncated gzip streams, directories and missing files.  Every such refusal
is a :class:`MatrixFileError`.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

# what loading a declared matrix costs, in bytes (an upper estimate: the reader's
# COO triplets, then CSR arrays beside them, int64 indices and float64 values)
_BYTES_PER_ENTRY = 48
_BYTES_PER_ROW_OR_COLUMN = 16
_HEADER_LIMIT = 1 << 20  # bytes of banner and comments read before the size line
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_REAL_FIELDS = ("real", "integer", "pattern", "double")


class MatrixFileError(OSError):
    """A matrix file that cannot be used: missing, unreadable, corrupt, too large or complex."""


@dataclass
class MatrixInput:
    A: sp.csr_array
    meta: dict[str, Any]


def add_matrix_arguments(
    parser: argparse.ArgumentParser,
    *,
    size: tuple[int, int] = (32000, 20000),
    files: bool = True,
    sweep: bool = True,
) -> None:
    """--size, --density, --seed and (with ``files``) --matrix."""
    g = parser.add_argument_group("input")
    g.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=size,
        metavar=("M", "C"),
        help=f"random matrix shape (default {size[0]} {size[1]})",
    )
    g.add_argument(
        "--density",
        default="0.01",
        help="random matrix density"
        + ("; a comma list sweeps it" if sweep else "")
        + " (default 0.01)",
    )
    if files:
        g.add_argument(
            "--matrix",
            default=None,
            metavar="FILE",
            help="a Matrix Market file (.mtx, .mtx.gz) or a scipy.sparse.save_npz file (.npz) "
            "instead of a random matrix",
        )
    g.add_argument(
        "--seed", type=int, default=0, help="seed of the matrix, codes, x and stragglers"
    )


# ----------------------------------------------------------------------------- parameters


def at_least(lo: int):
    """An argparse type: an integer >= lo, with a message naming both."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {value}")
        return value

    return parse


def ints(value: Any) -> list[int]:
    """``"4,8"``, ``8`` or ``[4, 8]`` as a list of ints."""
    if isinstance(value, str):
        return [int(t) for t in value.split(",") if t.strip()]
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]


def floats(value: Any) -> list[float]:
    """``"0.01,0.1"``, ``0.01`` or ``[0.01, 0.1]`` as a list of floats."""
    if isinstance(value, str):
        return [float(t) for t in value.split(",") if t.strip()]
    if isinstance(value, (int, float, np.number)):
        return [float(value)]
    return [float(v) for v in value]


def names(value: Any) -> list[str]:
    """A comma list (or a sequence) of names."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def schemes(value: Any, default: str, allowed: Sequence[str] | None = None) -> list[str]:
    """The --schemes list; every name must be one the experiment knows."""
    from ..design import MM_SCHEMES

    allowed = MM_SCHEMES if allowed is None else allowed
    chosen = names(value or default)
    unknown = [s for s in chosen if s not in allowed]
    if unknown or not chosen:
        raise ValueError(
            f"--schemes must name some of {', '.join(allowed)}; got {value!r}"
            + (f" ({', '.join(unknown)} unknown here)" if unknown else "")
        )
    return chosen


# ----------------------------------------------------------------------------- files


def memory_budget() -> int:
    """Bytes this process may allocate: available memory, within its address-space limit."""
    budget = 16 << 30  # where /proc/meminfo is not there to ask
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                budget = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            budget = min(budget, soft)
    except (ImportError, OSError, ValueError):
        pass
    return budget


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def _kind(path: Path) -> str:
    """ "npz", "mtx-gz" or "mtx", from the file's first bytes."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(_ZIP_MAGIC):
        return "npz"
    if magic.startswith(_GZIP_MAGIC):
        return "mtx-gz"
    return "mtx"


def _open_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MatrixFileError(f"matrix file {path}: no such file")
    if p.is_dir():
        raise MatrixFileError(f"matrix file {path} is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise MatrixFileError(f"matrix file {path}: permission denied")
    return p


def check_matrix_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a matrix file's header and refuse it now if it cannot be loaded.

    Returns what the header declares: ``{"format", "shape", "nnz", "field"}``.
    Nothing is allocated in proportion to the declared size.

    Raises
    ------
    MatrixFileError
        Missing, a directory, unreadable, not a matrix file, complex, a corrupt
        stream, or a declared size that would not fit in :func:`memory_budget`.
    """
    p = _open_file(path)
    try:
        kind = _kind(p)
        head = _npz_header(p) if kind == "npz" else _mtx_header(p, kind == "mtx-gz")
    except MatrixFileError:
        raise
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise MatrixFileError(f"matrix file {path} is corrupt or truncated: {_why(exc)}") from None
    except ValueError as exc:
        raise MatrixFileError(f"matrix file {path}: {exc}") from None
    rows, cols = head["shape"]
    need = _BYTES_PER_ROW_OR_COLUMN * (rows + cols) + _BYTES_PER_ENTRY * head["entries"]
    budget = memory_budget()
    if need > budget:
        raise MatrixFileError(
            f"matrix file {path} declares a {rows} x {cols} matrix with {head['nnz']} entries: "
            f"loading it needs about {_gib(need)}, more than the {_gib(budget)} this process "
            "may use (available memory, within its address-space limit)"
        )
    return head


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _mtx_header(p: Path, gz: bool) -> dict[str, Any]:
    opener = gzip.open if gz else open
    with opener(p, "rb") as f:
        banner = f.readline(_HEADER_LIMIT)
        words = banner.decode("ascii", "replace").strip().lower().split()
        if len(words) != 5 or words[0] != "%%matrixmarket":
            raise ValueError(
                "not a Matrix Market file (expected a first line "
                "'%%MatrixMarket matrix coordinate real general')"
            )
        obj, fmt, field, symmetry = words[1:]
        if obj != "matrix" or fmt not in ("coordinate", "array"):
            raise ValueError(
                f"is a Matrix Market '{obj} {fmt}', expected a coordinate or array matrix"
            )
        if field == "complex":
            raise ValueError(
                "is a complex matrix; sparsecoded computes with real matrices, and loading it as "
                "real would silently drop the imaginary parts"
            )
        if field not in _REAL_FIELDS:
            raise ValueError(f"has an unknown Matrix Market field {field!r}")
        read = len(banner)
        while True:
            line = f.readline(_HEADER_LIMIT)
            read += len(line)
            if not line:
                raise ValueError("ends before its size line")
            if read > _HEADER_LIMIT:
                raise ValueError(f"has no size line in its first {_HEADER_LIMIT} bytes")
            text = line.decode("ascii", "replace").strip()
            if text and not text.startswith("%"):
                break
    sizes = text.split()
    want = 3 if fmt == "coordinate" else 2
    try:
        if len(sizes) != want:
            raise ValueError
        dims = [int(t) for t in sizes]
    except ValueError:
        raise ValueError(
            f"size line {text[:80]!r}: expected {want} integers "
            + ("(rows, columns, entries)" if want == 3 else "(rows, columns)")
        ) from None
    if min(dims) < 0:
        raise ValueError(f"size line {text[:80]!r} holds a negative number")
    rows, cols = dims[:2]
    nnz = dims[2] if fmt == "coordinate" else rows * cols
    entries = nnz * (1 if symmetry == "general" else 2)
    return {
        "format": f"matrix market {fmt}",
        "shape": (rows, cols),
        "nnz": nnz,
        "entries": entries,
        "field": field,
    }


def _npz_header(p: Path) -> dict[str, Any]:
    """Sizes of the arrays in a save_npz file, read from their .npy headers only."""
    fmt = np.lib.format
    arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with zipfile.ZipFile(p) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            with zf.open(info) as f:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = fmt.read_array_header_2_0(f)
                else:
                    raise ValueError(
                        f"array {name!r} has .npy format {version}, expected 1.0 or 2.0"
                    )
                body = info.file_size - f.tell()
            declared = math.prod(int(d) for d in shape) * dtype.itemsize
            if declared != body:  # the zip directory says how many bytes there really are
                raise ValueError(
                    f"array {name!r} declares shape {tuple(shape)} ({declared} bytes) "
                    f"but holds {body} bytes"
                )
            if dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects; refused (no pickles)")
            arrays[name] = (tuple(int(d) for d in shape), dtype)
    missing = {"format", "shape", "data"} - set(arrays)
    if missing:
        raise ValueError(
            f"not a scipy.sparse.save_npz file (no {', '.join(sorted(missing))} arrays in it)"
        )
    if arrays["data"][1].kind == "c":
        raise ValueError(
            "is a complex matrix; sparsecoded computes with real matrices, and loading it as "
            "real would silently drop the imaginary parts"
        )
    total = sum(math.prod(s) * d.itemsize for s, d in arrays.values())
    nnz = math.prod(arrays["data"][0])
    # the declared shape is an array in the file: read it only once the total is known to be small
    if total > memory_budget():
        shape = (0, 0)
    else:
        with np.load(p, allow_pickle=False) as z:
            shape_arr = np.asarray(z["shape"])
        if shape_arr.shape != (2,) or shape_arr.dtype.kind not in "iu":
            raise ValueError(f"its shape array is {shape_arr!r}, expected two integers")
        shape = (int(shape_arr[0]), int(shape_arr[1]))
        if min(shape) < 0:
            raise ValueError(f"declares the negative shape {shape}")
    # entries in bytes-per-entry units, so that the caller's one bound covers the whole file
    entries = max(nnz, -(-total // _BYTES_PER_ENTRY))
    return {
        "format": "npz",
        "shape": shape,
        "nnz": nnz,
        "entries": entries,
        "field": arrays["data"][1].name,
    }


def load_matrix(path: str | os.PathLike) -> sp.csr_array:
    """A Matrix Market (.mtx, .mtx.gz) or save_npz (.npz) file as float64 CSR, duplicates summed.

    The header is checked first (:func:`check_matrix_file`); any failure to
    read the file is a :class:`MatrixFileError` with one line of text.
    """
    head = check_matrix_file(path)
    try:
        if head["format"] == "npz":
            M = sp.load_npz(str(path))
        else:
            import scipy.io

            M = scipy.io.mmread(str(path))
        if np.iscomplexobj(M.data if sp.issparse(M) else M):
            raise ValueError("is a complex matrix; sparsecoded computes with real matrices")
        A = sp.csr_array(M, dtype=np.float64)
        A.sum_duplicates()
    except MemoryError:
        raise MatrixFileError(
            f"matrix file {path}: not enough memory to load a {head['shape'][0]} x "
            f"{head['shape'][1]} matrix with {head['nnz']} entries"
        ) from None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise MatrixFileError(f"matrix file {path} is corrupt or truncated: {_why(exc)}") from None
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise MatrixFileError(f"matrix file {path} cannot be read: {_why(exc)}") from None
    if tuple(A.shape) != tuple(head["shape"]):
        raise MatrixFileError(
            f"matrix file {path} declares shape {head['shape']} but holds {A.shape}"
        )
    return A


# ----------------------------------------------------------------------------- matrices


def random_matrix(m: int, c: int, density: float, seed: int) -> sp.csr_array:
    """Uniformly random sparse matrix with standard-normal values (float64 CSR)."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"--density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    A = sp.random_array(
        (m, c), density=density, format="csr", rng=rng, data_sampler=rng.standard_normal
    )
    return sp.csr_array(A)


def matrix_input(
    matrix: str | os.PathLike | None, size: Sequence[int], density: float, seed: int
) -> MatrixInput:
    """The file ``matrix`` if given, else a random ``size`` matrix of ``density``."""
    if matrix:
        A = load_matrix(matrix)
        meta: dict[str, Any] = {
            "kind": "file",
            "file": str(matrix),
            "name": Path(matrix).name.split(".")[0],
        }
    else:
        m, c = size
        A = random_matrix(int(m), int(c), density, seed)
        meta = {
            "kind": "random",
            "seed": seed,
            "requested_density": density,
            "values": "standard normal",
            "pattern": "uniform (scipy.sparse.random_array)",
        }
    meta.update(
        {
            "shape": list(A.shape),
            "nnz": int(A.nnz),
            "density": A.nnz / max(1, A.shape[0] * A.shape[1]),
        }
    )
    return MatrixInput(A, meta)


def mm_partner(A: sp.csr_array, from_file: bool, seed: int) -> sp.csr_array:
    """B of ``A @ B``: A's transpose for a file, else random of A's transposed shape and density."""
    if from_file:
        return sp.csr_array(A.T)
    d = A.nnz / max(1, A.shape[0] * A.shape[1])
    return random_matrix(A.shape[1], A.shape[0], d, seed + 1)
