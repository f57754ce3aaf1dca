"""`khrbm sweep`: the spec, the projection, and a real 2-worker Dask LocalCluster on loopback with a worker
killed mid-run (its run resumes from its checkpoint, bit for bit) and a run that fails (recorded, the rest go on)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from khrbm.config import FIELDS, RunConfig

REPO = Path(__file__).resolve().parents[1]
from khrbm.experiments import projection
from khrbm.experiments.sweep import SweepError, expand, run_key


def khrbm(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "khrbm", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def test_spec_crosses_configs_grid_and_seeds_and_keeps_each_config_once():
    spec = {"base": {"dataset": "bars", "epochs": 2},
            "configs": [{"kh_mode": "off"}, {"kh_mode": "bu", "eps0": 0.02}, {"kh_mode": "off"}],
            "grid": {"n_hidden": [10, 20], "init": ["std", "lecun"]}, "seeds": 3}
    configs = expand(spec)
    assert len(configs) == 2 * 2 * 2 * 3                       # the repeated entry adds nothing
    assert {(c.kh_mode, c.n_hidden, c.init, c.seed) for c in configs} == {
        (m, n, i, s) for m in ("off", "bu") for n in (10, 20) for i in ("std", "lecun") for s in (1, 2, 3)}
    assert all(c.dataset == "bars" and c.epochs == 2 for c in configs)
    assert all(c.eps0 == (0.02 if c.kh_mode == "bu" else 0.04) for c in configs)
    assert len({run_key(c) for c in configs}) == len(configs)
    assert run_key(RunConfig(seed=3)) == run_key(RunConfig.from_json(RunConfig(seed=3).to_json()))
    assert expand({"seeds": [5, 9]})[1].seed == 9


def test_yaml_and_json_specs_read_the_same(tmp_path):
    from khrbm.experiments.sweep import load_spec
    (tmp_path / "s.yaml").write_text("base: {dataset: bars, epochs: 2}\ngrid:\n  kh_mode: ['off', bu]\nseeds: [1, 2]\n")
    (tmp_path / "s.json").write_text('{"base": {"dataset": "bars", "epochs": 2}, "grid": {"kh_mode": ["off", "bu"]}, '
                                     '"seeds": [1, 2]}')
    assert load_spec(tmp_path / "s.yaml") == load_spec(tmp_path / "s.json")
    (tmp_path / "bad.yaml").write_text("base: {dataset: bars\n")
    with pytest.raises(SweepError, match="bad.yaml: not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


@pytest.mark.parametrize("spec,fragment", [
    ({"grids": {}}, "unknown sweep key 'grids'"),
    ({"grid": {"n_hiden": [1]}}, "grid field 'n_hiden' is unknown"),
    ({"grid": {"n_hidden": []}}, "needs a non-empty list"),
    ({"base": {"eps0": -1}}, "config field 'eps0': must be a number in [0.0, 10.0]"),
    ({"seeds": 0}, "'seeds' must be at least 1"),
    ({"base": {"kh_mode": False}}, "YAML reads off/on/yes/no as true/false: quote it, 'off'"),
])
def test_bad_spec_is_one_clear_line(spec, fragment):
    with pytest.raises(SweepError) as err:
        expand(spec)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_cli_bad_grid_and_missing_dask_are_one_line(tmp_path):
    proc = khrbm("sweep", "--out", tmp_path, "--grid", "n_hidden=ten")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--grid 'n_hidden=ten'" in proc.stderr
    # without Dask installed (its import fails), the sweep says how to get it, in one line
    code = ("import sys; sys.modules['distributed'] = None; from khrbm.cli import main; "
            f"sys.exit(main(['sweep', '--out', {str(tmp_path / 'o')!r}, '--dataset', 'bars', '--epochs', '1']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "khrbm: error: khrbm sweep needs Dask distributed, which is not installed: "
        "pip install 'khrbm[dist]' (or: pip install 'dask[distributed]')")


def test_projection_says_why_runs_cannot_start_and_does_not_keep_the_reason(tmp_path, monkeypatch):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("KHRBM_DATA_DIR", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = RunConfig(dataset="mnist", n_hidden=8, epochs=1)
    calibration = projection.calibrate([cfg], tmp_path)
    proj = projection.project({"k": cfg}, calibration, {})
    text = proj.describe(2)
    assert "1 of 1 runs cannot start: MNIST not found" in text and "khrbm data fetch mnist" in text
    assert json.loads((tmp_path / projection.CALIBRATION).read_text())["classes"] == {}   # measured again later


def test_projection_adds_kh_plain_evaluation_and_probe_time_and_schedules_longest_first():
    cfg = RunConfig(epochs=10, horizon=4, kh_mode="td", probe_every=5, probe_trials=3)
    seconds = {"kh": 0.02, "plain": 0.01, "eval": 0.5, "trial": 0.1, "probe": 0.05, "batches_per_epoch": 50}
    # 4 KH epochs and 6 plain ones of 50 batches, 11 evaluations, 4*50/5 = 40 probes of 3 trials
    expected = 50 * (4 * 0.02 + 6 * 0.01) + 11 * 0.5 + 40 * (0.05 + 3 * 0.1)
    assert projection.run_seconds(cfg, seconds) == pytest.approx(expected)
    # resumed after 6 epochs: no KH left, 4 plain epochs and 4 evaluations
    assert projection.run_seconds(cfg, seconds, epochs_done=6) == pytest.approx(50 * 4 * 0.01 + 4 * 0.5)
    proj = projection.Projection(4, 16.0, (7.0, 5.0, 2.0, 2.0))
    assert proj.wall_seconds(1) == 16.0 and proj.wall_seconds(2) == 9.0 and proj.wall_seconds(8) == 7.0


def test_two_worker_cluster_survives_a_killed_worker_and_records_a_failed_run(tmp_path, mnist_dir):
    from distributed import Client, LocalCluster

    from khrbm.experiments.sweep import WORKER_ENV, read_table

    base = {"dataset": "mnist", "n_hidden": 48, "train_size": 3000, "val_size": 500, "epochs": 8}
    spec = {"base": base, "configs": [{"kh_mode": "td", "radius": 0.1}, {"kh_mode": "off"},
                                      {"kh_mode": "bu", "ell": 48}], "seeds": 1}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "sweep"
    td, plain, bad = expand(spec)
    target = out / "runs" / run_key(td)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=WORKER_ENV) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        cmd = [sys.executable, "-m", "khrbm", "sweep", str(tmp_path / "spec.json"), "--out", str(out),
               "--scheduler", cluster.scheduler_address, "--no-progress"]
        sweep = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed, deadline = None, time.time() + 240
        while killed is None and time.time() < deadline and sweep.poll() is None:
            time.sleep(0.02)
            # killed once its first epoch is both checkpointed and logged (the two writes are not one)
            log = target / "train.log"
            if ((target / "checkpoint.npz").exists() and not (target / "result.json").exists()
                    and log.exists() and "epoch 1/8 ·" in log.read_text()):
                for addr, keys in client.processing().items():
                    if f"khrbm-run-{target.name}" in keys:
                        os.kill(pids[addr], signal.SIGKILL)
                        killed = addr
        _, err = sweep.communicate(timeout=300)
        assert killed, f"the KH run was not caught mid-run: {err}"
        assert sweep.returncode == 1, err                    # one run failed; the others finished
        assert "2 of 3 runs done" in err and run_key(bad) in err

    log = (target / "train.log").read_text()          # the killed run continued from its last epoch's checkpoint
    resumed = [int(m) for m in re.findall(r"resuming from step (\d+)", log)]
    assert len(resumed) == 1 and 0 < resumed[0] < 8 * 30 and resumed[0] % 30 == 0, log
    assert log.count("epoch 1/8 ·") == 1 and log.count("epoch 8/8 ·") == 1
    manifest = json.loads((target / "run.json").read_text())
    assert (manifest["source"], manifest["state"]) == ("sweep", "finished")
    assert manifest["group_uid"] == json.loads((out / "sweep.json").read_text())["uid"]
    listed = khrbm("runs", "list", "--source", "sweep", "--json", timeout=60)
    recorded = [r for r in json.loads(listed.stdout) if r.get("group_uid") == manifest["group_uid"]]
    assert sorted(r["state"] for r in recorded) == ["finished", "finished"], listed.stdout[:2000]
    straight = tmp_path / "straight"
    (tmp_path / "td.json").write_text(td.to_json())
    proc = khrbm("train", "--config", tmp_path / "td.json", "--out", straight, "--no-progress",
                 env={"NUMBA_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(target / "checkpoint.npz") as a, np.load(straight / "checkpoint.npz") as b:
        for name in ("W", "a", "b", "history", "xi_history", "win_td", "inhibit_td"):
            assert np.array_equal(a[name], b[name], equal_nan=True), name

    table = read_table(out)
    assert set(table.columns) >= {"run", "status", "epochs_done", "error", *(f.name for f in FIELDS), "val_mse",
                                  "accuracy", "overlap", "samples_per_second"}
    for cfg in (td, plain):
        rows = table[table["run"] == run_key(cfg)]
        assert list(rows["epoch"]) == list(range(9)) and set(rows["status"]) == {"done"}
        assert set(rows["kh_mode"]) == {cfg.kh_mode} and set(rows["epochs_done"]) == {8}
        assert rows["val_mse"].iloc[-1] < rows["val_mse"].iloc[0]
    failed = table[table["run"] == run_key(bad)]
    assert len(failed) == 1 and failed["status"].iloc[0] == "failed"
    assert "must be below the 48 postsynaptic units" in failed["error"].iloc[0]
    csv_rows = (out / "table.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 9 + 9 + 1

    # the same command again: finished runs are skipped, the failed one stays recorded (no cluster is needed)
    before = (target / "result.json").stat().st_mtime_ns
    again = khrbm("sweep", tmp_path / "spec.json", "--out", out, "--no-progress", timeout=120)
    assert again.returncode == 1 and "nothing to run" in again.stderr
    assert (target / "result.json").stat().st_mtime_ns == before


USER_SCRIPT = """
from khrbm.config import RunConfig
from khrbm.experiments.sweep import run_sweep

if __name__ == "__main__":
    cfg = RunConfig(dataset="bars", n_hidden=8, epochs=1, train_size=200, val_size=100)
    print("STATUS", sorted({r["status"] for r in run_sweep([cfg], OUT, workers=1, progress=False)}))
"""


def test_a_users_script_sweeps_with_a_cold_numba_cache(tmp_path):
    """A script that imports khrbm at the top (its spawned workers then import Numba before Dask sets their
    environment) on a fresh install (nothing compiled yet): the workers compile the kernels and the run finishes.
    (Once failed: a NUMBA_NUM_THREADS set by the worker environment after Numba's pool started broke every
    compilation.)"""
    script = tmp_path / "my_sweep.py"
    script.write_text(USER_SCRIPT.replace("OUT", repr(str(tmp_path / "out"))))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert "STATUS ['done']" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))          # it really compiled, from nothing
