"""``backend="cuda"`` where there is no GPU (CI, most users): one clear line, never a traceback, from the
stepper factory, the CLI and the Trainer; and the pure-Python parts of benchmarks/bench_gpu.py.

(On a GPU machine the first three check the other way round: the GPU path is taken.)"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from khrbm.config import ConfigError, RunConfig
from khrbm.core.cuda_stepper import gpu_unavailable_reason
from khrbm.core.kernels import make_stepper

REPO = Path(__file__).resolve().parents[1]
NO_GPU = gpu_unavailable_reason() is not None


def _env():
    env = {**os.environ}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return env


def test_make_stepper_cuda_without_gpu_is_one_config_error():
    if not NO_GPU:
        assert type(make_stepper("cuda", 20, 5, 4)).__name__ == "CudaStepper"
        return
    with pytest.raises(ConfigError) as err:
        make_stepper("cuda", 784, 100, 100)
    msg = str(err.value)
    assert "\n" not in msg and err.value.field == "backend"
    assert "'cuda' needs an NVIDIA GPU" in msg and "pip install 'khrbm[cuda]'" in msg and "'numba'" in msg


def test_cli_train_backend_cuda_without_gpu_exits_2_with_one_line(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "bars", "--backend", "cuda", "--n-hidden", 8, "--epochs", 1, "--train-size", 200,
            "--val-size", 100, "--no-progress", "--out", out]
    proc = subprocess.run([sys.executable, "-m", "khrbm", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=_env(), cwd=REPO)
    if not NO_GPU:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("khrbm: error: config field 'backend': 'cuda' needs an NVIDIA GPU")
    assert not (out / "checkpoint.npz").exists()


def test_trainer_backend_cuda_without_gpu_raises_config_error():
    from khrbm.data import load_dataset
    from khrbm.train.trainer import Trainer

    cfg = RunConfig(dataset="bars", backend="cuda", n_hidden=8, train_size=200, val_size=100)
    if not NO_GPU:
        Trainer(cfg, dataset=load_dataset("bars")).close()
        return
    with pytest.raises(ConfigError, match="'cuda' needs an NVIDIA GPU") as err:
        Trainer(cfg, dataset=load_dataset("bars"))
    assert "\n" not in str(err.value)


# -------------------------------------------------------------------------------------------------
# benchmarks/bench_gpu.py without a GPU


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_arguments(bench):
    args = bench.parse_args([])
    assert args.runs == [1, 16, 64] and args.hidden == [100, 500]
    assert args.cases == ["CD-1", "CD-10", "KH_TD-CD1", "KH_BU-CD1"]
    quick = bench.parse_args(["--quick", "--runs", "1", "4"])
    assert quick.runs == [1, 4] and quick.images < args.images
    with pytest.raises(SystemExit):
        bench.parse_args(["--runs", "0"])


def test_bench_gpu_projections(bench):
    """Paper-scale wall times from throughputs: Table I is 16 cRBM runs (M = 100 and 500 × CD-1, KH_TD-CD1,
    CD-10, KH_TD-CD10 × 2 inits), Fig. 4 is 60 KH_TD-CD1 runs at M = 100, each 500 epochs of 60,000."""
    assert bench.PAPER_SAMPLES_PER_RUN == 500 * 60_000
    # the authors' code runs them one after another: Σ samples / rate of each run's case
    rates = {("CD-1", 100): 100e3, ("CD-10", 100): 20e3, ("KH_TD-CD1", 100): 50e3,
             ("CD-1", 500): 100e3, ("CD-10", 500): 20e3, ("KH_TD-CD1", 500): 50e3}
    # KH_TD-CD10 costs CD-10's time plus KH's extra over CD-1: 1/20k + (1/50k - 1/100k) = 1/(16.67k)
    kh10 = 1 / (1 / 20e3 + 1 / 50e3 - 1 / 100e3)
    assert bench.kh_cd10_rate(rates, 100) == pytest.approx(kh10)
    per_m = 2 * 30e6 * (1 / 100e3 + 1 / 50e3 + 1 / 20e3 + 1 / kh10)
    assert bench.table1_sequential_seconds(rates) == pytest.approx(2 * per_m)
    # ours: each M is one lockstep batch of its 8 runs at the measured total samples/s of that batch
    assert bench.table1_batched_seconds({100: 1e6, 500: 4e5}) == pytest.approx(8 * 30e6 / 1e6 + 8 * 30e6 / 4e5)
    # lockstep batches of 64 (one batch holds all 60 runs) at 2M samples/s in total: 31.25k per run
    assert bench.fig4_seconds(2e6, batch=64) == pytest.approx(30e6 / (2e6 / 64))
    assert bench.fig4_seconds(2e6, batch=16) == pytest.approx(4 * 30e6 / (2e6 / 16))
    assert bench.fig4_seconds(50e3, batch=1) == pytest.approx(60 * 30e6 / 50e3)
    assert bench.summary_line(3.04, 25.5) == "gpu: single 3.0x, batched 25.5x vs authors' CuPy"


def test_bench_gpu_report(bench):
    """The printed table, projections and last line, from throughputs as the timing loop returns them."""
    args = bench.parse_args([])
    authors = {"CD-1": 100e3, "CD-10": 20e3, "KH_TD-CD1": 50e3, "KH_BU-CD1": 60e3}
    speed = {}
    for M in (100, 500):
        for case, rate in authors.items():
            speed[("authors", case, M, 1)] = rate
            speed[("contract", case, M, 1)] = 2 * rate
            speed[("graph", case, M, 1)] = 4 * rate
            for R in (1, 16, 64):
                speed[("resident", case, M, R)] = (3 if R == 1 else 10 if R == 16 else 30) * rate
        speed[("table1", "mix", M, 8)] = 400e3
    del speed[("graph", "CD-10", 500, 1)]                  # a failed job shows as "-"
    lines = bench.report(speed, args)
    assert lines[-1] == "gpu: single 2.0x, batched 30.0x vs authors' CuPy"
    assert "| KH_TD-CD1 | 100 | 50,000 | 100,000 (2.0x) | 150,000 (3.0x) | 200,000 (4.0x) | 500,000 (10.0x) | " \
           "1,500,000 (30.0x) |" in lines
    assert any(line.startswith("| CD-10 | 500 | 20,000 | 40,000 (2.0x) | 60,000 (3.0x) | - |") for line in lines)
    table1 = bench.table1_sequential_seconds({(c, M): r for c, r in authors.items() for M in (100, 500)}) / 60
    assert f"authors' CuPy one after another {table1:,.0f} min; ours, one lockstep batch of 8 per M, " \
           f"{2 * 8 * 30e6 / 400e3 / 60:,.1f} min" in "\n".join(lines)
    assert f"ours in batches of 64 {30e6 / (1.5e6 / 64) / 60:,.1f} min" in lines[-2]


def test_bench_gpu_authors_step_matches_the_numpy_transcription(bench):
    """The CuPy reference is bench_step's authors-style step written for any array module: with NumPy and
    the same generator it gives bench_step's numbers exactly."""
    spec = importlib.util.spec_from_file_location("bench_step", REPO / "benchmarks" / "bench_step.py")
    bench_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_step)
    g = np.random.default_rng(0)
    X = (g.random((20, 30)) < 0.3).astype(np.float64)
    X[:, -4:] = np.eye(4)[g.integers(0, 4, 20)]
    for kw in (dict(k=2), dict(kh="td", eps=0.04, delta=0.4), dict(kh="bu", eps=0.01, delta=0.2, n_labels=4)):
        W0 = g.normal(0, 0.1, (30, 7))
        ours = [W0.copy(), np.zeros(30), np.zeros(7)]
        ref = [W0.copy(), np.zeros(30), np.zeros(7)]
        bench.authors_step(np, *ours, X, np.random.default_rng(5).random, **kw)
        bench_step.reference_step(*ref, X, np.random.default_rng(5), **kw)
        for x, y in zip(ours, ref):
            np.testing.assert_array_equal(x, y)


def test_bench_gpu_without_gpu_fails_with_one_line():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--quick"],
                          capture_output=True, text=True, timeout=300, env=_env(), cwd=REPO)
    if not NO_GPU and importlib.util.find_spec("cupy") is not None:
        return          # a GPU machine with CuPy runs the benchmark for real instead
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_gpu: needs an NVIDIA GPU")
