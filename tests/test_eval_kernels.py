"""The Numba evaluation kernels (khrbm.core.eval_kernels) against the NumPy metrics (khrbm.core.metrics),
which test_metrics.py checks against loops and exact enumeration.

* float64 parameters: the same values to ~1e-12 (same uniforms, same float64 arithmetic).
* float32 parameters: MSE within a few flipped pixels, cross-entropy and overlap to ~1e-6 relative, and
  the cRBM's predictions exactly the float64 ones (near ties are decided again in float64).
Rows span several chunks (CHUNK = 128) with a partial last one; sparse and dense (complement) rows,
grey values, dense hidden layers (std init) and the cRBM's label block are all covered.
"""
from __future__ import annotations

import numpy as np
import pytest

from khrbm.config import RunConfig
from khrbm.core import eval_kernels as ek
from khrbm.core import metrics
from khrbm.core.rbm import Params, crbm_log_posterior, init_params, sigmoid
from khrbm.data import load_dataset
from khrbm.train.run import Run

N_ROWS = 300            # 3 chunks, the last one partial


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    d = load_dataset("mnist", data_dir=mnist_dir)
    return d.x_val[:N_ROWS], d.y_val[:N_ROWS]


def _params(N, M, dtype, init="lecun", seed=1):
    p = init_params(N, M, init, seed, dtype)
    g = np.random.default_rng(seed)
    p.a[:] = g.normal(0, 0.5, N)
    p.b[:] = g.normal(0, 0.5, M)
    return p


def _visible(x, y, n_labels, dtype):
    V = np.zeros((len(x), x.shape[1] + n_labels), dtype)
    V[:, : x.shape[1]] = x
    if n_labels:
        V[np.arange(len(x)), x.shape[1] + y] = 1
    return V


def _numpy_recon(V, p, key, n_pix):
    return metrics.reconstruction_mse(V, p, key, n_pix), metrics.cross_entropy(V, p, key, n_pix)


@pytest.mark.parametrize("case", ["rbm", "crbm", "inverted_std", "grey"])
def test_reconstruction_float64_equals_numpy(mnist, case):
    x, y = mnist
    n_labels = 10 if case == "crbm" else 0
    if case == "inverted_std":
        x = 1 - x                                   # 87 % of the pixels on: complement gathers
    V = _visible(x, y, n_labels, np.float64)
    if case == "grey":
        V = np.random.default_rng(2).random(V.shape)
    p = _params(V.shape[1], 37, np.float64, init="std" if case == "inverted_std" else "lecun")
    for key in (5, 12345):
        ours = ek.reconstruction_metrics(V, p, key, 784)
        ref = _numpy_recon(V, p, key, 784)
        np.testing.assert_allclose(ours, ref, rtol=1e-11, atol=0)
    assert ek.reconstruction_metrics(V, p, 5, 784) != ek.reconstruction_metrics(V, p, 6, 784)


def test_reconstruction_float32_close_to_numpy(mnist):
    x, y = mnist
    for n_labels in (0, 10):
        V = _visible(x, y, n_labels, np.float32)
        p = _params(V.shape[1], 60, np.float32)
        mse, ce = ek.reconstruction_metrics(V, p, 9, 784)
        mse_ref, ce_ref = _numpy_recon(V, p, 9, 784)
        assert abs(mse - mse_ref) * V.shape[0] * 784 <= 3        # at most a few flipped pixels
        assert abs(ce - ce_ref) <= 1e-6 * ce_ref


def test_accuracy_float64_equals_numpy(mnist):
    x, y = mnist
    p = _params(794, 45, np.float64)
    pred = crbm_log_posterior(x, p, 10).argmax(axis=1)
    np.testing.assert_array_equal(ek.crbm_predict(x, p, 10), pred)
    assert ek.crbm_accuracy(x, y, p, 10) == metrics.crbm_accuracy(x, y, p, 10)
    grey = np.random.default_rng(4).random(x.shape)
    np.testing.assert_array_equal(ek.crbm_predict(grey, p, 10),
                                  crbm_log_posterior(grey, p, 10).argmax(axis=1))


def test_accuracy_float32_predictions_are_the_exact_ones(mnist):
    """float32 logits, with near ties decided in float64: the predictions are NumPy's float64 argmax. With
    all label rows equal but label 3's moved by ±1e-6 on two units, labels 0 and 3 differ by ~1e-7 of
    logits ~100 (below float32's resolution): only the float64 decision gets each row right."""
    x, y = mnist
    p = _params(794, 45, np.float32)
    np.testing.assert_array_equal(ek.crbm_predict(x, p, 10),
                                  crbm_log_posterior(x, p, 10).argmax(axis=1))
    g = np.random.default_rng(5)
    W = g.integers(-1, 2, size=(794, 20)).astype(np.float32)
    W[784:] = W[784]
    W[784 + 3, 0] += np.float32(1e-6)
    W[784 + 3, 1] -= np.float32(1e-6)
    near = Params(W, np.zeros(794, np.float32), np.zeros(20, np.float32))
    pred = crbm_log_posterior(x, near, 10).argmax(axis=1)
    assert set(pred.tolist()) == {0, 3}
    np.testing.assert_array_equal(ek.crbm_predict(x, near, 10), pred)


@pytest.mark.parametrize("M", [2, 37, 64, 131])
def test_overlap_equals_numpy(M):
    g = np.random.default_rng(M)
    W = g.normal(0, 1, (794, M))
    W[:, M // 2] = 0.0                                          # a zero column: cosine 0 with everything
    for n_pix in (None, 784):
        ref = metrics.receptive_field_overlap(W, n_pix)
        assert abs(ek.receptive_field_overlap(W, n_pix) - ref) <= 1e-12
        assert abs(ek.receptive_field_overlap(W.astype(np.float32), n_pix) - ref) <= 1e-6
    assert np.isnan(ek.receptive_field_overlap(W[:, :1]))


def test_mean_field_reconstruction(mnist):
    x, y = mnist
    for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        p = _params(794, 50, dt)
        V = _visible(x[:20], y[:20], 10, dt)
        ref = sigmoid(sigmoid(V @ p.W + p.b) @ p.W.T + p.a)
        np.testing.assert_allclose(ek.mean_field_reconstruction(V, p), ref, rtol=0, atol=tol)


def test_float32_softplus_tail_accuracy():
    """The cross-entropy's and accuracy's float32 log1p(exp(-|x|)) is within 1.2e-7 (absolute and relative)."""
    x = np.linspace(-90, 90, 360_001).astype(np.float32)
    exact = np.log1p(np.exp(-np.abs(x.astype(np.float64))))
    ours = ek.log1p_exp_array(x).astype(np.float64)
    assert np.abs(ours - exact).max() < 1.2e-7
    assert (np.abs(ours - exact) / np.maximum(exact, 1e-300))[exact > 1e-30].max() < 1.2e-7


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_split_metrics_one_pass_equals_numpy(mnist, dtype):
    """split_metrics (one pass: the MSE, the cross-entropy, the accuracy) gives the NumPy metrics' values on
    V = [x, one-hot y], from uint8 pixels as from float ones, and the same MSE/CE whether or not it predicts."""
    x, y = mnist
    p = _params(794, 45, dtype)
    V = _visible(x, y, 10, dtype)
    mse_ref, ce_ref = _numpy_recon(V, p, 17, 784)
    acc_ref = metrics.crbm_accuracy(x, y, p, 10)
    ours = ek.split_metrics(x, y, p, 17, 10, True)
    assert ek.split_metrics(x.astype(dtype), y, p, 17, 10, True) == ours
    assert ek.split_metrics(x, y, p, 17, 10, False)[:2] == ours[:2]
    assert np.isnan(ek.split_metrics(x, y, p, 17, 10, False)[2])
    assert ours[2] == acc_ref
    if dtype == np.float64:
        np.testing.assert_allclose(ours[:2], (mse_ref, ce_ref), rtol=1e-11, atol=0)
    else:
        assert abs(ours[0] - mse_ref) * V.shape[0] * 784 <= 3
        assert abs(ours[1] - ce_ref) <= 1e-6 * ce_ref
    q = _params(784, 45, dtype)                                  # a plain RBM: no label block, no accuracy
    mse, ce, acc = ek.split_metrics(x, y, q, 3, 0, True)
    assert np.isnan(acc) and (mse, ce) == ek.reconstruction_metrics(_visible(x, y, 0, dtype), q, 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accuracy_large_activations_take_the_direct_terms(mnist, dtype):
    """Pre-activations or label weights beyond EXP_RANGE (where e^{±c} e^{±W_y} could overflow) are scored
    term by term: still NumPy's float64 argmax."""
    x, y = mnist
    big_c = _params(794, 30, dtype)
    big_c.W[:784] *= 60                                          # |b + xW| far beyond EXP_RANGE for most rows
    big_w = _params(794, 30, dtype)
    big_w.W[784 + 4] += dtype(2 * ek.EXP_RANGE)                  # one label row beyond EXP_RANGE
    for p in (big_c, big_w):
        c = np.asarray(x, np.float64) @ p.W[:784].astype(np.float64) + p.b
        assert np.abs(c).max() > ek.EXP_RANGE or np.abs(p.W[784:]).max() > ek.EXP_RANGE
        np.testing.assert_array_equal(ek.crbm_predict(x, p, 10), crbm_log_posterior(x, p, 10).argmax(axis=1))


def test_values_do_not_depend_on_the_number_of_threads(mnist):
    """Chunks have fixed rows and partial sums of their own: one thread or two give the same bits."""
    import numba

    x, y = mnist
    p = _params(794, 40, np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ek.split_metrics(x, y, p, 8, 10, True)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = ek.split_metrics(x, y, p, 8, 10, True)
    finally:
        numba.set_num_threads(before)
    assert one == two


def test_run_evaluate_same_point_on_both_backends(mnist_dir):
    """Run.evaluate through the kernels (backend numba) and through NumPy (backend numpy): one point."""
    cfg = RunConfig(task="classification", n_hidden=30, train_size=500, val_size=300, eval_size=200,
                    dtype="float64", epochs=1)
    runs = [Run(cfg.replace(backend=b)) for b in ("numba", "numpy")]
    for run in runs:
        for _ in range(3):
            run.train_batch()
    ours, ref = (run.evaluate() for run in runs)
    assert ours.keys() == ref.keys()
    for k in ours:
        assert ours[k] == pytest.approx(ref[k], rel=1e-9, abs=0), k
