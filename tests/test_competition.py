"""The competition matrix (winner → inhibited counts) and what is built on it: accumulated from each step's
ranking, thinned count histories, checkpoints, the trainer's records, and the helpers of the unit panel
(cluster order, top partners, shares over time)."""
from __future__ import annotations

import numpy as np
import pytest

from khrbm.config import RunConfig
from khrbm.core.rbm import sigmoid
from khrbm.core.tally import count_pairs
from khrbm.data import load_dataset
from khrbm.inspection import (binned, cluster_order, counts_until, even_intervals, hidden_activation,
                              shares_over_time, top_partners)
from khrbm.train.checkpoint import CheckpointError
from khrbm.train.competition import HISTORY_ROWS, Thinned
from khrbm.train.run import Run
from khrbm.train.trainer import COMPETITION_INTERVAL

SMALL = dict(dataset="bars", n_hidden=16, train_size=600, val_size=200, eval_size=100, epochs=4, batch_size=50)
DEADLINE = 120.0


@pytest.fixture(scope="module")
def bars():
    return load_dataset("bars")


def loop_counts(rankings, K, band):
    """The matrix, wins and inhibitions from the rankings by a plain loop (Eq. 8: the unit ranked ℓ below the
    winner is inhibited, or with the band every unit ranked 1..ℓ below it)."""
    C, wins, inhibited = np.zeros((K, K), np.int64), np.zeros(K, np.int64), np.zeros(K, np.int64)
    for ranked in rankings:
        for row in ranked:
            winner, below = int(row[0]), [int(u) for u in row[1:]]
            wins[winner] += 1
            for u in (below if band else below[-1:]):
                C[winner, u] += 1
                inhibited[u] += 1
    return C, wins, inhibited


@pytest.mark.parametrize("mode,ell,band,backend", [("bu", 2, False, "numba"), ("bu", 3, True, "numpy"),
                                                   ("td", 2, True, "numba"), ("td", 1, False, "numpy")])
def test_the_matrix_counts_every_winner_inhibited_pair_of_the_rankings(bars, mode, ell, band, backend):
    run = Run(RunConfig(**SMALL, kh_mode=mode, ell=ell, ell_band=band, radius=1.0, backend=backend), bars)
    rankings = [run.train_batch().ranked for _ in range(6)]
    assert all(r.shape == (SMALL["batch_size"], ell + 1) for r in rankings)
    K = run.n_visible if mode == "td" else run.config.n_hidden
    C, wins, inhibited = loop_counts(rankings, K, band)
    c = run.competition[mode]
    assert c.matrix.shape == (K, K) and c.matrix.dtype == np.int32
    assert np.array_equal(c.matrix, C) and np.array_equal(c.wins, wins) and np.array_equal(c.inhibited, inhibited)
    assert C.sum() == 6 * SMALL["batch_size"] * (ell if band else 1)            # every sample counted
    other = run.competition["bu" if mode == "td" else "td"]
    assert other.matrix is None and not other.wins.any()


def test_count_pairs_takes_the_int32_rankings_of_the_gpu_backend():
    g = np.random.default_rng(3)
    ranked = np.stack([g.permutation(9)[:4] for _ in range(40)]).astype(np.int32)
    for band in (False, True):
        C = np.zeros((9, 9), np.int32)
        count_pairs(C, ranked, band)
        count_pairs(C, ranked.astype(np.int64), band)
        assert np.array_equal(C, 2 * loop_counts([ranked], 9, band)[0])


def test_thinned_keeps_evenly_spaced_points_over_the_whole_stream():
    kept = Thinned(8)
    for point in range(1000):
        kept.offer(lambda point=point: point)
        assert 1 <= len(kept.items) <= 8
        assert kept.items[0] == 0 and kept.stride & (kept.stride - 1) == 0
        spacing = np.diff(kept.items)
        assert (spacing == kept.stride).all()                    # even, at the current stride
    assert len(kept.items) >= 4 and kept.items[-1] >= 1000 - 2 * kept.stride     # and reaching to the end


def test_metric_points_record_the_counts_and_a_mode_switch_restarts_them(trainers, bars):
    t = trainers(RunConfig(**SMALL, kh_mode="td", radius=1.0, backend="numpy"), dataset=bars)
    t.step(12)
    s = t.sync(DEADLINE)
    rec = s.arms[0].competition
    assert rec.mode == "td" and rec.step == 12 and rec.count_steps[0] == 0
    assert np.array_equal(rec.matrix.sum(axis=0), s.arms[0].inhibit_counts)   # the latest publish, complete
    assert (np.diff(rec.count_steps) > 0).all() and (np.diff(rec.count_wins.sum(axis=1)) > 0).all()
    assert (rec.count_wins.sum(axis=1) == rec.count_steps * SMALL["batch_size"]).all()   # B winners a step
    t.update(lr=0.11)                                         # a new snapshot, the same competition
    again = t.sync(DEADLINE)
    assert again.version > s.version and again.arms[0].competition is rec     # the same record, not a copy
    t.update(kh_mode="bu")
    t.step(3)
    t.sync(DEADLINE)
    t.update(kh_mode="td")                                    # TD switched on again at step 15: counts restart
    t.step(2)
    a = t.sync(DEADLINE).arms[0]
    rec = a.competition
    assert rec.mode == "td" and rec.matrix.sum() == 2 * SMALL["batch_size"] == a.win_counts.sum()
    assert rec.count_steps[0] == 15 and not rec.count_wins[0].any()
    assert a.mode_counts["bu"][0].sum() == 3 * SMALL["batch_size"]
    assert rec.rf_steps[0] == 0 and len(rec.rf_weights) == len(rec.rf_steps) >= 2       # weights at points
    assert all(W.shape == a.W.shape and not W.flags.writeable for W in rec.rf_weights)


def test_while_running_the_record_is_renewed_at_a_bounded_rate(trainers, bars):
    """While running, the matrix is copied into a new record at most every COMPETITION_INTERVAL s (plus the
    publishes when the state changes), not at every publish; and it is renewed (not frozen at the first copy)."""
    cfg = RunConfig(dataset="bars", n_hidden=16, val_size=200, eval_size=100, epochs=1000, batch_size=50, kh_mode="bu")
    t = trainers(cfg, dataset=bars)
    v0, r0 = t.sync(DEADLINE).version, t._core.competition_version
    t.start()
    seen = [t.wait_for(lambda s: s.state == "running", DEADLINE).arms[0].competition]
    for _ in range(2):                         # two renewals while running (each at least the interval apart)
        seen.append(t.wait_for(lambda s: s.arms[0].competition is not seen[-1], DEADLINE).arms[0].competition)
    t.pause()
    s = t.sync(DEADLINE)
    assert s.state == "paused" and [r.version for r in seen] == sorted({r.version for r in seen})
    assert seen[0].step < seen[1].step < seen[2].step
    records, publishes, loop = t._core.competition_version - r0, s.version - v0, t.timing()["loop"]
    assert 3 <= records <= loop / COMPETITION_INTERVAL + 3 < publishes, (records, loop, publishes)
    assert s.arms[0].competition.step == s.step and s.arms[0].competition.matrix.sum() == s.arms[0].win_counts.sum()


def steps(run, n, every=None):
    for _ in range(n):
        run.train_batch()
        if every and run.step % every == 0:
            run.evaluate(n_val=50, n_train=50)
    return run


def test_a_checkpoint_keeps_the_competition_and_the_run_resumes_it_exactly(bars, tmp_path):
    cfg = RunConfig(**SMALL, kh_mode="bu", ell=2, ell_band=True, radius=1.0)
    straight = steps(Run(cfg, bars), 30, every=3)
    first = steps(Run(cfg, bars), 14, every=3)
    first.save(tmp_path / "ck.npz")
    resumed = steps(Run.load(tmp_path / "ck.npz", bars), 16, every=3)
    for mode in ("td", "bu"):
        a, b = straight.competition[mode], resumed.competition[mode]
        assert (a.matrix is None) == (b.matrix is None)
        if a.matrix is not None:
            assert np.array_equal(a.matrix, b.matrix)
        for x, y in zip(a.history_arrays(), b.history_arrays()):
            assert np.array_equal(x, y)
        assert (a.history.stride, a.history.seen) == (b.history.stride, b.history.seen)
    assert resumed.competition["bu"].matrix.sum() == 30 * 50 * 2
    assert resumed.competition["bu"].history_arrays()[0].tolist() == list(range(3, 31, 3))   # each metric point


def test_checkpoints_from_before_the_matrix_load_and_tampered_ones_are_refused(bars, tmp_path):
    run = steps(Run(RunConfig(**SMALL, kh_mode="bu", radius=1.0), bars), 5, every=2)
    arrays = run.state_arrays()
    old = {k: v for k, v in arrays.items() if not k.startswith(("matrix_", "count_"))}
    np.savez(tmp_path / "old.npz", **old)
    loaded = Run.load(tmp_path / "old.npz", bars)
    assert np.array_equal(loaded.win_counts["bu"], run.win_counts["bu"])
    assert loaded.competition["bu"].matrix is None and not loaded.competition["bu"].history.items
    steps(loaded, 1)
    loaded.save(tmp_path / "again.npz")                        # the matrix counts less than the counts: fine
    assert Run.load(tmp_path / "again.npz", bars).competition["bu"].matrix.sum() == SMALL["batch_size"]

    def refused(match, **change):
        bad = {**arrays, **change}
        for k in [k for k, v in change.items() if v is None]:
            del bad[k]
        np.savez(tmp_path / "bad.npz", **bad)
        with pytest.raises(CheckpointError, match=match):
            Run.load(tmp_path / "bad.npz", bars)

    M = run.config.n_hidden
    more = arrays["matrix_bu"].copy()
    more[3, 5] += 1
    refused("counts more inhibitions", matrix_bu=more)
    refused("16 × 16", matrix_bu=np.zeros((16, 15), np.int32))
    refused("counts from 0 to", matrix_bu=-np.ones((M, M), np.int32))
    refused("counts from 0 to", matrix_bu=np.full((M, M), 2**31, np.int64),
            inhibit_bu=np.full(M, 2**40, np.int64))                  # more than the int32 matrix can hold
    refused("but not count_wins_bu", count_wins_bu=None)
    refused("rows of 16 counts", count_wins_bu=arrays["count_wins_bu"][:, :3])
    refused("in order", count_steps_bu=arrays["count_steps_bu"][::-1].copy())
    refused("power of 2", count_thinning_bu=np.array([3, 9]))
    too_many = np.zeros(HISTORY_ROWS + 1, np.int64)
    refused("at most", count_steps_bu=too_many, count_wins_bu=np.zeros((HISTORY_ROWS + 1, M), np.int32),
            count_inhibit_bu=np.zeros((HISTORY_ROWS + 1, M), np.int32),
            count_thinning_bu=np.array([1, HISTORY_ROWS + 1]))


# --- the unit panel's helpers -------------------------------------------------------------------------------------
def block_matrix(sizes, seed=0, within=(5, 30), across=(0, 3), idle=4):
    """Groups of units that inhibit each other often (counts in ``within``), rarely anyone else (``across``),
    plus ``idle`` units that never compete; shuffled. Returns (matrix, list of each group's units)."""
    g = np.random.default_rng(seed)
    K = sum(sizes) + idle
    perm = g.permutation(K)
    C = g.integers(*across, size=(K, K))
    groups, start = [], 0
    for n in sizes:
        units = perm[start:start + n]
        C[np.ix_(units, units)] = g.integers(*within, size=(n, n))
        groups.append(units)
        start += n
    idle_units = perm[start:]
    C[idle_units, :] = 0
    C[:, idle_units] = 0
    np.fill_diagonal(C, 0)
    return C, groups, idle_units


def test_cluster_order_puts_each_group_of_competing_units_in_one_block():
    for seed, sizes in ((0, [7, 12, 5, 9]), (1, [3, 20, 11]), (2, [30, 2, 6, 6, 10])):
        C, groups, idle = block_matrix(sizes, seed)
        order = cluster_order(C)
        assert sorted(order.tolist()) == list(range(len(C)))
        position = np.argsort(order)
        for units in groups:
            where = np.sort(position[units])
            assert where[-1] - where[0] == len(units) - 1, f"group {sorted(units)} split: positions {where}"
        assert sorted(order[-len(idle):].tolist()) == sorted(idle.tolist())      # never competed: last
        assert np.array_equal(order[-len(idle):], np.sort(idle))
    assert cluster_order(np.zeros((5, 5), np.int32)).tolist() == [0, 1, 2, 3, 4]


def test_binned_sums_blocks_of_the_ordered_matrix():
    C = np.arange(49).reshape(7, 7)
    B = binned(C, 3)                                           # blocks of 3: rows/cols {0,1,2}, {3,4,5}, {6}
    assert B.shape == (3, 3) and B.sum() == C.sum()
    assert B[0, 0] == C[:3, :3].sum() and B[2, 1] == C[6, 3:6].sum() and B[2, 2] == C[6, 6]
    assert binned(C, 10) is not None and np.array_equal(binned(C, 10), C)


def test_top_partners_read_the_unit_s_row_and_column():
    C = np.zeros((6, 6), np.int32)
    C[2] = [4, 0, 0, 9, 4, 1]                                  # unit 2 inhibits 3 most, then 0 and 4 (tie)
    C[:, 2] = [7, 0, 0, 0, 0, 2]
    inhibits, inhibited_by = top_partners(C, 2, k=3)
    assert inhibits == [(3, 9), (0, 4), (4, 4)]
    assert inhibited_by == [(0, 7), (5, 2)]                      # zero counts are left out


def test_shares_over_time_and_the_activation_of_one_unit():
    steps = np.array([0, 10, 20, 30])
    wins = np.array([[0, 0, 0], [10, 40, 0], [10, 40, 0], [60, 40, 100]])     # 50 samples, none, 150 samples
    inh = np.array([[0, 0, 0], [0, 5, 45], [0, 5, 45], [150, 5, 45]])
    x, won, lost = shares_over_time(steps, wins, inh, 0)
    assert x.tolist() == [10, 30] and np.allclose(won, [10 / 50, 50 / 150]) and np.allclose(lost, [0, 1.0])
    g = np.random.default_rng(5)
    V, W, b = g.random((4, 6)), g.normal(size=(6, 3)), g.normal(size=3)
    assert np.allclose(hidden_activation(V, W, b, 1), [sigmoid(v @ W[:, 1] + b[1]) for v in V])


def test_the_counts_now_end_the_history_and_short_intervals_join_their_neighbour():
    steps, wins, inh = np.array([0, 10, 20]), np.arange(6).reshape(3, 2), np.zeros((3, 2), int)
    s, w, i = counts_until(steps, wins, inh, 24, [7, 8], [1, 1])
    assert s.tolist() == [0, 10, 20, 24] and w[-1].tolist() == [7, 8] and i.shape == (4, 2)
    s, _, _ = counts_until(steps, wins, inh, 20, [7, 8], [1, 1])            # not after the last row
    assert s is steps
    assert counts_until(np.zeros(0, int), np.zeros((0, 2)), np.zeros((0, 2)), 5, [1, 2], [0, 0])[0].tolist() == [5]
    # half the median interval (10 / 2 here) at least: a short one joins the next, the last the one before
    assert even_intervals([0, 10, 20, 24]).tolist() == [0, 1, 3]
    assert even_intervals([150, 197, 200, 250, 300]).tolist() == [0, 1, 3, 4]
    assert even_intervals([0, 10, 20, 30]).tolist() == [0, 1, 2, 3] and even_intervals([0, 1]).tolist() == [0, 1]
    assert even_intervals([0, 2]).tolist() == [0, 1]
    wins = np.array([[0, 0], [40, 10], [40, 12], [90, 12]])          # unit 1 wins 2 of the 2 samples of 10..12
    x, won, _ = shares_over_time([0, 10, 12, 20], wins, np.zeros_like(wins), 1)
    assert x.tolist() == [10, 20] and np.allclose(won, [10 / 50, 2 / 52])


def test_log_codes_colour_counts_from_one_to_the_largest_and_leave_zeros_blank():
    from khrbm.app import feed
    from khrbm.app.inspect import log_codes
    codes, top = log_codes(np.array([[0, 1, 10], [100, 1000, 0]]))
    assert top == 1000
    assert codes.tolist() == [[feed.NAN_CODE, 0, round(feed.CODES / 3)], [round(2 * feed.CODES / 3), feed.CODES,
                                                                          feed.NAN_CODE]]
    assert log_codes(np.array([0, 1]))[0].tolist() == [feed.NAN_CODE, feed.CODES]     # all ones: the top colour
