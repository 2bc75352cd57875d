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


def test_version_is_written_once():
    from importlib.metadata import metadata, version

    assert version("sparsecoded") == sparsecoded.__version__
    meta = metadata("sparsecoded")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "LICENSE" in meta.get_all("License-File")
    out = subprocess.run(
        [sys.executable, "-m", "sparsecoded", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert sparsecoded.__version__ in out.stdout


def test_typing_files_ship_with_the_package():
    import pathlib

    here = pathlib.Path(sparsecoded.__file__).parent
    assert (here / "py.typed").is_file()
    assert (here / "_core.pyi").is_file()


def test_star_import_and_dask_extra_without_distributed():
    # a fresh interpreter where 'distributed' cannot be imported
    code = (
        "import sys\n"
        "sys.modules['distributed'] = None\n"
        "from sparsecoded import *\n"
        "import sparsecoded\n"
        "assert 'DaskPool' not in sparsecoded.__all__\n"
        "try:\n"
        "    sparsecoded.DaskPool\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "sparsecoded[dask]"' in out.stdout
