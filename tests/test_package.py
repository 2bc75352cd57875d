import subprocess
import sys

import pytest

import sparsecoded


def test_openmp_flag_is_bool():
    assert isinstance(sparsecoded.openmp_available(), bool)
    assert sparsecoded.default_threads() >= 1


def test_unknown_attribute_is_an_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sparsecoded.nope  # noqa: B018


def test_import_does_not_load_dask():
    code = "import sys, sparsecoded; print('distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
