"""``sparsecoded experiment``: every experiment end to end on tiny inputs, through the CLI."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("sparsecoded.design", reason="needs the design layer (design_mv, certify)")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from sparsecoded.cli import main  # noqa: E402

TINY = ["--size", "1200", "600", "--density", "0.02", "--no-progress"]
# each experiment takes only the flags it reads
TINY_MEASUREMENT = {
    "worker-time": ["--reps", "2"],
    "encode-time": ["--reps", "2"],
    "completion": ["--reps", "2", "--rounds", "1"],
    "heterogeneous": ["--reps", "2", "--rounds", "1"],
}
COMMON_KEYS = {
    "experiment",
    "command",
    "machine",
    "versions",
    "parameters",
    "seeds",
    "modes",
    "mode",
    "schemes",
}


def _run(tmp_path, name, *extra):
    out_json, out_png = tmp_path / f"{name}.json", tmp_path / f"{name}.png"
    tiny = [*TINY, *TINY_MEASUREMENT.get(name, [])]
    rc = main(["experiment", name, *tiny, *extra, "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    assert out_png.stat().st_size > 1000
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(out_json.read_text())
    assert COMMON_KEYS <= set(record)
    assert record["experiment"] == name
    assert {"cpu_model", "cpu_count", "platform"} <= set(record["machine"])
    assert {"python", "numpy", "scipy", "sparsecoded"} <= set(record["versions"])
    return record


def test_worker_time_figures_are_consistent(tmp_path):
    rec = _run(
        tmp_path,
        "worker-time",
        "--workers",
        "10",
        "--k",
        "8",
        "--schemes",
        "sparse,mds,polynomial,uncoded",
    )
    sch = rec["schemes"]
    # the maintainers' check reads exactly these keys
    for name in ("sparse", "mds", "polynomial", "uncoded"):
        assert sch[name]["worker_time_median"] > 0
        assert sch[name]["mode"] == "simulated"
    assert sch["sparse"]["weight"] == math.ceil(8 * 3 / 10) == 3
    assert sch["mds"]["weight"] == sch["polynomial"]["weight"] == 8
    assert sch["uncoded"]["weight"] == 1
    assert sch["uncoded"]["workers_with_work"] == 8
    # coded blocks hold about w times an uncoded block's nonzeros (density 2 %: little overlap)
    for name, w in (("sparse", 3), ("mds", 8)):
        assert 0.85 * w <= sch[name]["nnz_ratio_to_uncoded"] <= w
    assert rec["nnz_ratios"]["mds/sparse"] == pytest.approx(
        sch["mds"]["nnz_median"] / sch["sparse"]["nnz_median"]
    )
    assert len(sch["sparse"]["worker_times"]) == 10
    assert len(rec["sweep"]) == 1
    assert rec["sweep"][0]["schemes"] == sch


def test_worker_time_density_sweep(tmp_path):
    rec = _run(
        tmp_path,
        "worker-time",
        "--workers",
        "6",
        "--k",
        "4",
        "--density",
        "0.01,0.05",
        "--schemes",
        "sparse,mds",
    )
    assert [p["requested_density"] for p in rec["sweep"]] == [0.01, 0.05]
    assert rec["schemes"] == rec["sweep"][0]["schemes"]


def test_encode_time(tmp_path):
    rec = _run(tmp_path, "encode-time", "--workers", "6", "--k", "4", "--schemes", "sparse,mds")
    assert rec["schemes"]["sparse"]["encode_seconds"] > 0
    assert rec["schemes"]["mds-dense-arrays"]["encode_seconds"] > 0
    assert "mds-dense-arrays/sparse" in rec["ratios"]


def test_completion_records_the_failure_beyond_s(tmp_path):
    rec = _run(
        tmp_path,
        "completion",
        "--workers",
        "5",
        "--k",
        "3",
        "--delay",
        "0.2",
        "--schemes",
        "sparse,uncoded",
    )
    assert rec["s"] == 2
    assert rec["counts"] == [0, 1, 2, 3]
    crash = rec["schemes"]["sparse"]["models"]["crash"]
    assert [r["rounds_ok"] for r in crash] == [1, 1, 1, 0]
    assert "NotEnoughWorkers" in crash[3]["rounds"][0]["error_type"]
    fixed = rec["schemes"]["sparse"]["models"]["fixed"]
    assert all(r["rel_error_max"] < 1e-10 for r in fixed)
    # within tolerance the delayed workers are never waited for; beyond it one is
    assert fixed[2]["round_seconds_median"] < 0.2 <= fixed[3]["round_seconds_median"]
    assert rec["schemes"]["uncoded"]["models"]["fixed"][1]["round_seconds_median"] >= 0.2


def test_stability(tmp_path):
    rec = _run(tmp_path, "stability", "--workers", "6,8", "--stragglers", "2", "--trials", "2")
    for scheme in ("sparse", "mds", "polynomial", "orthopoly"):
        rows = rec["schemes"][scheme]
        assert [r["workers"] for r in rows] == [6, 8]
        assert all(r["worst_condition"] >= 1 for r in rows)
        assert all(r["decode_rel_error_max"] < 1e-8 for r in rows)


def test_iterative_matches_scipy(tmp_path):
    rec = _run(
        tmp_path, "iterative", "--size", "600", "600", "--workers", "5", "--k", "3", "--iters", "4"
    )
    for r in rec["schemes"].values():
        assert r["iterations"] == 4
        assert r["failed"] is None
        assert r["max_iterate_difference_to_scipy"] < 1e-10
    assert rec["schemes"]["sparse"]["decode_cache_hits"] >= 1


def test_heterogeneous(tmp_path):
    rec = _run(
        tmp_path,
        "heterogeneous",
        "--workers",
        "4",
        "--capacities",
        "1,2,3,2",
        "--models",
        "fixed,crash",
        "--delay",
        "0.1",
    )
    assert rec["capacities"] == [1, 2, 3, 2]
    assert rec["virtual_workers"] == 8
    crash = rec["schemes"]["sparse"]["models"]["crash"]
    assert crash[-1]["beyond_tolerance"]
    assert crash[-1]["rounds_ok"] == 0
    assert all(r["rounds_ok"] == 1 for r in crash[:-1])


def test_matrix_file(tmp_path):
    import numpy as np
    import scipy.io
    import scipy.sparse as sp

    path = tmp_path / "m.mtx"
    scipy.io.mmwrite(
        str(path), sp.random_array((300, 200), density=0.05, rng=np.random.default_rng(1))
    )
    rec = _run(
        tmp_path,
        "worker-time",
        "--matrix",
        str(path),
        "--workers",
        "4",
        "--k",
        "3",
        "--schemes",
        "sparse",
    )
    assert rec["input"]["kind"] == "file"
    assert rec["input"]["shape"] == [300, 200]


def test_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["experiment", "worker-time", "--workers", "4", "--k", "9", "--no-progress"]) == 2
    assert "k <= n" in capsys.readouterr().err


SMALL = ["--size", "200", "100", "--workers", "4", "--k", "3", "--reps", "1"]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (
            ["encode-time", *SMALL, "--workers", "20", "--k", "30"],
            2,
            "no valid \\(n, k\\) with k <= n",
        ),
        (
            ["worker-time", *SMALL, "--matrix", "no-such-file.mtx"],
            1,
            "no-such-file.mtx: no such file",
        ),
        (
            ["worker-time", *SMALL, "--json", "."],
            1,
            "--json . is a directory, expected a file name",
        ),
        (["heterogeneous", *SMALL, "--schemes", "sparse,polynomial"], 2, "polynomial unknown here"),
        (["completion", *SMALL, "--models", "fixed,slow"], 2, "--models must name some of"),
        (
            ["stability", "--size", "200", "100", "--workers", "5", "--stragglers", "9"],
            2,
            "leaves no k = n - s >= 1",
        ),
    ],
)
def test_bad_parameters_and_paths_fail_before_the_work(argv, status, message, capsys):
    # usage errors (parameters) exit 2, failures of the work (files) exit 1; one line each
    assert main(["experiment", *argv, "--no-progress"]) == status
    err = capsys.readouterr().err
    assert err.startswith("sparsecoded experiment: error:")
    assert err.count("\n") == 1
    assert __import__("re").search(message, err)


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("iterative", "--iters"),
        ("worker-time", "--reps"),
        ("completion", "--rounds"),
        ("stability", "--trials"),
    ],
)
def test_counts_must_be_positive(name, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["experiment", name, flag, "0"])
    assert exc.value.code == 2
    assert f"argument {flag}: expected an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("stability", "--matrix"),
        ("stability", "--k"),
        ("worker-time", "--rounds"),
        ("encode-time", "--live"),
        ("iterative", "--reps"),
    ],
)
def test_each_experiment_takes_only_the_flags_it_reads(name, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["experiment", name, flag, "1"])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_each_experiment_help_says_what_it_measures(capsys):
    from sparsecoded.experiments import EXPERIMENTS, experiment

    for name in EXPERIMENTS:
        with pytest.raises(SystemExit) as exc:
            main(["experiment", name, "--help"])
        assert exc.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        first = " ".join(experiment(name).__doc__.strip().split("\n\n")[0].split())
        assert first in out


def test_experiments_run_as_library_calls():
    from sparsecoded.experiments import completion, stability

    rec = stability.run(
        size=(200, 100), workers=[5], stragglers=1, schemes=["sparse"], trials=1, no_progress=True
    )
    assert rec["schemes"]["sparse"][0]["k"] == 4
    rec = completion.run(
        size=(300, 200),
        workers=4,
        k=3,
        schemes="sparse",
        rounds=1,
        reps=1,
        models=["fixed"],
        delay=0.05,
        no_progress=True,
    )
    rows = rec["schemes"]["sparse"]["models"]["fixed"]
    assert [r["stragglers"] for r in rows] == [0, 1, 2]
    assert rows[1]["cpu_replay_completion_seconds_median"] < 0.05 < rows[2]["round_seconds_median"]


def test_json_dash_writes_the_record_to_stdout(capsys):
    argv = [
        "experiment",
        "stability",
        "--size",
        "200",
        "100",
        "--workers",
        "5",
        "--stragglers",
        "1",
        "--schemes",
        "sparse",
        "--trials",
        "1",
        "--json",
        "-",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["experiment"] == "stability"
    assert captured.err.startswith("stability: mode simulated")  # the summary moves aside


def test_worker_time_matrix_matrix(tmp_path):
    rec = _run(
        tmp_path,
        "worker-time",
        "--size",
        "400",
        "300",
        "--workers",
        "8",
        "--ka",
        "2",
        "--kb",
        "3",
        "--schemes",
        "sparse,mds,rkrp",
    )
    assert rec["operation"] == "matmat"
    sparse, mds = rec["schemes"]["sparse"], rec["schemes"]["mds"]
    assert (mds["weight_a"], mds["weight_b"]) == (2, 3)
    assert sparse["weight_a"] * sparse["weight_b"] == sparse["weight"] < mds["weight"]


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    argv = ["experiment", "stability", "--workers", "5", "--stragglers", "1", "--no-progress"]
    assert main([*argv, "--plot", str(tmp_path / "p.png")]) == 1
    assert "pip install 'sparsecoded[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_every_bench_readme_command_parses():
    # bench/README.md records the commands the committed results were made with
    import pathlib
    import re
    import shlex

    from sparsecoded.cli import build_parser

    text = (pathlib.Path(__file__).resolve().parents[1] / "bench" / "README.md").read_text()
    text = text.replace("\\\n", " ")
    commands = [
        line.strip()
        for line in text.splitlines()
        if line.strip().startswith("sparsecoded experiment")
    ]
    assert len(commands) >= 12
    parser = build_parser()
    for command in commands:
        argv = shlex.split(re.sub(r"\$\w+", "x", command))[1:]
        args = parser.parse_args(argv)  # SystemExit(2) on a flag the experiment no longer takes
        assert args.command == "experiment"


def test_cpu_replay_runs_on_the_virtual_clock_and_the_decoders_rule():
    from sparsecoded.decode import Decoder
    from sparsecoded.design import MVCode
    from sparsecoded.experiments.measure import replay_cpu
    from sparsecoded.stragglers import Crash, FixedDelay

    code = MVCode.from_matrix([[1, 0], [0, 1], [1, 1]])
    decoder = Decoder(code.encoding)
    times = [1.0, 2.0, 3.0]
    rounds = [{"ok": True, "decode_seconds": 0.5, "round_index": 0}]

    def replay(model):
        return replay_cpu(times, code.owner, model, decoder, 1, rounds)

    assert replay(None)["cpu_replay_round_seconds"] == [2.0]  # rows 0 and 1 decode
    assert replay(None)["cpu_replay_completion_seconds_median"] == 2.5  # + the real decode
    assert replay(FixedDelay([1], 5.0))["cpu_replay_round_seconds"] == [3.0]  # rows 0 and 2
    assert replay(Crash([1, 2]))["cpu_replay_round_seconds"] == [None]  # row 0 alone: never
    assert replay(Crash([1, 2]))["cpu_replay_completion_seconds_median"] is None


def _hand_slot_nnz(M, E, devices, n):
    """Nonzeros per device of ``sum_j E[s, j] M_j`` over its slots, from scipy row slices."""
    import numpy as np
    import scipy.sparse as sp

    blocks = E.shape[1]
    b = -(-M.shape[0] // blocks)
    parts = [sp.csr_array(M[j * b : (j + 1) * b]) for j in range(blocks)]
    out = np.zeros(n, dtype=np.int64)
    dense = E.toarray()
    for s, d in enumerate(devices):
        acc = None
        for j in np.flatnonzero(dense[s]):
            term = parts[j] * dense[s, j]
            term.resize((b, M.shape[1]))
            acc = term if acc is None else acc + term
        if acc is not None:
            acc = sp.csr_array(acc)
            acc.eliminate_zeros()
            out[d] += acc.nnz
    return out


def test_mm_device_nonzeros_are_the_distinct_slots_hand_count():
    import numpy as np
    import scipy.sparse as sp

    from sparsecoded.design import design_mm
    from sparsecoded.experiments.measure import measure_workers_mm

    rng = np.random.default_rng(3)
    A = sp.csr_array(sp.random_array((90, 40), density=0.1, rng=rng))
    B = sp.csr_array(sp.random_array((40, 36), density=0.1, rng=rng))
    code = design_mm(6, 2, 2, "fine", seed=0, trials=1)
    assert code.owner is not None
    assert code.n_rows > code.n_workers
    ea, oa = code.slots("a")
    eb, ob = code.slots("b")
    # a device's A- (B-) slots are counted once however many products use them
    want_a = _hand_slot_nnz(A, ea, oa, 6)
    want_b = _hand_slot_nnz(sp.csr_array(B.T), eb, ob, 6)
    r = measure_workers_mm(A, B, code, reps=1)
    assert r["device_nnz_a"] == want_a.tolist()
    assert r["device_nnz_b"] == want_b.tolist()
    assert r["device_nnz"] == r["worker_nnz"] == (want_a + want_b).tolist()
    assert r["device_products"] == np.bincount(code.row_owner(), minlength=6).tolist()
    assert r["device_slots_a"] == np.bincount(oa, minlength=6).tolist()
    assert len(r["worker_times"]) == r["devices"] == 6  # per device, not per product row
    assert all(t is not None and t > 0 for t in r["device_time_grouped"])
    assert r["device_nnz_max"] == max(r["device_nnz"])
    x, y = code.device_load(0.1, 0.1)
    assert r["device_load_a"] == pytest.approx(x.tolist())
    assert r["device_load_b"] == pytest.approx(y.tolist())


def test_worker_time_mm_per_device_fields_and_not_applicable(tmp_path):
    rec = _run(
        tmp_path,
        "worker-time",
        "--size",
        "400",
        "300",
        "--b-columns",
        "240",
        "--workers",
        "6",
        "--ka",
        "2",
        "--kb",
        "2",
        "--schemes",
        "coarse,sparse,unified,beta-level,mds,uncoded",
    )
    sch = rec["schemes"]
    assert rec["input_b"]["shape"] == [300, 240]
    assert rec["ours_fine"] == "sparse"
    for name in ("coarse", "sparse", "unified", "mds", "uncoded"):
        r = sch[name]
        assert r["applicable"] is True
        assert r["scheme"] == name
        assert r["devices"] == len(r["device_nnz"]) == len(r["worker_times"]) == 6
        assert r["device_nnz_max"] >= r["device_nnz_median"] > 0
        assert r["device_time_max"] >= r["device_time_median"] > 0
        assert len(r["device_load_a"]) == len(r["device_load_b"]) == 6
        assert r["device_load_max"] > 0
    assert sch["sparse"]["blocks"] != [2, 2]
    assert sch["coarse"]["blocks"] == [2, 2]
    assert max(sch["sparse"]["device_products"]) > 1 == max(sch["coarse"]["device_products"])
    assert sch["beta-level"] == {
        "scheme": "beta-level",
        "applicable": False,
        "reason": "beta-level needs k_a k_b to divide n, got n = 6, k_a k_b = 4",
        "workers": 6,
        "k": 4,
        "mode": "simulated",
    }
    ratio = rec["device_ratios"]["mds/sparse"]
    assert ratio["nnz_max"] == pytest.approx(
        sch["mds"]["device_nnz_max"] / sch["sparse"]["device_nnz_max"]
    )
    assert {"nnz_median", "nnz_max", "time_median", "time_max", "time_grouped_max"} <= set(ratio)
    assert "beta-level/sparse" not in rec["device_ratios"]


def test_worker_time_mv_fine_and_the_authors_schemes(tmp_path):
    rec = _run(
        tmp_path,
        "worker-time",
        "--workers",
        "7,8",
        "--k",
        "4",
        "--schemes",
        "coarse,fine,lcm-optimal,beta-level,mds,uncoded",
    )
    seven, eight = rec["sweep"]
    assert (seven["workers"], eight["workers"]) == (7, 8)
    assert seven["ours_fine"] == "fine"
    assert not seven["schemes"]["beta-level"]["applicable"]  # 4 does not divide 7
    assert "k to divide n" in seven["schemes"]["beta-level"]["reason"]
    assert eight["schemes"]["beta-level"]["applicable"]  # 4 divides 8
    fine, coarse = seven["schemes"]["fine"], seven["schemes"]["coarse"]
    assert fine["blocks"] > 4 == coarse["blocks"]
    assert max(fine["device_rows"]) > 1
    assert len(fine["device_nnz"]) == 7
    assert fine["device_load_max"] > 0
    # the fine design stores less per device than the coarse one (docs/theory.md section 11)
    assert fine["device_load_max"] < coarse["device_load_max"]
    assert "lcm-optimal/fine" in seven["device_ratios"]


def test_worker_time_rejects_schemes_of_the_other_operation(capsys):
    argv = ["experiment", "worker-time", *SMALL, "--schemes", "unified", "--no-progress"]
    assert main(argv) == 2
    assert "unified unknown here" in capsys.readouterr().err
