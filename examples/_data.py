"""Where the examples find their matrices: shared/data beside the checkout, else a stand-in.

Not part of the package: a helper for the scripts in this folder.
"""

import pathlib
import sys

import scipy.io
import scipy.sparse as sp

HERE = pathlib.Path(__file__).resolve().parent
CANDIDATES = [HERE.parent.parent / "shared" / "data", HERE.parent / "shared" / "data"]


def load(name, stand_in):
    """The matrix in argv[1], else ``name`` from shared/data, else ``stand_in()``."""
    if len(sys.argv) > 1:
        path = pathlib.Path(sys.argv[1])
        return sp.csr_array(scipy.io.mmread(path)), str(path)
    for folder in CANDIDATES:
        path = folder / f"{name}.mtx.gz"
        if path.is_file():
            return sp.csr_array(scipy.io.mmread(path)), str(path)
    print(f"({name}.mtx.gz not found: using a random stand-in)")
    return sp.csr_array(stand_in()), "random stand-in"
