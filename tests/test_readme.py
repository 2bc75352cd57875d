"""The README's Python example runs and does what its comments say."""

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_as_a_saved_script(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    check = (
        "\nassert np.allclose(y, A @ np.ones(A.shape[1]))"
        "\nassert not {2, 5} & set(op.report.answered), op.report"
        "\nassert np.allclose(z, A.T @ np.ones(A.shape[0]))"
        "\nassert np.linalg.norm(A @ x - y) < 1e-3 * np.linalg.norm(y)"
        "\nprint('README example OK')"
    )
    script = tmp_path / "use.py"  # as a user runs it: a file, no main guard
    script.write_text(blocks[0] + check)
    out = subprocess.run(
        [sys.executable, "use.py"], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "README example OK" in out.stdout
    assert "straggler_optimal=True" in out.stdout
    assert "Traceback" not in out.stderr, out.stderr
