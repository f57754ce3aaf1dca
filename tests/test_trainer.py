"""Trainer: threaded control, live changes, snapshots, A/B lockstep, faults, checkpoints, clean shutdown.

Everything is asserted on behaviour: waits poll published snapshots with a deadline (Trainer.sync /
Trainer.wait_for); no sleep is an assertion.
"""
import gc
import threading
import time

import numpy as np
import pytest

from khrbm.core import rng
from khrbm.config import ConfigError, RunConfig
from khrbm.data import load_dataset
from khrbm.core.rbm import Params, sigmoid
from khrbm.train.run import Run
from khrbm.core.step import StepSettings, numpy_step
from khrbm.train.snapshot import checksum
from khrbm.train.trainer import ResetNeeded, Trainer

DEADLINE = 60.0
SMALL = dict(dataset="bars", n_hidden=16, train_size=600, val_size=200, eval_size=100, epochs=50,
             radius=1.0, batch_size=50)
MNIST_SMALL = dict(dataset="mnist", n_hidden=16, train_size=500, val_size=200, eval_size=100, epochs=2,
                   kh_mode="td", eps0=0.04, delta=0.4, radius=0.1)


@pytest.fixture(scope="module")
def bars():
    return load_dataset("bars")


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_dataset("mnist")


def params_of(arm):
    return Params(arm.W.copy(), arm.a.copy(), arm.b.copy())


def reference_step(cfg, dataset, before: Params, t: int) -> Params:
    """numpy_step at cfg's settings on minibatch t with key rng.stream(seed, t), from ``before``."""
    run = Run(cfg.replace(backend="numpy"), dataset)
    idx = run.batch_indices(t)
    X = run.visible(dataset.x_train[idx], dataset.y_train[idx])
    p = before.copy()
    numpy_step(p, X, StepSettings.from_config(cfg, t / run.batches_per_epoch, run.n_labels), rng.stream(cfg.seed, t))
    return p


def assert_params(arm, ref: Params, exact: bool):
    for name in ("W", "a", "b"):
        got, want = getattr(arm, name), getattr(ref, name)
        if exact:
            assert np.array_equal(got, want), name
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("data,backend", [("bars", "numpy"), ("mnist", "numba")])
def test_live_change_alters_the_very_next_update(request, trainers, data, backend):
    dataset = request.getfixturevalue(data)
    base = SMALL if data == "bars" else MNIST_SMALL
    cfg = RunConfig(**{**base, "kh_mode": "td", "backend": backend})
    t = trainers(cfg, dataset=dataset)
    t.step(3)
    s = t.sync(DEADLINE)
    assert s.state == "paused" and s.step == 3
    before = params_of(s.arms[0])

    t.update(delta=0.9)
    t.step(1)
    s = t.sync(DEADLINE)
    assert s.step == 4
    new_cfg = cfg.replace(delta=0.9)
    assert_params(s.arms[0], reference_step(new_cfg, dataset, before, 3), exact=backend == "numpy")
    # the change mattered: the old Δ gives another update
    assert not np.allclose(s.arms[0].W, reference_step(cfg, dataset, before, 3).W, rtol=0, atol=1e-6)
    assert s.arms[0].config.delta == 0.9

    before = params_of(s.arms[0])
    t.update(kh_mode="bu")
    t.step(1)
    s = t.sync(DEADLINE)
    new_cfg = new_cfg.replace(kh_mode="bu")
    assert_params(s.arms[0], reference_step(new_cfg, dataset, before, 4), exact=backend == "numpy")
    assert [(c.step, c.arm, c.field, c.old, c.new) for c in s.changes] == [
        (3, "A", "delta", 0.4, 0.9), (4, "A", "kh_mode", "td", "bu")]
    arm = s.arms[0]
    # winner/inhibited counts restart when the mode changes: one minibatch of BU so far
    assert arm.counts_mode == "bu" and arm.win_counts.shape == (cfg.n_hidden,)
    assert arm.win_counts.sum() == cfg.batch_size and arm.inhibit_counts.sum() == cfg.batch_size
    assert arm.mode_counts["td"][0].sum() == 4 * cfg.batch_size


def test_live_changes_are_validated_at_once(trainers, bars):
    t = trainers(RunConfig(**SMALL, kh_mode="bu", backend="numpy"), dataset=bars)
    with pytest.raises(ConfigError, match="postsynaptic"):
        t.update(ell=16)                     # BU: 16 hidden units, so ℓ <= 15
    with pytest.raises(ConfigError, match="lr"):
        t.update(lr=-1.0)
    with pytest.raises(ConfigError, match="unknown field"):
        t.update(learning_rate=0.1)
    with pytest.raises(ValueError, match="no arm B"):
        t.update(arm="B", lr=0.2)
    assert t.configs[0].ell == 1 and t.configs[0].lr == 0.1


def test_the_checked_config_is_what_each_arm_runs_with(trainers, bars):
    """Trainer.update holds the change at once (configs); the loop puts exactly that config in force:
    arm B keeps KH off when only A's mode changes, and epochs (run-wide) reaches both arms."""
    cfg = RunConfig(**SMALL, kh_mode="td", backend="numpy")
    t = trainers(cfg, cfg.replace(kh_mode="off"), dataset=bars)
    t.step(1)
    t.update(arm="A", kh_mode="bu", eps0=0.02)
    t.update(epochs=60, delta=0.1)
    assert [c.kh_mode for c in t.configs] == ["bu", "off"] and [c.epochs for c in t.configs] == [60, 60]
    snap = t.sync(DEADLINE)
    assert tuple(a.config for a in snap.arms) == t.configs
    assert snap.arms[1].config == cfg.replace(kh_mode="off", epochs=60, delta=0.1)
    assert {(c.arm, c.field) for c in snap.changes} == {("A", "kh_mode"), ("A", "eps0"), ("A", "epochs"),
                                                          ("A", "delta"), ("B", "epochs"), ("B", "delta")}


def test_pause_stops_the_weights(trainers, bars):
    t = trainers(RunConfig(**SMALL, kh_mode="td"), dataset=bars)
    t.start()
    t.wait_for(lambda s: s.step >= 5 and s.state == "running", DEADLINE)
    t.pause()
    s = t.sync(DEADLINE)
    assert s.state == "paused" and "paused at step" in s.message
    time.sleep(0.3)        # a period of being paused (what follows asserts nothing changed)
    later = t.snapshot
    assert later.step == s.step and np.array_equal(later.arms[0].W, s.arms[0].W)
    step, W = t._inject(lambda runs: (runs[0].step, runs[0].params.W.copy()))
    assert step == s.step and np.array_equal(W, s.arms[0].W)
    assert later.samples_per_s == 0.0
    with pytest.raises(ValueError):
        later.arms[0].W[0, 0] = 1.0          # snapshot arrays are read-only copies


def test_ab_identical_settings_stay_bit_identical_and_kh_diverges(trainers, bars):
    cfg = RunConfig(**SMALL, kh_mode="td")
    same = trainers(cfg, cfg, dataset=bars)
    same.step(15)
    s = same.sync(DEADLINE)
    a, b = s.arms
    assert (a.name, b.name) == ("A", "B") and a.step == b.step == 15
    assert np.array_equal(a.W, b.W) and np.array_equal(a.a, b.a) and np.array_equal(a.b, b.b)
    same.close()

    ab = trainers(cfg, cfg.replace(kh_mode="off"), dataset=bars)
    s0 = ab.sync(DEADLINE)
    assert np.array_equal(s0.arms[0].W, s0.arms[1].W)          # same initial weights
    ab.step(15)
    s = ab.sync(DEADLINE)
    assert s.arms[0].step == s.arms[1].step == 15
    assert np.abs(s.arms[0].W - s.arms[1].W).max() > 1e-3
    assert s.arms[0].counts_mode == "td" and s.arms[0].win_counts.sum() == 15 * cfg.batch_size
    assert s.arms[1].counts_mode == "off" and s.arms[1].win_counts.size == 0
    # arm B is exactly a plain run with the same seed (same data order, same initial weights)
    plain = Run(cfg.replace(kh_mode="off"), bars)
    for _ in range(15):
        plain.train_batch()
    assert np.array_equal(plain.params.W, s.arms[1].W)
    # model fields must match between the arms
    with pytest.raises(ConfigError, match="n_hidden"):
        Trainer(cfg, cfg.replace(n_hidden=20), dataset=bars)
    # live fields may differ per arm
    ab.update(arm="B", lr=0.05)
    s = ab.sync(DEADLINE)
    assert s.arms[1].config.lr == 0.05 and s.arms[0].config.lr == 0.1
    assert s.changes[-1][2:] == ("B", "lr", 0.1, 0.05)


def test_reader_never_sees_a_torn_snapshot(trainers, bars):
    cfg = RunConfig(**SMALL, kh_mode="td")
    t = trainers(cfg, cfg.replace(kh_mode="bu"), dataset=bars, snapshot_every=1)
    t.sync(DEADLINE)
    problems, seen = [], []
    stop = threading.Event()

    def reader():
        last = -1
        while not stop.is_set():
            s = t.snapshot
            if s.version < last:
                problems.append(f"version went back {last} -> {s.version}")
            if s.version != last:
                seen.append((s.version, s.state, s.samples_per_s))
            last = s.version
            for arm in s.arms:
                if checksum(arm.W, arm.a, arm.b) != arm.checksum:
                    problems.append(f"v{s.version} arm {arm.name}: W/a/b do not match their checksum")
                if arm.step != s.step:
                    problems.append(f"v{s.version}: arm {arm.name} at step {arm.step}, A at {s.step}")
                lengths = {len(v) for v in arm.history.values()}
                if len(lengths) != 1 or (arm.history["step"].size and arm.history["step"][-1] > arm.step):
                    problems.append(f"v{s.version} arm {arm.name}: history inconsistent with step {arm.step}")
                V = arm.probe_input
                recon = sigmoid(sigmoid(V @ arm.W + arm.b) @ arm.W.T + arm.a)
                if not np.allclose(recon, arm.probe_recon, atol=1e-5):
                    problems.append(f"v{s.version} arm {arm.name}: reconstructions are not of these weights")

    th = threading.Thread(target=reader)
    th.start()
    try:
        t.start()
        t.wait_for(lambda s: s.step >= 20, DEADLINE)
        t.update(arm="A", delta=0.8)
        t.update(eps0=0.02)
        t.wait_for(lambda s: s.step >= 60, DEADLINE)
        t.pause()
        t.sync(DEADLINE)
    finally:
        stop.set()
        th.join()
    assert not problems, problems[:5]
    assert len(seen) > 5
    assert any(state == "running" and rate > 0 for _, state, rate in seen)


def test_nan_pauses_the_run_as_diverged(trainers, bars):
    cfg = RunConfig(**SMALL, kh_mode="td", init="std", lr=2.0)
    t = trainers(cfg, cfg.replace(kh_mode="off"), dataset=bars)
    t.step(2)
    t.sync(DEADLINE)
    t._inject(lambda runs: runs[1].params.W.__setitem__((0, 0), np.nan))
    t.start()
    s = t.wait_for(lambda s: s.state == "diverged", DEADLINE)
    assert s.step == 3
    assert "arm B" in s.message and "NaN" in s.message and "step 3" in s.message
    assert "Reset" in s.message and "std init" in s.message
    t.start()                                # refused: still diverged, nothing trained
    s = t.sync(DEADLINE)
    assert s.state == "diverged" and s.step == 3
    # exploding but finite weights count too
    t.reset()
    t._inject(lambda runs: runs[0].params.W.__setitem__((0, 0), 3e4))
    t.step(1)
    s = t.sync(DEADLINE)
    assert s.state == "diverged" and "exploded" in s.message and "arm A" in s.message


def test_exception_in_the_loop_gives_error_and_reset_recovers(trainers, bars):
    t = trainers(RunConfig(**SMALL, kh_mode="td"), dataset=bars)
    t.step(2)
    t.sync(DEADLINE)

    def boom(*args, **kw):
        raise RuntimeError("kernel exploded on purpose")

    t._inject(lambda runs: setattr(runs[0].stepper, "step", boom))
    t.start()
    s = t.wait_for(lambda s: s.state == "error", DEADLINE)
    assert "RuntimeError: kernel exploded on purpose" in s.message
    assert t.thread.is_alive()
    t.start()
    assert t.sync(DEADLINE).state == "error"
    t.reset(seed=7)
    s = t.sync(DEADLINE)
    assert s.state == "idle" and s.step == 0 and s.arms[0].config.seed == 7 and s.changes == ()
    t.step(3)
    s = t.sync(DEADLINE)
    assert s.state == "paused" and s.step == 3


def test_close_joins_and_a_dropped_trainer_stops_its_thread(bars):
    baseline = threading.active_count()
    cfg = RunConfig(**SMALL, kh_mode="td")
    t = Trainer(cfg, dataset=bars)
    assert t.thread.daemon and t.thread.name.startswith("khrbm-trainer-")
    t.start()
    t.wait_for(lambda s: s.step >= 2, DEADLINE)
    t.close()
    assert not t.thread.is_alive() and t.snapshot.state == "closed"
    t.close()                                # idempotent
    t.pause()
    assert threading.active_count() == baseline

    t = Trainer(cfg, dataset=bars)
    thread = t.thread
    t.start()
    t.wait_for(lambda s: s.step >= 2, DEADLINE)
    del t
    gc.collect()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert threading.active_count() == baseline


def test_checkpoint_mid_run_continues_identically(trainers, bars, tmp_path):
    cfg = RunConfig(**SMALL, kh_mode="td", sampler="pcd")
    path = tmp_path / "ab.npz"
    t = trainers(cfg, cfg.replace(kh_mode="off"), dataset=bars)
    t.step(7)                                # mid-epoch (12 minibatches per epoch)
    t.sync(DEADLINE)
    t.update(arm="A", eps0=0.03)
    t.start()
    t.wait_for(lambda s: s.step >= 10, DEADLINE)
    t.pause()
    saved = t.sync(DEADLINE)
    assert t.save_checkpoint(path) == path and path.exists()
    t.step(9)
    end = t.sync(DEADLINE)

    u = trainers(RunConfig(**SMALL), dataset=bars)        # a different setup: loading replaces it
    u.load_checkpoint(path)
    s = u.sync(DEADLINE)
    assert s.compare and s.step == saved.step and s.state == "paused" and "loaded" in s.message
    assert s.changes == saved.changes and s.arms[0].config.eps0 == 0.03
    assert len(s.arms[0].history["step"]) == len(saved.arms[0].history["step"])
    u.step(9)
    again = u.sync(DEADLINE)
    assert again.step == end.step
    for x, y in zip(end.arms, again.arms):
        assert np.array_equal(x.W, y.W) and np.array_equal(x.b, y.b)

    # a single-run trainer writes Run.save's format
    single = tmp_path / "single.npz"
    v = trainers(cfg, dataset=bars)
    v.step(4)
    v.sync(DEADLINE)
    v.save_checkpoint(single)
    run = Run.load(single, bars)
    assert run.step == 4 and np.array_equal(run.params.W, v.snapshot.arms[0].W)


def test_model_change_while_running_needs_a_reset(trainers, bars):
    cfg = RunConfig(**SMALL, kh_mode="td")
    t = trainers(cfg, dataset=bars)
    t.update(n_hidden=20)                    # nothing trained yet: applied by a reset at once
    assert t.sync(DEADLINE).arms[0].W.shape == (784, 20)
    t.start()
    t.wait_for(lambda s: s.state == "running" and s.step >= 1, DEADLINE)
    with pytest.raises(ResetNeeded, match=r"n_hidden \(M\) needs a reset \(Reset applies it\)") as err:
        t.update(n_hidden=24)
    assert isinstance(err.value, ConfigError) and err.value.field == "n_hidden"
    with pytest.raises(ResetNeeded):
        t.update(init="std")
    t.reset(config_a=cfg.replace(n_hidden=24, init="std"))
    s = t.sync(DEADLINE)
    assert s.state == "idle" and s.step == 0 and s.arms[0].W.shape == (784, 24)
    assert s.arms[0].config.init == "std"


def test_real_mnist_epochs_finish_and_more_epochs_resume(trainers, mnist):
    cfg = RunConfig(**MNIST_SMALL)
    t = trainers(cfg, dataset=mnist, probe_size=8)
    first = t.snapshot
    assert first.version >= 0 and first.state in ("compiling", "idle") and first.arms[0].W.shape == (784, 16)
    s = t.sync(DEADLINE)
    assert s.state == "idle" and s.arms[0].history["step"].tolist() == [0.0]
    assert s.arms[0].image_shape == (28, 28) and s.arms[0].probe_input.shape == (8, 784)
    assert s.arms[0].probe_recon.shape == (8, 784) and s.notice == mnist.notice
    t.step_epoch()
    s = t.sync(DEADLINE)
    arm = s.arms[0]
    assert s.state == "paused" and arm.epoch == 1.0 and arm.step == 5
    h = arm.history
    assert h["step"][-1] == 5 and h["full"][-1] == 1.0 and np.isfinite(h["val_mse"][-1])
    assert 0 < h["val_mse"][-1] < 0.5 and np.isfinite(h["train_mse"][-1]) and np.isnan(h["accuracy"][-1])
    assert arm.eps == pytest.approx(0.04 * (1 - 1 / 2) ** 1.5)
    t.start()
    s = t.wait_for(lambda s: s.state == "finished", DEADLINE)
    assert s.step == 10 and "finished 2 epochs" in s.message
    t.start()
    t.step(3)
    assert t.sync(DEADLINE).step == 10
    t.update(epochs=3)
    t.start()
    s = t.wait_for(lambda s: s.state == "finished" and s.step == 15, DEADLINE)
    assert s.changes[-1][2:] == ("A", "epochs", 2, 3)
    assert s.arms[0].history["step"][-1] == 15


def test_full_validation_points_follow_full_eval_every(trainers, bars):
    cfg = RunConfig(**{**SMALL, "epochs": 3, "val_size": 150, "eval_size": 40})
    t = trainers(cfg, dataset=bars, full_eval_every=0)
    t.start()
    s = t.wait_for(lambda s: s.state == "finished", DEADLINE)
    h = s.arms[0].history
    bpe = s.arms[0].batches_per_epoch
    assert h["step"][h["full"] == 1].tolist() == [0, 3 * bpe]           # step 0 and the end only
    assert all(step % bpe for step in h["step"][h["full"] == 0])      # subsample points between epoch ends
    assert np.all(np.diff(h["step"]) > 0) and np.isfinite(h["val_mse"]).all()
