"""The trainer's side work stays in its share of the loop's time (evaluation points, snapshots), and the
snapshot checksum that replaced CRC-32 still catches any changed word."""
from __future__ import annotations

import numpy as np

from khrbm.config import RunConfig
from khrbm.data import load_dataset
from khrbm.train.snapshot import checksum, frozen_copies
from khrbm.train.trainer import EVAL_SHARE, SNAPSHOT_SHARE, Trainer, _Budget

DEADLINE = 120.0


def test_budget_accounting_keeps_the_share():
    """Jobs of random cost, due whenever the credit covers the expected cost: at every moment the time
    charged is at most share × loop time + one job, and jobs do come (the budget is not just a brake)."""
    g = np.random.default_rng(0)
    for share in (0.01, 0.05, 0.2):
        b = _Budget(share)
        loop, jobs, worst = 0.0, 0, 0.0
        for _ in range(20_000):
            dt = g.uniform(0.5e-3, 3e-3)                     # one minibatch
            if b.due():
                cost = g.uniform(5e-3, 40e-3)
                b.charge(cost)
                dt += cost
                jobs += 1
                worst = max(worst, cost)
            loop += dt
            b.earn(dt)
            assert b.spent <= share * loop + worst + 1e-12
        assert b.spent >= 0.8 * share * loop - worst        # and it uses its share
        assert jobs > 10


def test_checksum_catches_any_word_and_matches_the_copies():
    g = np.random.default_rng(1)
    W = g.normal(size=(37, 23)).astype(np.float32)
    a, b = g.normal(size=37).astype(np.float32), g.normal(size=23)
    (Wc, ac, bc), crc = frozen_copies(W, a, b)
    assert crc == checksum(W, a, b) and not Wc.flags.writeable and np.array_equal(Wc, W) and bc.dtype == b.dtype
    for arr, idx in ((W, (36, 22)), (W, (0, 0)), (a, 5), (b, 22)):
        old = arr[idx]
        arr[idx] = np.nextafter(old, np.inf)                 # the smallest change of one value
        assert checksum(W, a, b) != crc
        arr[idx] = old
    assert checksum(W, a, b) == crc
    assert checksum(W, b, a) != crc                          # the order of the arrays counts


def test_subset_points_stay_inside_their_share(mnist_dir):
    """Expensive subsample points (2 × 3000 images) on a tiny, fast model: the trainer spaces them so that
    they take at most EVAL_SHARE of the loop's time (plus one point), and a point still comes now and then."""
    d = load_dataset("mnist")
    cfg = RunConfig(n_hidden=16, train_size=3000, eval_size=3000, epochs=4)
    t = Trainer(cfg, dataset=d, full_eval_every=0)
    try:
        t.start()
        s = t.wait_for(lambda s: s.state == "finished", DEADLINE)
        timing = t.timing()
    finally:
        t.close()
    h = s.arms[0].history
    n_subset = int((h["full"] == 0).sum())
    assert n_subset >= 1
    per_point = timing["subset_eval"] / n_subset
    assert timing["subset_eval"] <= EVAL_SHARE * timing["loop"] + 2 * per_point
    assert n_subset < 4 * 10                                  # far fewer than EVALS_PER_EPOCH would allow


def test_default_snapshots_are_budgeted(mnist_dir):
    """By default (snapshot_every=None) publishing takes at most SNAPSHOT_SHARE of the loop's time, plus the
    publishes that come regardless (one per snapshot_interval, state changes)."""
    d = load_dataset("mnist")
    cfg = RunConfig(n_hidden=64, train_size=4000, val_size=500, eval_size=200, epochs=2)
    t = Trainer(cfg, cfg.replace(kh_mode="td", radius=0.1), dataset=d)
    try:
        v0 = t.sync(DEADLINE).version
        t.start()
        s = t.wait_for(lambda s: s.state == "finished", DEADLINE)
        timing = t.timing()
    finally:
        t.close()
    published = s.version - v0
    assert published >= 2
    per_publish = timing["snapshots"] / published
    forced = timing["loop"] / 0.5 + 4                        # snapshot_interval = 0.5 s, start, end, points
    assert timing["snapshots"] <= SNAPSHOT_SHARE * timing["loop"] + forced * per_publish
    assert published < s.step / 2                            # not one per few minibatches
