"""Faults a headless run meets, each as the issue's probe met it: real processes, real files, real signals,
real file systems (a full or read-only tmpfs when we may mount one; else a file-size limit / a read-only
folder, which fail the same writes for real)."""
import contextlib
import csv
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from khrbm.config import ConfigError, RunConfig
from khrbm.train.checkpoint import load_npz, read_checkpoint, write_npz_atomic
from khrbm.train.outputs import LOCK_NAME, TEMP_SUFFIX

BARS = ["--dataset", "bars", "--n-hidden", 24, "--train-size", 1000, "--val-size", 300, "--no-progress",
        "--backend", "numpy"]
OUTPUTS = ("config.json", "metrics.json", "metrics.csv", "result.json", "checkpoint.npz")


INTERRUPTED_LINES = ("khrbm: interrupted", "khrbm: interrupted while compiling the kernels")


def khrbm_cmd(*args):
    return [sys.executable, "-m", "khrbm", *map(str, args)]


def khrbm(*args, timeout=300, **kw):
    return subprocess.run(khrbm_cmd(*args), capture_output=True, text=True, timeout=timeout, **kw)


def one_error_line(proc) -> str:
    """The error line of a failed command: exit 2, its last line, the only error line, no traceback (the
    epoch summaries before it stay)."""
    lines = proc.stderr.strip().splitlines()
    errors = [x for x in lines if x.startswith("khrbm: error: ")]
    assert proc.returncode == 2 and errors == lines[-1:] and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


def assert_outputs_whole(folder):
    """Every output file present is complete: none empty, each parses; no temp file is left."""
    for name in OUTPUTS:
        path = folder / name
        if not path.exists():
            continue
        assert path.stat().st_size > 0, name
        if name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".csv"):
            assert list(csv.DictReader(open(path)))
        else:
            read_checkpoint(path)
    assert not list(folder.glob("*" + TEMP_SUFFIX))


@contextlib.contextmanager
def tmpfs(path, options):
    """Mount a real tmpfs at ``path``; yields False (and mounts nothing) where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def write_limit(max_bytes):
    """preexec_fn: files of this process may not grow past ``max_bytes`` (EFBIG, SIGXFSZ ignored)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


# ---------------------------------------------------------------------------------------------- 1. divergence

def test_divergence_keeps_the_last_finite_checkpoint_and_resume_still_loads(tmp_path):
    out = tmp_path / "run"
    assert khrbm("train", *BARS, "--epochs", 1, "--out", out).returncode == 0
    state = load_npz(out / "checkpoint.npz")
    state["W"][:5] = 1e35                            # the repro: finite, about to overflow
    write_npz_atomic(out / "checkpoint.npz", state)
    kept = (out / "checkpoint.npz").read_bytes()

    proc = khrbm("train", "--resume", out / "checkpoint.npz", "--out", out, "--epochs", 3,
                 "--kh-mode", "bu", "--p", 10, "--eps0", 1)
    line = one_error_line(proc)
    assert "weights became NaN at step 11 (epoch 1.10) — the KH step ε0 = 1 is large" in line
    assert f"{out / 'checkpoint.npz'} keeps the last complete finite state (step 10)" in line
    assert f"the diverged state is in {out / 'checkpoint.diverged.npz'}" in line
    assert (out / "checkpoint.npz").read_bytes() == kept
    with np.load(out / "checkpoint.diverged.npz", allow_pickle=False) as diverged:
        assert int(diverged["step"]) == 11 and not np.isfinite(diverged["W"]).all()

    # the folder's checkpoint still loads; with gentle settings the same rule as the Trainer's (max |θ| > 1e4)
    # still calls 1e35 diverged, and an already finished run resumes to its end
    again = khrbm("train", "--resume", out / "checkpoint.npz", "--out", out, "--epochs", 3)
    assert "weights exploded (max |θ| = 1e+35 > 10000) at step 11" in one_error_line(again)
    assert (out / "checkpoint.npz").read_bytes() == kept
    done = khrbm("train", "--resume", out / "checkpoint.npz", "--out", out, "--epochs", 1)
    assert done.returncode == 0 and "nothing to train" in done.stderr


def test_one_divergence_rule_for_run_cli_and_trainer():
    from khrbm.train.run import EXPLODE, Run
    from khrbm.train.trainer import Trainer

    cfg = RunConfig(dataset="bars", n_hidden=6, train_size=200, val_size=50, backend="numpy", eval_size=50)
    run = Run(cfg)
    assert run.divergence() is None
    for name, value, what in (("W", np.nan, "became NaN"), ("a", -np.inf, "became infinite"),
                              ("b", -2 * EXPLODE, "exploded (max |θ| = 2e+04 > 10000)"), ("W", EXPLODE, None)):
        fresh = Run(cfg)
        getattr(fresh.params, name)[0] = value
        problem = fresh.divergence()
        assert (problem is None) if what is None else problem.startswith(f"weights {what} at step 0 (epoch 0.00)")
    with Trainer(cfg) as trainer:
        trainer.sync(60)
        trainer._inject(lambda runs: runs[0].params.b.__setitem__(0, 3 * EXPLODE))
        trainer.step(1)
        snap = trainer.wait_for(lambda s: s.state == "diverged", 60)
        assert snap.message.startswith("weights exploded (max |θ| = 3e+04 > 10000) at step 1")
        assert snap.message.endswith("; lower η or ε0 and Reset")


# ---------------------------------------------------------------------------------------------- 2. --out

def test_unusable_out_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_error_line(khrbm("train", *BARS, "--epochs", 1, "--out", tmp_path / "file"))
    assert line == f"khrbm: error: output folder {tmp_path / 'file'} exists and is not a folder"
    line = one_error_line(khrbm("train", *BARS, "--epochs", 1, "--out", tmp_path / "file" / "sub"))
    assert line == f"khrbm: error: cannot create output folder {tmp_path / 'file' / 'sub'}: Not a directory"
    line = one_error_line(khrbm("train", *BARS, "--epochs", 1, "--out", "/proc/x"))
    assert line == "khrbm: error: cannot create output folder /proc/x: No such file or directory"


def test_read_only_out_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    with tmpfs(ro, "ro,size=1m") as mounted:
        if not mounted:
            ro.chmod(0o555)                          # not root: a folder we may not write into
        line = one_error_line(khrbm("train", *BARS, "--epochs", 1, "--out", ro))
        assert line.startswith(f"khrbm: error: cannot write into output folder {ro}: ")
        assert line.endswith("Read-only file system" if mounted else "Permission denied")
        line = one_error_line(khrbm("train", *BARS, "--epochs", 1, "--out", ro / "sub"))
        assert line.startswith(f"khrbm: error: cannot create output folder {ro / 'sub'}: ")


def test_full_disk_mid_run_loses_nothing(tmp_path):
    """A 160 KiB file system holds config, metrics and one checkpoint (~95 KB), not a second one beside it:
    the write of epoch 2's checkpoint fails. Without mount rights, a 60 KB file-size limit fails the first
    checkpoint instead. Either way: one line, every file whole, and the last checkpoint resumes exactly."""
    full = tmp_path / "full"
    common = [*BARS, "--epochs", 3, "--kh-mode", "bu", "--eps0", 0.02]
    with tmpfs(full, "size=160k") as mounted:
        proc = khrbm("train", *common, "--out", full, preexec_fn=None if mounted else write_limit(60_000))
        line = one_error_line(proc)
        reason = "No space left on device" if mounted else "File too large"
        assert f"cannot write {full / 'checkpoint.npz'}: {reason}" in line
        assert_outputs_whole(full)
        assert RunConfig.load(full / "config.json").epochs == 3
        if mounted:
            assert line.endswith(f"{full / 'checkpoint.npz'} keeps the last complete finite state (step 10)")
            assert int(read_checkpoint(full / "checkpoint.npz")["step"]) == 10
            assert [r["step"] for r in csv.DictReader(open(full / "metrics.csv"))] == ["0", "10", "20"]
            more = tmp_path / "more"
            assert khrbm("train", "--resume", full / "checkpoint.npz", "--out", more).returncode == 0
            assert khrbm("train", *common, "--out", tmp_path / "straight").returncode == 0
            with np.load(more / "checkpoint.npz") as a, np.load(tmp_path / "straight" / "checkpoint.npz") as b:
                assert np.array_equal(a["W"], b["W"]) and int(a["step"]) == 30
        else:
            assert line.endswith("no finite checkpoint of this run was written yet")


# ---------------------------------------------------------------------------------------------- 3. lock

def test_a_second_run_into_the_same_folder_is_refused_and_a_killed_run_does_not_block(tmp_path):
    out = tmp_path / "shared"
    first = subprocess.Popen(khrbm_cmd("train", *BARS, "--epochs", 100000, "--seed", 1, "--out", out),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert (out / LOCK_NAME).read_text().strip() == str(first.pid)
        second = khrbm("train", *BARS, "--epochs", 1, "--seed", 2, "--out", out)
        assert one_error_line(second) == (f"khrbm: error: output folder {out} is in use by another khrbm run "
                                          f"(pid {first.pid}); wait for it to finish or choose another --out")
        assert RunConfig.load(out / "config.json").seed == 1
    finally:
        first.kill()                                  # SIGKILL: no chance to release anything itself
        first.wait()
    third = khrbm("train", *BARS, "--epochs", 1, "--seed", 3, "--out", out)
    assert third.returncode == 0, third.stderr
    assert RunConfig.load(out / "config.json").seed == 3 and int(read_checkpoint(out / "checkpoint.npz")["step"]) == 10


# ---------------------------------------------------------------------------------------------- 10. leftovers

def test_stale_temp_file_of_a_killed_writer_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    writer = ("import sys, numpy as np\nfrom khrbm.train.checkpoint import write_npz_atomic\n"
              "x = np.zeros(8_000_000, np.uint8)\n"
              "while True:\n    write_npz_atomic(sys.argv[1], {'x': x})\n")
    for _attempt in range(5):                        # SIGKILL while a temp file exists (nearly always at once)
        proc = subprocess.Popen([sys.executable, "-c", writer, str(out / "checkpoint.npz")])
        deadline = time.monotonic() + 60
        while not list(out.glob("*" + TEMP_SUFFIX)) and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.kill()
        proc.wait()
        if list(out.glob("*" + TEMP_SUFFIX)):
            break
    stale = list(out.glob("*" + TEMP_SUFFIX))
    assert stale and stale[0].name.startswith("checkpoint.npz.")
    if (out / "checkpoint.npz").exists():             # the old checkpoint is whole whenever the kill came
        assert load_npz(out / "checkpoint.npz")["x"].shape == (8_000_000,)
    proc = khrbm("train", *BARS, "--epochs", 1, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert_outputs_whole(out)


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(khrbm_cmd("train", *BARS[:-2], "--backend", "numba", "--epochs", 1000, "--out", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / LOCK_NAME).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)                  # the data are loaded, the folder locked: compiling (or training)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last in INTERRUPTED_LINES or last.startswith("interrupted at step "), err


@pytest.mark.parametrize("after", [1.0, 3.0, 6.0])
def test_ctrl_c_while_compiling_the_kernels_from_nothing_stops_the_run(tmp_path, after):
    """With no kernel cached yet (a newcomer's first run), Ctrl-C lands while Numba compiles. Raised inside the
    compiler, the KeyboardInterrupt was swallowed by one of its ctypes callbacks: the run went on training
    (seen after 4 and 10 s), or died of "RuntimeError: no compiled object yet" (after 6 s)."""
    out = tmp_path / "run"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    proc = subprocess.Popen(khrbm_cmd("train", *BARS[:-2], "--backend", "numba", "--epochs", 1000, "--out", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / LOCK_NAME).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)            # a lost signal: 1000 epochs trained, exit 0
    assert proc.returncode == 130 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last in INTERRUPTED_LINES or last.startswith("interrupted at step 0;"), err


def test_sigterm_during_training_saves_a_checkpoint_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(khrbm_cmd("train", *BARS, "--epochs", 100000, "--out", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "metrics.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)                 # what a cluster's scheduler sends before it kills a job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    step = int(read_checkpoint(out / "checkpoint.npz")["step"])
    assert err.strip().splitlines()[-1] == f"interrupted at step {step}; resume with --resume {out / 'checkpoint.npz'}"


def test_resume_with_fewer_epochs_than_done_says_so(tmp_path):
    out = tmp_path / "run"
    first = khrbm("train", *BARS, "--epochs", 2, "--out", out)
    assert first.returncode == 0 and "compiling" not in first.stderr   # nothing is compiled for numpy
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    fewer = khrbm("train", "--resume", out / "checkpoint.npz", "--epochs", 1, "--out", out)
    assert one_error_line(fewer) == ("khrbm: error: the checkpoint has trained 2 epochs (step 20), more than "
                                     "the 1 asked for; give --epochs 2 or more to continue it")
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    same = khrbm("train", "--resume", out / "checkpoint.npz", "--epochs", 2, "--out", out)
    assert same.returncode == 0
    assert "note: the checkpoint is already at epoch 2 (step 20); nothing to train" in same.stderr


def test_update_after_close_still_checks_then_says_closed():
    from khrbm.train.trainer import Trainer

    trainer = Trainer(RunConfig(dataset="bars", n_hidden=6, train_size=200, val_size=50, backend="numpy"))
    trainer.close(30)
    with pytest.raises(ConfigError, match="'eps0': must be a number in"):
        trainer.update(eps0=-1)
    with pytest.raises(RuntimeError, match="the trainer is closed"):
        trainer.update(eps0=0.1)
