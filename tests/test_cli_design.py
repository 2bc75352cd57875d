import json
import subprocess
import sys

import pytest

from sparsecoded.cli import main


def test_design_mv_text(capsys):
    assert main(["design", "--workers", "20", "--k", "16"]) == 0
    out = capsys.readouterr().out
    assert "weight              4" in out
    assert "lower bound         4" in out
    assert "dense weight        16" in out
    assert "nnz vs dense codes  0.265" in out
    assert "straggler-optimal (exhaustive, 4845" in out
    assert "worst condition" in out


def test_design_mv_json(capsys):
    assert main(["design", "--workers", "12", "--k", "9", "--json", "--density", "0.05"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["weight"], r["lower_bound"], r["dense_weight"]) == (3, 3, 9)
    assert r["certificate"]["straggler_optimal"] is True
    assert 0 < r["nnz_ratio_vs_dense"] < 1
    assert r["worst_condition"] > 1


def test_design_mm_json(capsys):
    assert main(["design", "--workers", "12", "--ka", "3", "--kb", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kind"] == "mm"
    assert r["weight"] == r["lower_bound"]
    assert r["fallback"] is False
    assert r["certificate"]["straggler_optimal"] is True


def test_design_baseline_shows_witness(capsys):
    assert main(["design", "--workers", "6", "--k", "4", "--scheme", "replication"]) == 0
    out = capsys.readouterr().out
    assert "NOT straggler-optimal" in out
    assert "cannot decode" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "5", "--k", "7"], "k must be <= n_workers = 5, got k = 7"),
        (["--workers", "19", "--ka", "4", "--kb", "5"], "got k_a \\* k_b = 20"),
        (["--workers", "19", "--ka", "4"], "--ka and --kb go together"),
        (["--density", "0"], "--density must be in \\(0, 1\\], got 0.0"),
        (["--scheme", "bogus"], "scheme must be one of"),
    ],
)
def test_design_errors(capsys, argv, message):
    assert main(["design", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsecoded design: error:")
    assert __import__("re").search(message, err)


def test_design_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "sparsecoded", "design", "--workers", "8", "--k", "6"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "weight              3" in out.stdout


def test_design_random_layout(capsys):
    argv = ["design", "--workers", "30", "--k", "24", "--layout", "random", "--json"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["weight"] == r["lower_bound"] == 6
    assert r["certificate"]["straggler_optimal"] is True
