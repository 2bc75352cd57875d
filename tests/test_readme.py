"""The README's Python example runs and does what its comments say."""

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    check = (
        "\nassert np.allclose(y, A @ np.ones(A.shape[1]))"
        "\nassert not {2, 5} & set(op.report.answered), op.report"
        "\nprint('README example OK')"
    )
    out = subprocess.run(
        [sys.executable, "-c", blocks[0] + check], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr
    assert "README example OK" in out.stdout
    assert "straggler_optimal=True" in out.stdout
