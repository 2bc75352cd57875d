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


def test_design_fine_mv_reports_load_against_its_bound(capsys):
    assert main(["design", "--workers", "18", "--k", "15", "--scheme", "fine"]) == 0
    out = capsys.readouterr().out
    assert "partition           A in 45 sub-blocks" in out
    assert "load per device     max 0.2222" in out
    assert "load lower bound    0.2222  (fine_mv_load" in out
    assert "applies to the coarse partition only" in out
    assert "\n  lower bound " not in out


def test_design_fine_mm_json_reports_load(capsys):
    from sparsecoded.design import bounds

    assert main(["design", "--workers", "10", "--ka", "2", "--kb", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["partition"] == "fine"
    assert r["lower_bound_applies"] is False
    assert r["blocks"] != [2, 3]
    assert r["products_per_device"] > 1
    largest, mean = bounds.mm_load_bounds(10, 2, 3)
    assert r["load_bound"] == {"largest": largest, "mean": mean, "bound": "mm_load_bounds"}
    load = r["device_load"]
    assert load["max"] >= largest - 1e-12
    assert load["mean"] >= mean - 1e-12
    assert load["max"] == pytest.approx(load["a_max"] + load["b_max"], abs=0.5)
    assert len(r["nnz_ratio_vs_dense"]) == 2  # the old fields are still there
    assert r["certificate"]["straggler_optimal"] is True


def test_design_fine_mm_text_shows_load(capsys):
    assert main(["design", "--workers", "10", "--ka", "2", "--kb", "3"]) == 0
    out = capsys.readouterr().out
    assert "load per device     max" in out
    assert "(mm_load_bounds, linear model p -> 0" in out
    assert "products" in out


def test_design_coarse_mm_keeps_the_weight_comparison(capsys):
    argv = ["design", "--workers", "12", "--ka", "3", "--kb", "3", "--scheme", "coarse", "--json"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["partition"] == "coarse"
    assert r["lower_bound_applies"] is True
    assert r["weight"] == r["lower_bound"]
    assert r["device_load"]["max"] >= r["load_bound"]["largest"] - 1e-12
