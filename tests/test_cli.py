"""The command line's manners: version, exit codes, pipes, and hostile input files.

Every file that cannot be loaded is refused with one line on standard error and
exit code 1: never a traceback, never an attempt to allocate what a header declares.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import sparsecoded
from sparsecoded.cli import main

pytest.importorskip("sparsecoded.experiments.inputs")

from sparsecoded.experiments.inputs import (  # noqa: E402
    MatrixFileError,
    check_matrix_file,
    load_matrix,
)

SMALL = ["--workers", "4", "--k", "3", "--schemes", "sparse", "--reps", "1", "--no-progress"]


def _cli(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparsecoded", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def _refused(path, capsys, message: str) -> str:
    """worker-time on ``path`` exits 1 with one line naming ``message``."""
    assert main(["experiment", "worker-time", "--matrix", str(path), *SMALL]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.count("\n") == 1, err
    assert err.startswith("sparsecoded experiment: error: matrix file")
    assert "Traceback" not in err
    assert message in err, err
    return err


# ----------------------------------------------------------------------------- manners


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"sparsecoded {sparsecoded.__version__}"


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["experiment", "no-such-experiment"])
    assert exc.value.code == 2
    assert main(["design", "--workers", "5", "--k", "7"]) == 2
    assert "k must be <= n_workers" in capsys.readouterr().err


def test_design_json_into_a_closed_pipe_is_quiet():
    # `sparsecoded design --json | head -c 10`: the reader leaves early
    cmd = f"{sys.executable} -m sparsecoded design --workers 12 --k 9 --json | head -c 10"
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert out.stdout == '{\n  "kind"'[:10]
    assert out.stderr == ""


def test_ctrl_c_exits_130_without_a_traceback():
    # a long experiment, interrupted once it is running
    argv = ["experiment", "stability", "--workers", "24,24,24,24", "--stragglers", "4"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparsecoded", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().endswith("interrupted")


def test_json_dash_is_stdout_and_parses():
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    out = _cli(
        "experiment",
        "worker-time",
        "--size",
        "200",
        "100",
        *SMALL,
        "--json",
        "-",
        "--blas-threads",
        "2",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["experiment"] == "worker-time"
    # set before numpy loaded BLAS, which reads it once
    assert record["blas_threads"]["env"]["OPENBLAS_NUM_THREADS"] == "2"
    assert "worker-time: mode simulated" in out.stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal():
    out = _cli("experiment", "stability", "--workers", "5", "--stragglers", "1", "--trials", "1")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no tqdm bar: stderr is a pipe here


def test_missing_matrix_is_reported_before_any_work(tmp_path, capsys):
    # a huge random size would take minutes: the file check comes first
    argv = ["experiment", "completion", "--matrix", str(tmp_path / "nope.mtx"), "--no-progress"]
    t0 = time.perf_counter()
    assert main(argv) == 1
    assert time.perf_counter() - t0 < 5
    assert "nope.mtx: no such file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- hostile files


def _write(path, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    return path


HUGE = "%%MatrixMarket matrix coordinate real general\n2000000000 2000000000 2\n1 1 1.0\n2 2 1.0\n"


def test_the_huge_declared_matrix_is_86_bytes():
    assert len(HUGE) == 86


def test_huge_declared_size_is_refused_before_allocating(tmp_path):
    # under a 1.5 GiB address-space limit: an attempt to allocate 2e9-long arrays would fail
    path = _write(tmp_path / "huge.mtx", HUGE)
    code = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
        from sparsecoded.cli import main
        sys.exit(main(["experiment", "worker-time", "--matrix", {str(path)!r}, "--no-progress"]))
        """
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert "declares a 2000000000 x 2000000000 matrix with 2 entries" in out.stderr
    assert "GiB" in out.stderr
    assert "Traceback" not in out.stderr
    assert "MemoryError" not in out.stderr


def test_huge_declared_size_is_refused_without_a_limit_too(tmp_path, capsys):
    # 2e9 rows and columns need about 60 GiB of index arrays: more than this machine has
    _refused(_write(tmp_path / "huge.mtx", HUGE), capsys, "more than the")


def test_huge_array_format_is_refused(tmp_path, capsys):
    path = _write(
        tmp_path / "a.mtx", "%%MatrixMarket matrix array real general\n100000000 100000\n1\n"
    )
    _refused(path, capsys, "declares a 100000000 x 100000 matrix")


def test_complex_matrix_is_refused(tmp_path, capsys):
    path = _write(
        tmp_path / "c.mtx",
        "%%MatrixMarket matrix coordinate complex general\n2 2 1\n1 1 1.0 2.0\n",
    )
    err = _refused(path, capsys, "is a complex matrix")
    assert "imaginary" in err


def test_complex_npz_is_refused(tmp_path, capsys):
    path = tmp_path / "c.npz"
    sp.save_npz(path, sp.csr_array(np.array([[1 + 2j, 0], [0, 1]])))
    _refused(path, capsys, "is a complex matrix")


def test_directory_says_it_is_a_directory(tmp_path, capsys):
    _refused(tmp_path, capsys, "is a directory")


def test_unreadable_file(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = _write(tmp_path / "m.mtx", HUGE)
    path.chmod(0)
    _refused(path, capsys, "permission denied")


def _good_gz(tmp_path) -> bytes:
    A = sp.random_array((300, 200), density=0.05, rng=np.random.default_rng(1))
    scipy.io.mmwrite(str(tmp_path / "good.mtx"), A)
    return gzip.compress((tmp_path / "good.mtx").read_bytes())


def test_truncated_gzip(tmp_path, capsys):
    data = _good_gz(tmp_path)
    path = _write(tmp_path / "t.mtx.gz", data[: len(data) // 2])
    _refused(path, capsys, "is corrupt or truncated")


def test_bit_flipped_gzip(tmp_path, capsys):
    data = bytearray(_good_gz(tmp_path))
    for i in range(len(data) // 3, len(data) - 8, 97):  # damage the deflate stream, not the header
        data[i] ^= 0x5A
    path = _write(tmp_path / "f.mtx.gz", bytes(data))
    assert main(["experiment", "worker-time", "--matrix", str(path), *SMALL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "matrix file" in err


def test_bare_gzip_header(tmp_path, capsys):
    path = _write(tmp_path / "h.mtx.gz", gzip.compress(b"")[:10])
    _refused(path, capsys, "is corrupt or truncated")


def test_not_a_matrix_market_file(tmp_path, capsys):
    _refused(_write(tmp_path / "x.mtx", "hello\n"), capsys, "not a Matrix Market file")


def test_bad_size_line(tmp_path, capsys):
    path = _write(tmp_path / "s.mtx", "%%MatrixMarket matrix coordinate real general\n% c\n3 x 1\n")
    _refused(path, capsys, "expected 3 integers")


def test_fewer_entries_than_declared(tmp_path, capsys):
    path = _write(
        tmp_path / "e.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 5\n1 1 1\n"
    )
    _refused(path, capsys, "cannot be read")


def test_corrupt_npz(tmp_path, capsys):
    path = tmp_path / "m.npz"
    sp.save_npz(path, sp.csr_array(np.eye(3)))
    data = path.read_bytes()
    _write(path, data[: len(data) // 2])
    err = _refused(path, capsys, "matrix file")
    assert "corrupt" in err or "cannot be read" in err


def test_npz_declaring_a_huge_array_is_refused(tmp_path, capsys):
    # a well-formed zip (CRCs right) whose data.npy header claims 2e9 entries it does not hold
    import io
    import zipfile

    M = sp.csr_array(np.eye(3))
    arrays = {
        "indices": M.indices,
        "indptr": M.indptr,
        "format": np.array("csr"),
        "shape": np.array(M.shape),
        "data": M.data,
    }
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            raw = buf.getvalue()
            if name == "data":
                raw = raw.replace(b"'shape': (3,), ", b"'shape': (2000000000,), ", 1)
            zf.writestr(name + ".npy", raw)
    _refused(path, capsys, "array 'data' declares shape (2000000000,)")


# ----------------------------------------------------------------------------- good files


def test_npz_and_gz_load_like_mtx(tmp_path):
    A = sp.random_array((60, 40), density=0.1, rng=np.random.default_rng(2), format="csr")
    sp.save_npz(tmp_path / "a.npz", A)
    scipy.io.mmwrite(str(tmp_path / "a.mtx"), A)
    (tmp_path / "a.mtx.gz").write_bytes(gzip.compress((tmp_path / "a.mtx").read_bytes()))
    for name in ("a.npz", "a.mtx", "a.mtx.gz"):
        B = load_matrix(tmp_path / name)
        assert B.dtype == np.float64
        assert B.shape == (60, 40)
        assert abs(B - A).max() < 1e-12
    head = check_matrix_file(tmp_path / "a.mtx")
    assert head["shape"] == (60, 40)
    assert head["nnz"] == A.nnz


def test_worker_time_on_an_npz_file(tmp_path, capsys):
    A = sp.random_array((300, 200), density=0.05, rng=np.random.default_rng(1), format="csr")
    sp.save_npz(tmp_path / "m.npz", A)
    argv = ["experiment", "worker-time", "--matrix", str(tmp_path / "m.npz"), *SMALL]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["input"]["shape"] == [300, 200]
    assert record["input"]["name"] == "m"


def test_matrix_file_error_is_an_oserror():
    with pytest.raises(MatrixFileError, match="no such file"):
        load_matrix("/no/such/file.mtx")
    assert issubclass(MatrixFileError, OSError)
