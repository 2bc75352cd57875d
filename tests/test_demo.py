"""`sparsecoded demo`, the README's main job, on a small matrix."""

import pytest

from sparsecoded.cli import main

SMALL = ["demo", "--size", "3000", "2000", "--workers", "4", "--k", "3", "--delay", "0.2"]


def test_demo_runs_every_scheme_and_checks_against_scipy(capsys):
    assert main([*SMALL, "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for scheme in ("sparse", "mds", "uncoded"):
        assert any(line.startswith(scheme) for line in out.splitlines())
    assert "check against scipy: OK" in out


def test_demo_of_an_all_zero_matrix_checks_the_absolute_error(capsys):
    # A @ x = 0: a relative error would be 0 / 0 = nan, which must not pass as OK
    assert main([*SMALL, "--density", "0", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "largest relative error 0.0e+00" in out
    assert "nan" not in out


@pytest.mark.parametrize("bad", [["--k", "5"], ["--k", "0"]])
def test_demo_rejects_impossible_codes(bad, capsys):
    assert main([*SMALL, *bad]) != 0
    assert "--k must be between 1 and --workers = 4" in capsys.readouterr().err


def test_demo_explains_its_columns_and_prints_the_figure_that_matters(capsys):
    assert main([*SMALL, "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for column in ("weight", "encode ms", "round ms", "with stragglers ms", "rel. error"):
        assert f"  {column}  " in out
    assert "can be faster than one without" in out  # sleeping stragglers free the cores
    assert "separate machines" in out  # why one process wins on this box
    line = next(ln for ln in out.splitlines() if ln.startswith("With 1 straggler(s) sleeping"))
    assert "sparse code" in line
    assert "uncoded" in line


def test_demo_is_a_library_call(capsys):
    from sparsecoded.demo import run_demo

    code = run_demo(size=(300, 200), workers=3, k=2, delay=0.05, rounds=1, no_progress=True)
    assert code == 0
    assert "check against scipy: OK" in capsys.readouterr().out
