"""`khrbm train` end to end, as a user runs it: real processes, real files, real MNIST."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from khrbm.config import RunConfig


def khrbm(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "khrbm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ}, **kw)


BARS = ["--dataset", "bars", "--n-hidden", 24, "--train-size", 1000, "--val-size", 300, "--no-progress"]


def test_train_on_bars_writes_config_metrics_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = khrbm("train", *BARS, "--epochs", 3, "--kh-mode", "bu", "--eps0", 0.02, "--out", out)
    assert proc.returncode == 0, proc.stderr
    cfg = RunConfig.load(out / "config.json")
    assert (cfg.dataset, cfg.n_hidden, cfg.kh_mode, cfg.epochs) == ("bars", 24, "bu", 3)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [float(r["epoch"]) for r in rows] == [0.0, 1.0, 2.0, 3.0]
    assert float(rows[-1]["val_mse"]) < float(rows[0]["val_mse"])
    assert json.loads((out / "metrics.json").read_text())[-1]["step"] == 30
    with np.load(out / "checkpoint.npz", allow_pickle=False) as ck:
        assert ck["W"].shape == (784, 24) and ck["W"].dtype == np.float32 and int(ck["step"]) == 30
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["val_mse"] == pytest.approx(float(rows[-1]["val_mse"]))
    result = json.loads((out / "result.json").read_text())
    assert result["samples_per_second"] > 0
    assert 0 <= result["evaluate_seconds_step0"] < result["evaluate_seconds_this_session"]   # 1 of the 4 points


def test_train_on_real_mnist_with_kh_td(tmp_path, mnist_dir):
    from khrbm.data import load_dataset
    notice = load_dataset("mnist").notice          # "" for the full set, a note for a partial one
    out = tmp_path / "mnist"
    proc = khrbm("train", "--dataset", "mnist", "--n-hidden", 50, "--train-size", 4000, "--val-size", 2000,
                 "--epochs", 2, "--kh-mode", "td", "--radius", 0.1, "--no-progress", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (f"note: {notice}" in proc.stderr) if notice else ("note:" not in proc.stderr)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert float(rows[-1]["val_mse"]) < 0.5 * float(rows[0]["val_mse"])
    assert 0 < float(rows[-1]["overlap"]) < 1


@pytest.mark.parametrize("flags,fragment", [
    (["--eps0", "-1"], "config field 'eps0': must be a number in [0.0, 10.0], got -1.0"),
    (["--kh-mode", "sideways"], "config field 'kh_mode': must be one of off, td, bu"),
    (["--n-hidden", "0"], "config field 'n_hidden': must be an integer in [1, 10000]"),
])
def test_invalid_flag_is_one_line_and_exit_2(tmp_path, flags, fragment):
    proc = khrbm("train", *BARS, *flags, "--out", tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def test_malformed_config_file_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"n_hidden": 100, "eps0": }')
    proc = khrbm("train", "--config", bad, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    bad.write_text('{"n_hiden": 100}')
    proc = khrbm("train", "--config", bad, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "'n_hiden': unknown field" in proc.stderr


def test_corrupt_checkpoint_exit_2(tmp_path):
    bad = tmp_path / "ck.npz"
    bad.write_bytes(b"\x00" * 100)
    proc = khrbm("train", "--resume", bad, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "not a readable .npz checkpoint" in proc.stderr


def test_resume_equals_uninterrupted_run(tmp_path):
    common = [*BARS, "--kh-mode", "td", "--radius", 1.0, "--horizon", 3, "--sampler", "pcd"]
    assert khrbm("train", *common, "--epochs", 3, "--out", tmp_path / "straight").returncode == 0
    assert khrbm("train", *common, "--epochs", 1, "--out", tmp_path / "part").returncode == 0
    proc = khrbm("train", "--resume", tmp_path / "part" / "checkpoint.npz", "--epochs", 3, "--out", tmp_path / "part")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "straight" / "checkpoint.npz") as a, np.load(tmp_path / "part" / "checkpoint.npz") as b:
        for name in ("W", "a", "b", "chain", "history", "win_td"):
            assert np.array_equal(a[name], b[name], equal_nan=True), name


def test_interrupt_saves_a_checkpoint_that_resumes_identically(tmp_path):
    common = [*BARS, "--n-hidden", 64, "--epochs", 6, "--backend", "numpy", "--kh-mode", "bu"]
    assert khrbm("train", *common, "--out", tmp_path / "straight").returncode == 0
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "khrbm", "train", *map(str, common), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.csv").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err
    if proc.returncode == 130:
        with np.load(out / "checkpoint.npz") as cut:
            assert 10 <= int(cut["step"]) < 60 and f"interrupted at step {int(cut['step'])}" in err
    resumed = khrbm("train", "--resume", out / "checkpoint.npz", "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    with np.load(tmp_path / "straight" / "checkpoint.npz") as a, np.load(out / "checkpoint.npz") as b:
        assert int(a["step"]) == int(b["step"]) == 60
        assert np.array_equal(a["W"], b["W"]) and np.array_equal(a["b"], b["b"])
