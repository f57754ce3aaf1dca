"""Run: a pure function of config + seed; live updates; checkpoints restore exactly and refuse bad files."""
import numpy as np
import pytest

from khrbm.config import ConfigError, RunConfig
from khrbm.data import load_dataset
from khrbm.train.run import CheckpointError, Run

SMALL = dict(dataset="bars", n_hidden=16, train_size=600, val_size=200, eval_size=100, epochs=3)


@pytest.fixture(scope="module")
def bars():
    return load_dataset("bars")


def steps(run, n):
    for _ in range(n):
        run.train_batch()
    return run


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_same_config_same_run_and_seed_matters(bars, backend):
    cfg = RunConfig(**SMALL, kh_mode="td", eps0=0.04, radius=1.0, backend=backend)
    a, b = steps(Run(cfg, bars), 9), steps(Run(cfg, bars), 9)
    assert np.array_equal(a.params.W, b.params.W) and np.array_equal(a.params.b, b.params.b)
    c = steps(Run(cfg.replace(seed=2), bars), 9)
    assert not np.allclose(a.params.W, c.params.W)


def test_minibatches_cover_each_epoch_once(bars):
    run = Run(RunConfig(**SMALL, batch_size=64), bars)
    seen = np.concatenate([run.batch_indices(t) for t in range(run.batches_per_epoch)])
    assert run.batches_per_epoch == 10 and np.array_equal(np.sort(seen), np.arange(600))
    nxt = np.concatenate([run.batch_indices(t) for t in range(10, 20)])
    assert not np.array_equal(seen, nxt) and np.array_equal(np.sort(nxt), np.arange(600))


def test_update_live_and_refuse_model_fields(bars):
    run = Run(RunConfig(**SMALL, kh_mode="bu"), bars)
    assert run.update(delta=0.1, eps0=0.04) == {"delta": (0.4, 0.1)}
    assert run.settings().delta == 0.1
    with pytest.raises(ConfigError, match="needs a reset"):
        run.update(n_hidden=20)
    with pytest.raises(ConfigError, match="postsynaptic"):
        run.update(ell=16)          # bu: only 16 hidden units, so ℓ <= 15
    assert run.config.ell == 1


def test_apply_takes_a_checked_config_but_never_a_new_model(bars):
    run = Run(RunConfig(**SMALL, kh_mode="bu"), bars)
    assert run.apply(run.config.replace(epochs=7, eps0=0.01)) == {"epochs": (SMALL["epochs"], 7),
                                                                   "eps0": (0.04, 0.01)}
    assert run.config.eps0 == 0.01
    with pytest.raises(ConfigError, match="needs a reset"):
        run.apply(run.config.replace(n_hidden=20, eps0=0.02))
    assert run.config.n_hidden == 16 and run.config.eps0 == 0.01


def test_kh_counts_follow_the_mode(bars):
    run = steps(Run(RunConfig(**SMALL, kh_mode="td", ell=2, radius=1.0), bars), 4)
    assert run.win_counts["td"].sum() == 4 * 100 and run.inhibit_counts["td"].sum() == 4 * 100
    assert run.win_counts["bu"].sum() == 0
    run.update(kh_mode="off")
    steps(run, 2)
    assert run.win_counts["td"].sum() == 400


def test_checkpoint_restores_exactly_mid_epoch(bars, tmp_path):
    cfg = RunConfig(**SMALL, kh_mode="td", sampler="pcd", k=2, radius=1.0)
    straight = steps(Run(cfg, bars), 13)
    first = steps(Run(cfg, bars), 5)
    first.evaluate(n_val=50, n_train=50)
    first.save(tmp_path / "ck.npz")
    resumed = steps(Run.load(tmp_path / "ck.npz", bars), 8)
    assert resumed.step == 13 and len(resumed.history) == 1
    for name in ("W", "a", "b"):
        assert np.array_equal(getattr(straight.params, name), getattr(resumed.params, name))
    assert np.array_equal(straight.chain, resumed.chain)
    assert np.array_equal(straight.win_counts["td"], resumed.win_counts["td"])


def test_bad_checkpoints_give_clear_errors(bars, tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        Run.load(garbage, bars)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Run.load(tmp_path / "missing.npz", bars)
    other = tmp_path / "other.npz"
    np.savez(other, W=np.zeros(3))
    with pytest.raises(CheckpointError, match="missing"):
        Run.load(other, bars)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**Run(RunConfig(**SMALL), bars).state_arrays(), "W": np.array([object()], dtype=object)})
    with pytest.raises(CheckpointError):
        Run.load(pickled, bars)
    run = Run(RunConfig(**SMALL), bars)
    run.save(tmp_path / "ok.npz")
    with pytest.raises(CheckpointError, match="n_hidden"):
        Run.load(tmp_path / "ok.npz", bars, config=RunConfig(**{**SMALL, "n_hidden": 17}))
    run.params.W[0, 0] = np.nan
    run.save(tmp_path / "nan.npz")
    with pytest.raises(CheckpointError, match="NaN"):
        Run.load(tmp_path / "nan.npz", bars)


def test_training_lowers_reconstruction_error_on_real_mnist(mnist_dir):
    cfg = RunConfig(n_hidden=50, train_size=3000, val_size=1000, epochs=2, kh_mode="td", radius=0.1)
    run = Run(cfg)
    before = run.evaluate()
    run.train_epoch()
    after = run.evaluate()
    assert after["val_mse"] < 0.6 * before["val_mse"] and after["val_ce"] < before["val_ce"]
    assert run.n_train == 3000 and run.batches_per_epoch == 30      # train_size takes a subset of any set
