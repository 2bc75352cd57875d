"""The examples run as plain scripts (no main guard), as a user would run them.

Each gets a small matrix written here (CI does not depend on shared/data);
the scripts check their answers against scipy themselves and exit non-zero
otherwise.
"""

import pathlib
import subprocess
import sys

import pytest
import scipy.io
import scipy.sparse as sp

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ not in this checkout")


def _matrix(name, rng):
    if name == "pagerank":
        return sp.random_array((3000, 3000), density=0.003, rng=rng)
    if name == "cg":
        B = sp.random_array((800, 800), density=0.005, rng=rng)
        return B @ B.T + 10 * sp.eye_array(800)
    return sp.random_array((4000, 60), density=0.1, rng=rng)  # lsqr, logistic


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pagerank", "cg", "lsqr", "logistic"])
def test_example_runs_as_a_script(name, tmp_path, rng):
    path = tmp_path / f"{name}.mtx"
    scipy.io.mmwrite(path, sp.coo_matrix(_matrix(name, rng)))
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
