"""The run registry: migrations from the first schema, many writer processes at once, writers killed mid-transaction,
a registry that cannot be written never costs a run, run folders re-import, the app's recorder, setups, lessons."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from khrbm.config import ConfigError, RunConfig
from khrbm.data import load_dataset
from khrbm.store import Registry, RegistryError, TrainerRecorder, import_folder, open_run
from khrbm.store.db import SCHEMA_VERSION, migrate
from khrbm.store.folder import DECIMATION, Decimator
from khrbm.train.lesson import load_lesson
from khrbm.train.run import HISTORY_KEYS
from khrbm.train.trainer import Trainer

DEADLINE = 120.0
BARS = ["--dataset", "bars", "--n-hidden", 24, "--train-size", 1000, "--val-size", 300, "--no-progress"]
SMALL = dict(dataset="bars", n_hidden=16, train_size=600, val_size=200, eval_size=100, epochs=3, batch_size=50,
             radius=1.0, kh_mode="td")

# A writer process: waits for the "go" file, then records n runs (7 transactions each) and logs each run's uid
# after its last commit has returned. With "hold", it then opens a transaction, inserts a run and sleeps.
WRITER = r'''
import os, sys, time, uuid
from khrbm.config import RunConfig
from khrbm.store import Registry
from khrbm.train.snapshot import Change
path, log_path, go, n_runs, seed, hold = sys.argv[1:7]
while not os.path.exists(go):
    time.sleep(0.002)
reg = Registry(path, timeout=60)
log = open(log_path, "a")
for r in range(int(n_runs)):
    uid = uuid.uuid4().hex
    cfg = RunConfig(dataset="bars", epochs=5, seed=int(seed) * 1000 + r)
    reg.put_run(uid, cfg, source="sweep", out_dir=f"/runs/{uid}")
    for e in range(5):
        reg.put_run(uid, cfg, source="sweep", steps=10 * (e + 1), epoch=e + 1.0,
                    points=[{"step": 10 * (e + 1), "epoch": e + 1.0, "val_mse": 0.5 / (e + 1)}],
                    changes=[(e, Change(10 * (e + 1), e + 1.0, "A", "lr", 0.1, 0.1 * (e + 2)))])
    reg.put_run(uid, cfg, source="sweep", state="finished", ended=time.time(), final={"val_mse": 0.1})
    log.write(uid + "\n"); log.flush(); os.fsync(log.fileno())
if hold == "hold":
    with reg.transaction() as conn:
        conn.execute("INSERT INTO runs (uid, source, state, config, started, updated) "
                     "VALUES ('uncommitted-run', 'sweep', 'running', '{}', 0, 0)")
        open(log_path + ".inside", "w").close()
        time.sleep(600)
'''


def khrbm(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "khrbm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def bars():
    return load_dataset("bars")


@pytest.fixture
def recorded(tmp_path):
    """(registry path, a TrainerRecorder writing there, its run folders under tmp_path/runs)."""
    path = tmp_path / "r.sqlite"
    return path, TrainerRecorder(path, tmp_path / "runs")


def v1_database(path):
    """A registry at schema version 1 (the first shipped one) holding one run with a change and two points."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, target=1)
    conn.execute("INSERT INTO runs (uid, source, state, config, started, updated, steps, epoch, final, out_dir) "
                 "VALUES ('v1-run-0001', 'train', 'finished', ?, 100.0, 200.0, 30, 3.0, ?, '/old/run')",
                 (RunConfig(dataset="bars", kh_mode="td", seed=7).to_json(), json.dumps({"val_mse": 0.25})))
    conn.execute("INSERT INTO changes VALUES (1, 0, 12, 1.2, 'delta', '0.4', '0.0')")
    conn.execute("INSERT INTO points VALUES (1, 0, ?)", (json.dumps({"epoch": 0.0, "val_mse": 0.5}),))
    conn.execute("INSERT INTO points VALUES (1, 30, ?)", (json.dumps({"epoch": 3.0, "val_mse": 0.25}),))
    conn.close()


def integrity(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


# --- schema ------------------------------------------------------------------------------------------------------
def test_a_first_version_database_migrates_and_its_data_survive(tmp_path):
    path = tmp_path / "r.sqlite"
    v1_database(path)
    with Registry(path) as reg:
        assert reg._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert reg._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        run = reg.run(1)
        assert (run.uid, run.state, run.steps, run.out_dir, run.lesson) == (
            "v1-run-0001", "finished", 30, "/old/run", None)
        assert run.config == RunConfig(dataset="bars", kh_mode="td", seed=7) and run.final == {"val_mse": 0.25}
        assert reg.changes(run) == [{"step": 12, "epoch": 1.2, "field": "delta", "old": 0.4, "new": 0.0}]
        assert reg.points(run)["val_mse"].tolist() == [0.5, 0.25]
        reg.save_setup("after migration", RunConfig())          # a table that v2 added
        reg.put_run("v2-run", RunConfig(), source="app", lesson=load_lesson("bars"))
        assert reg.run("v2-run").lesson["name"] == load_lesson("bars").name
    with Registry(path) as again:                                # opening a current file changes nothing
        assert [r.uid for r in again.runs()] == ["v2-run", "v1-run-0001"]


def test_a_database_from_a_newer_khrbm_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "r.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(RegistryError, match=r"schema version 99 is from a newer khrbm"):
        Registry(path)
    assert path.read_bytes() == before


# --- concurrency -----------------------------------------------------------------------------------------------------
def start_writers(tmp_path, path, n_runs: list, hold=()):
    """One writer process per entry of ``n_runs`` (its number of runs), released together."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(tmp_path / f"log{i}"), str(go), str(n),
                               str(i), "hold" if i in hold else "-"], stderr=subprocess.PIPE, text=True)
             for i, n in enumerate(n_runs)]
    time.sleep(1.0)                      # let them all import and wait at the barrier
    go.touch()
    return procs


def logged(tmp_path, i) -> list:
    path = tmp_path / f"log{i}"
    return path.read_text().split() if path.exists() else []


def test_eight_concurrent_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "r.sqlite"
    v1_database(path)                    # they also race to migrate it
    procs = start_writers(tmp_path, path, [6] * 8)
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    uids = [u for i in range(8) for u in logged(tmp_path, i)]
    assert len(uids) == len(set(uids)) == 48
    assert integrity(path) == "ok"
    with Registry(path) as reg:
        assert len(reg.runs()) == 49 and len(reg.runs(state="finished", source="sweep")) == 48
        for uid in uids:
            run = reg.run(uid)
            assert (run.state, run.steps, run.epoch, run.final) == ("finished", 50, 5.0, {"val_mse": 0.1})
            assert reg.points(run)["step"].tolist() == [10, 20, 30, 40, 50]
            assert [c["new"] for c in reg.changes(run)] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])


def test_writers_killed_mid_transaction_leave_the_database_intact_and_lose_no_committed_run(tmp_path):
    path = tmp_path / "r.sqlite"
    Registry(path).close()
    rng = random.Random(3)
    procs = start_writers(tmp_path, path, [1, 10**6, 10**6, 10**6, 5, 5, 5, 5], hold={0})
    # writer 0 is killed inside its open transaction (the others wait for its lock meanwhile); writers 1-3,
    # which would write forever, at random moments while seven write at once
    deadline = time.time() + 120
    while not (tmp_path / "log0.inside").exists() and time.time() < deadline:
        time.sleep(0.01)
    assert (tmp_path / "log0.inside").exists(), procs[0].stderr.read()
    for i in (0, 1, 2, 3):
        while i and len(logged(tmp_path, i)) < 2 and procs[i].poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        procs[i].send_signal(signal.SIGKILL)
    for p in procs:
        p.communicate(timeout=300)
    assert [p.returncode for p in procs[:4]] == [-signal.SIGKILL] * 4
    assert all(p.returncode == 0 for p in procs[4:])
    assert integrity(path) == "ok"
    with Registry(path, timeout=2.0) as reg:       # the killed writers' locks are gone: a write goes through
        reg.put_run("after-the-kills", RunConfig(), source="train", state="finished")
        for i in range(8):
            for uid in logged(tmp_path, i):
                assert reg.run(uid).state == "finished"
        assert "uncommitted-run" not in [r.uid for r in reg.runs()]
        killed_running = [r for r in reg.runs(state="running") if r.uid != "after-the-kills"]
        assert reg.reap() == len(killed_running)   # their unfinished runs: the process is gone
        assert reg.runs(state="running") == []
        assert all("pid" in r.message for r in reg.runs(state="interrupted"))
    assert integrity(path) == "ok"


# --- a registry that cannot be written never costs a run ---------------------------------------------------------
def make_readonly(path):
    """Make ``path`` unwritable even for root (chattr +i); returns the undo. Skips where that is impossible."""
    os.chmod(path, 0o444)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        os.chmod(path, 0o644)
        pytest.skip("running as root on a file system without chattr: cannot make a read-only file here")

    def undo():
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        os.chmod(path, 0o644)
    return undo


@pytest.mark.parametrize("failure", ["corrupt", "locked", "read-only"])
def test_training_goes_on_when_the_registry_cannot_be_written_and_says_so_once(tmp_path, failure):
    path = tmp_path / "registry.sqlite"
    undo, holder = None, None
    if failure == "corrupt":
        path.write_bytes(b"this is not an SQLite database\n" * 200)
    else:
        Registry(path).close()
    if failure == "locked":
        hold = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                "c.execute('BEGIN EXCLUSIVE'); open(sys.argv[2], 'w').close(); time.sleep(600)")
        holder = subprocess.Popen([sys.executable, "-c", hold, str(path), str(tmp_path / "locked")])
        while not (tmp_path / "locked").exists():
            time.sleep(0.01)
    if failure == "read-only":
        undo = make_readonly(path)
    before = path.read_bytes()
    try:
        out = tmp_path / "run"
        proc = khrbm("train", *BARS, "--epochs", 3, "--kh-mode", "bu", "--out", out, "--registry", path,
                     env={"KHRBM_REGISTRY_TIMEOUT": "0.3"})
    finally:
        if holder:
            holder.kill()
            holder.wait()
        if undo:
            undo()
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(path) in warnings[0] and f"khrbm runs import {out}" in warnings[0]
    assert {"corrupt": "not a readable khrbm registry", "locked": "locked by another process for more than 0.3 s",
            "read-only": "read-only"}[failure] in warnings[0]
    if failure != "locked":
        assert path.read_bytes() == before                    # nothing written into a file we cannot trust
    result = json.loads((out / "result.json").read_text())
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["state"] == "finished" and result["steps"] == 30
    with Registry(tmp_path / "fresh.sqlite") as fresh:       # the folder holds everything: import it later
        (record,) = import_folder(fresh, out)
        assert (record.uid, record.state, record.steps) == (manifest["arms"][0]["uid"], "finished", 30)
        assert record.final["val_mse"] == pytest.approx(result["final"]["val_mse"])


def test_an_app_recorder_with_a_locked_registry_keeps_training_and_its_folder(tmp_path, bars):
    path = tmp_path / "r.sqlite"
    Registry(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    recorder = TrainerRecorder(path, tmp_path / "runs", timeout=0.2)
    try:
        with Trainer(RunConfig(**SMALL), dataset=bars, recorder=recorder) as t:
            t.sync(DEADLINE)
            t.start()
            s = t.wait_for(lambda s: s.state == "finished", DEADLINE)
        recorder.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert s.step == 36 and "locked" in recorder.problem
    (folder,) = (tmp_path / "runs").iterdir()
    with Registry(path) as reg:
        assert reg.runs() == []
        (record,) = import_folder(reg, folder)
    assert record.state == "finished" and record.source == "app" and record.steps == 36


# --- what gets recorded ---------------------------------------------------------------------------------------------
def test_the_decimation_rule_keeps_points_at_least_one_percent_of_the_run_apart_and_the_final_one():
    steps = list(range(0, 300_001, 60))                 # 500 MNIST epochs at 10 points per epoch
    rows = [{"step": s} for s in steps]
    kept = []
    decimator = Decimator()
    for i in range(0, len(rows), 37):                   # offered in chunks, as a run progresses
        kept += decimator.select(rows[i:i + 37], final=i + 37 >= len(rows))
    got = [r["step"] for r in kept]
    assert got[0] == 0 and got[-1] == 300_000 and got == sorted(set(got))
    last = None
    for s in steps[:-1]:                                # the rule, written out: greedy, 1 % of the age apart
        if last is None or s - last >= max(1, last // DECIMATION):
            assert s in got
            last = s
        else:
            assert s not in got
    assert 450 < len(got) < 520                         # ~ 100 + 100·ln(300000/6000) ≈ 491
    assert Decimator().select([{"step": 5}, {"step": 6}], final=True) == [{"step": 5}, {"step": 6}]


def test_the_app_recorder_records_both_arms_changes_points_and_a_checkpoint_that_continues(tmp_path, bars, recorded):
    path, recorder = recorded
    a = RunConfig(**SMALL)
    with Trainer(a, a.replace(kh_mode="off"), dataset=bars, recorder=recorder) as t:
        t.sync(DEADLINE)
        assert recorder.uids == ()                      # a trainer that has not trained records nothing
        t.step(5)
        t.sync(DEADLINE)
        t.update(arm="A", delta=0.0)
        t.start()
        s = t.wait_for(lambda s: s.state == "finished", DEADLINE)
        uids = recorder.uids
    recorder.close()
    with Registry(path) as reg:
        runs = {r.arm: r for r in reg.runs()}
        assert set(runs) == {"A", "B"} and {r.uid for r in runs.values()} == set(uids)
        A, B = runs["A"], runs["B"]
        assert A.group_uid == B.group_uid != "" and A.source == "app" and A.state == B.state == "finished"
        assert A.config == a and B.config == a.replace(kh_mode="off")          # what they started from
        assert reg.changes(A) == [{"step": 5, "epoch": 5 / 12, "field": "delta", "old": 0.4, "new": 0.0}]
        assert reg.changes(B) == [] and (A.start_step, A.steps, A.epoch) == (0, 36, 3.0)
        assert A.checkpoint == B.checkpoint and A.can_continue
        pts = reg.points(A)
        hist = s.arm("A").history
        assert pts["step"][-1] == 36 and len(pts["step"]) <= len(hist["step"])
        assert A.final["val_mse"] == hist["val_mse"][-1]
        view = open_run(reg, A)
        for key in HISTORY_KEYS:
            assert np.array_equal(view.history[key], hist[key], equal_nan=True), key
        assert np.array_equal(view.W, s.arm("A").W) and view.config.delta == 0.0 and view.image_shape == (28, 28)
        manifest = json.loads((tmp_path / "runs" / os.path.basename(A.out_dir) / "run.json").read_text())
        assert manifest["state"] == "finished" and [x["uid"] for x in manifest["arms"]] == [A.uid, B.uid]
    with Trainer(a, dataset=bars) as again:                                     # continue from its checkpoint
        again.sync(DEADLINE)
        resumed = again.load_checkpoint(A.checkpoint)
        assert resumed.compare and resumed.step == 36
        assert np.array_equal(resumed.arm("B").W, s.arm("B").W)


def test_app_runs_end_interrupted_by_a_reset_and_by_close(bars, recorded):
    path, recorder = recorded
    with Trainer(RunConfig(**SMALL), dataset=bars, recorder=recorder) as t:
        t.sync(DEADLINE)
        t.step(4)
        at_reset = t.sync(DEADLINE)
        t.reset()
        t.step(2)
        t.sync(DEADLINE)
    recorder.close()
    with Registry(path) as reg:
        second, first = reg.runs()
        assert (first.state, first.steps, second.state, second.steps) == ("interrupted", 4, "interrupted", 2)
        assert "reset" in first.message
        view = open_run(reg, first)                     # the checkpoint saved when the reset replaced it
        assert np.array_equal(view.W, at_reset.arms[0].W)


def test_a_diverged_app_run_keeps_its_state_beside_the_checkpoint_and_still_imports(tmp_path, bars, recorded):
    path, recorder = recorded
    with Trainer(RunConfig(**SMALL), dataset=bars, recorder=recorder) as t:
        t.sync(DEADLINE)
        t.step(3)
        t.sync(DEADLINE)
        t._inject(lambda runs: runs[0].params.W.__setitem__((0, 0), np.nan))
        t.step(1)
        assert t.wait_for(lambda s: s.state == "diverged", DEADLINE).step == 4
    recorder.close()
    with Registry(path) as reg:
        (run,) = reg.runs()
        assert (run.state, run.steps, run.checkpoint) == ("diverged", 4, None) and "NaN" in run.message
        folder = Path(run.out_dir)
        assert (folder / "checkpoint.diverged.npz").exists() and not (folder / "checkpoint.npz").exists()
    with Registry(tmp_path / "fresh.sqlite") as fresh:
        (again,) = import_folder(fresh, folder)
        assert (again.uid, again.state, again.steps, again.config) == (run.uid, "diverged", 4, run.config)


def test_a_run_folder_reimports_into_one_record_with_or_without_its_manifest(tmp_path):
    out = tmp_path / "run"
    proc = khrbm("train", *BARS, "--epochs", 2, "--out", out, "--no-registry")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    with Registry(tmp_path / "r.sqlite") as reg:
        assert reg.runs() == []                         # --no-registry recorded nothing
        first = import_folder(reg, out)[0]
        assert import_folder(reg, out)[0].id == first.id and len(reg.runs()) == 1
        assert (first.state, first.source, first.steps, first.epoch) == ("finished", "train", 20, 2.0)
        assert first.final["val_mse"] == pytest.approx(result["final"]["val_mse"])
        assert reg.points(first)["step"].tolist() == [0, 10, 20]
        (out / "run.json").unlink()                     # an older folder: no manifest
        bare = import_folder(reg, out)[0]
        assert import_folder(reg, out)[0].id == bare.id != first.id
        assert (bare.state, bare.source, bare.config) == ("finished", "import", first.config)
        (tmp_path / "empty").mkdir()
        with pytest.raises(ValueError, match="not a run folder"):
            import_folder(reg, tmp_path / "empty")


def test_a_run_resumed_into_its_folder_continues_its_record(tmp_path):
    path, out = tmp_path / "r.sqlite", tmp_path / "run"
    assert khrbm("train", *BARS, "--epochs", 1, "--out", out, "--registry", path).returncode == 0
    proc = khrbm("train", "--resume", out / "checkpoint.npz", "--epochs", 3, "--lr", 0.05, "--no-progress",
                 "--out", out, "--registry", path)
    assert proc.returncode == 0, proc.stderr
    with Registry(path) as reg:
        (run,) = reg.runs()
        assert (run.state, run.steps, run.start_step, run.config.epochs) == ("finished", 30, 0, 1)
        assert [(c["step"], c["field"], c["old"], c["new"]) for c in reg.changes(run)] == [
            (10, "epochs", 1, 3), (10, "lr", 0.1, 0.05)]
        assert reg.points(run)["step"].tolist() == [0, 10, 20, 30]


# --- setups and lessons ---------------------------------------------------------------------------------------------
def test_named_setups_save_recall_rename_and_delete(tmp_path):
    path = tmp_path / "r.sqlite"
    a = RunConfig(init="std", kh_mode="td", eps0=0.04, radius=1.0)
    with Registry(path) as reg:
        reg.save_setup("Story", a, a.replace(kh_mode="off"), comment="the class demo")
        reg.save_setup("single", a.replace(n_hidden=50))
        with pytest.raises(RegistryError, match="exists already"):
            reg.save_setup("story", a)                  # names ignore case
        with pytest.raises(ConfigError, match="share the model"):
            reg.save_setup("bad pair", a, a.replace(n_hidden=7))
    with Registry(path) as reg:                         # another session sees them
        story = reg.setup("story")
        assert (story.name, story.comment, story.config_a, story.config_b.kh_mode, story.compare) == (
            "Story", "the class demo", a, "off", True)
        assert not reg.setup("single").compare
        assert reg.rename_setup("Story", "Init robustness").config_a == a
        with pytest.raises(RegistryError, match="exists already"):
            reg.rename_setup("single", "init robustness")
        reg.delete_setup("single")
        assert [s.name for s in reg.setups()] == ["Init robustness"]
        with pytest.raises(RegistryError, match="no setup named 'single'"):
            reg.setup("single")


def test_a_lesson_saved_in_the_registry_is_played_by_name(tmp_path):
    path = tmp_path / "r.sqlite"
    bars_lesson = load_lesson("bars")
    with Registry(path) as reg:
        reg.save_lesson("my bars", bars_lesson, comment="shorter")
        assert reg.lesson("My Bars").lesson == bars_lesson
    out = tmp_path / "run"
    proc = khrbm("train", "--lesson", "my bars", "--registry", path, "--train-size", 500, "--val-size", 200,
                 "--probe-every", 0, "--no-progress", "--out", out)
    assert proc.returncode == 0, proc.stderr
    with Registry(path) as reg:
        (run,) = reg.runs()
        assert run.lesson["name"] == bars_lesson.name and run.config.n_hidden == 56 and run.state == "finished"
