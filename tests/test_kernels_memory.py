"""Allocation failures inside the OpenMP regions raise MemoryError, never abort.

std::bad_alloc thrown inside a parallel region used to reach std::terminate
(the whole process aborted). Each case runs in a subprocess under an address
space limit (RLIMIT_AS), so a regression shows as a failed test rather than
killing pytest. Each product needs a per-thread buffer of n_cols = 10**10
entries (80 GB), far over the limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")

# AddressSanitizer reserves terabytes of shadow address space: under an
# RLIMIT_AS it cannot start at all, so the sanitizer build skips these
pytestmark = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="RLIMIT_AS cannot be combined with AddressSanitizer",
)

LIMIT = 4_000_000_000  # bytes of address space for the child

PRELUDE = """
import resource
import numpy as np
import scipy.sparse as sp
from sparsecoded.kernels import encode_row_blocks, lincomb, matmat

def wide(rows, cols, index_dtype=np.int64):
    # one entry per row, at column 5, in a matrix 10**10 columns wide
    A = sp.csr_array(
        (np.ones(rows), np.full(rows, 5, index_dtype), np.arange(rows + 1, dtype=index_dtype)),
        shape=(rows, cols),
    )
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    return A

resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
N = 10**10
"""

CASES = {
    # Gustavson's size pass: a marker of n_cols int64 per thread (the wrapper
    # would multiply on B's used columns only: switched off to reach the kernel)
    "matmat": "import sparsecoded.kernels as K; K.COMPACT_COLUMNS = 1 << 62\n"
    "B = wide(2, N); B.indptr[2] = 1; B.indices = B.indices[:1]; B.data = B.data[:1]\n"
    "matmat(sp.csr_array(np.ones((2, 2))), B, n_threads={nt})",
    # the row merger's marker: two operands share a row, so count() allocates it
    "lincomb": "A = wide(2, N)\nlincomb([A, A], [1.0, 2.0], n_threads={nt})",
    # the encoder merges rows of two blocks the same way
    "encode": "A = wide(2, N)\nencode_row_blocks(A, np.ones((1, 2)), n_threads={nt})",
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS semantics")
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_alloc_in_parallel_region_is_memory_error(case, n_threads):
    body = CASES[case].format(nt=n_threads)
    script = PRELUDE.format(limit=LIMIT) + textwrap.dedent(f"""
try:
    {body.replace(chr(10), chr(10) + "    ")}
except MemoryError as e:
    print("MemoryError:", e)
else:
    print("no error")
""")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (
        f"child died with {proc.returncode} (abort = -6): {proc.stderr[-2000:]}"
    )
    assert "MemoryError:" in proc.stdout, proc.stdout + proc.stderr
    assert "out of memory for the kernel's per-thread work buffers" in proc.stdout, proc.stdout


def test_an_empty_product_with_a_wide_b_allocates_nothing_big():
    # 1 x 1 @ 1 x 2**27: the kernel's column markers would take 2 GB
    code = (
        "import resource, scipy.sparse as sp\n"
        "from sparsecoded.kernels import matmat\n"
        "a, b = sp.csr_array((1, 1)), sp.csr_array((1, 2**27))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = matmat(a, b)\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "assert out.shape == (1, 2**27) and out.nnz == 0\n"
        "print(grown)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 100 * 1024  # KiB: under 100 MB
