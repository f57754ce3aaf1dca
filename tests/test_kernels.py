"""The Numba step (khrbm.core.kernels) against the NumPy reference (khrbm.core.step.numpy_step).

* Same key → same uniforms: in float64 the two must agree to rounding after every step; in float32 a
  unit whose probability is within ~1e-6 of its uniform may flip, so only a tiny fraction of W rows
  may differ (a systematic error moves every row and fails).
* Different keys: the float32 step's mean change of θ equals the reference's within standard errors.
* The top-(ℓ+1) selection breaks ties like kh.kh_ranking (lower index first).
"""
from __future__ import annotations

import numpy as np
import pytest

from khrbm.core import kernels, rng
from khrbm.data import load_dataset
from khrbm.core.kh import kh_ranking
from khrbm.core.rbm import Params, init_params
from khrbm.core.step import StepSettings, numpy_step


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    d = load_dataset("mnist", data_dir=mnist_dir)
    return d.x_train[:2000], d.y_train[:2000]


def _batch(x, y, t, B, n_labels, n_pixels=784):
    X = x[t * B:(t + 1) * B, :n_pixels]
    if n_labels:
        X = np.concatenate([X, np.eye(n_labels, dtype=np.uint8)[y[t * B:(t + 1) * B] % n_labels]], axis=1)
    return np.ascontiguousarray(X)


def _params(N, M, dtype, seed=1, init="lecun"):
    p = init_params(N, M, init, seed, dtype)
    g = np.random.default_rng(seed)
    p.a[:] = g.normal(0, 0.5, N)
    p.b[:] = g.normal(0, 0.5, M)
    return p


def _compare_steps(st, x, y, N, M, B, dtype, steps=3, rows=None, n_labels=0, row_tol=0.0, init="lecun",
                   transform=None):
    """Run ``steps`` steps of both backends from the same parameters and keys. Before each step the
    Numba side restarts from the reference's parameters, so a rare flipped unit cannot propagate.
    Returns the fraction of W rows whose change disagrees (must be <= row_tol) after asserting that
    a, b and the rankings agree."""
    ref = _params(N, M, dtype, init=init)
    stepper = kernels.NumbaStepper(N, M, B, dtype)
    chain = None
    bad_rows = 0
    bad_ranked = 0
    atol = 1e-9 if dtype == np.float64 else 2e-6
    for t in range(steps):
        X = _batch(x, y, t, rows or B, n_labels, N - n_labels)
        if transform is not None:
            X = transform(X)
        if st.persistent and chain is None:
            chain = X.astype(dtype)
        ours = ref.copy()
        key = rng.stream(7, t)
        r1 = numpy_step(ref, X, st, key, None if chain is None else chain.copy())
        r2 = stepper.step(ours, X, st, key, None if chain is None else chain.copy())
        if st.kh_active:
            assert r2.ranked is not None and r2.ranked.shape == r1.ranked.shape
            bad_ranked += int((r1.ranked != r2.ranked).any(axis=1).sum())
        else:
            assert r2.ranked is None
        if st.persistent:
            assert r2.chain.shape == X.shape and r2.chain.dtype == np.dtype(dtype)
            bad_rows += int((r1.chain != r2.chain).any(axis=1).sum())
            chain = r1.chain
        else:
            assert r2.chain is None
        scale = max(np.abs(ref.W).max(), 1.0)
        bad_rows += int((~np.isclose(ours.W, ref.W, rtol=0, atol=atol * scale)).any(axis=1).sum())
        if row_tol == 0.0:
            np.testing.assert_allclose(ours.a, ref.a, rtol=0, atol=atol * scale)
            np.testing.assert_allclose(ours.b, ref.b, rtol=0, atol=atol * scale)
    assert bad_ranked <= row_tol * steps * (rows or B), f"{bad_ranked} rankings differ"
    frac = bad_rows / (steps * N)
    assert frac <= row_tol, f"{bad_rows} of {steps * N} W rows (or chain rows) differ"
    return frac


CASES = {
    "cd1": StepSettings(),
    "cd3": StepSettings(k=3),
    "pcd2": StepSettings(k=2, persistent=True),
    "td_l1": StepSettings(kh_mode="td", eps=0.05, delta=0.4, ell=1),
    "td_l3": StepSettings(kh_mode="td", eps=0.05, delta=0.6, ell=3),
    "bu_l1": StepSettings(kh_mode="bu", eps=0.05, delta=0.4, ell=1),
    "bu_l3_band_p3": StepSettings(kh_mode="bu", eps=0.05, delta=0.3, ell=3, ell_band=True, p=3.0, radius=0.1),
    "td_l3_band_p3": StepSettings(kh_mode="td", eps=0.02, delta=0.3, ell=3, ell_band=True, p=3.0, radius=0.1),
    "td_pcd": StepSettings(kh_mode="td", eps=0.02, k=2, persistent=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float64_same_uniforms_mnist(mnist, name):
    x, y = mnist
    _compare_steps(CASES[name], x, y, 784, 40, 50, np.float64)


@pytest.mark.parametrize("name", ["cd1", "pcd2", "td_l3", "bu_l1", "td_l3_band_p3"])
def test_float64_same_uniforms_small(mnist, name):
    """N = 20 pixels, M = 7: KH with K = 7 postsynaptic units in BU, partial batches (13 of 16 rows)."""
    x, y = mnist
    xs = x[:, 300:320]
    _compare_steps(CASES[name], xs, y, 20, 7, 16, np.float64, steps=4, rows=13)


@pytest.mark.parametrize("sampling", ["argmax", "softmax"])
def test_float64_crbm(mnist, sampling):
    x, y = mnist
    for st in (StepSettings(n_labels=10, label_sampling=sampling),
               StepSettings(n_labels=10, label_sampling=sampling, kh_mode="td", eps=0.02, k=2)):
        _compare_steps(st, x, y, 794, 30, 40, np.float64, n_labels=10)


def test_float64_partial_batch_and_dense_rows(mnist):
    """A last batch smaller than batch_size; inverted MNIST (87 % of pixels on) and std init (dense
    hidden samples) take the complement gathers; float inputs with grey values are not binary."""
    x, y = mnist
    _compare_steps(StepSettings(kh_mode="bu", eps=0.03), x, y, 784, 40, 50, np.float64, rows=17)
    _compare_steps(StepSettings(kh_mode="td", eps=0.03, k=2), x, y, 784, 40, 50, np.float64, init="std",
                   transform=lambda X: 1 - X)
    grey = np.random.default_rng(3).random((90, 784))
    _compare_steps(StepSettings(kh_mode="bu", eps=0.03), grey, y, 784, 20, 30, np.float64)
    _compare_steps(StepSettings(k=2, persistent=True), grey, y, 784, 20, 30, np.float64)


@pytest.mark.parametrize("name", ["cd1", "td_l1", "bu_l3_band_p3", "pcd2"])
def test_float32_same_uniforms_rare_flips(mnist, name):
    x, y = mnist
    frac = _compare_steps(CASES[name], x, y, 784, 60, 50, np.float32, steps=4, row_tol=0.005)
    assert frac <= 0.005


def _mean_step(step_fn, params0, X, st, keys, dtype):
    dW, da, db = [], [], []
    for key in keys:
        p = params0.copy()
        step_fn(p, X, st, key)
        dW.append((p.W - params0.W).astype(np.float64))
        da.append((p.a - params0.a).astype(np.float64))
        db.append((p.b - params0.b).astype(np.float64))
    out = []
    for arr in (dW, da, db):
        arr = np.stack(arr)
        out.append((arr.mean(0), arr.std(0, ddof=1) / np.sqrt(len(arr))))
    return out


@pytest.mark.parametrize("st", [StepSettings(), StepSettings(kh_mode="td", eps=0.02, delta=0.4)],
                         ids=["cd1", "kh_td"])
def test_float32_statistically_equal(mnist, st):
    """Independent keys: the mean change of every parameter agrees within standard errors."""
    x, y = mnist
    N, M, B, n = 784, 30, 40, 120
    p0 = _params(N, M, np.float32)
    X = x[:B]
    stepper = kernels.NumbaStepper(N, M, B, np.float32)
    ours = _mean_step(lambda p, X, st, k: stepper.step(p, X, st, k), p0, X, st, range(n), np.float32)
    ref = _mean_step(numpy_step, p0, X, st, range(10_000, 10_000 + n), np.float32)
    for (m1, s1), (m2, s2) in zip(ours, ref):
        se = np.sqrt(s1**2 + s2**2)
        live = se > 0
        assert np.array_equal(m1[~live], m2[~live])
        z = (m1[live] - m2[live]) / se[live]
        assert 0.75 < np.mean(z**2) < 1.33, np.mean(z**2)
        assert np.mean(np.abs(z) > 4.5) < 1e-3


def test_float32_sigmoid_accuracy():
    """The float32 kernels use their own vectorized exp: within 1.5e-7 of the exact sigmoid everywhere,
    NaN stays NaN, ±inf saturate."""
    x = np.linspace(-100, 100, 400_001).astype(np.float32)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert np.abs(kernels.sigmoid_array(x) - exact).max() < 1.5e-7
    edge = kernels.sigmoid_array(np.array([np.nan, -np.inf, np.inf, 0.0], np.float32))
    assert np.isnan(edge[0]) and edge[1] < 1e-30 and edge[2] == 1.0 and edge[3] == 0.5


def test_top_selection_ties_match_kh_ranking():
    g = np.random.default_rng(0)
    for ell in (1, 3):
        I = g.integers(-2, 3, size=(9, 25)).astype(np.float64)     # many exact ties
        I[:, 0] = 0.0                                               # a column of all-equal currents
        np.testing.assert_array_equal(kernels.top_ranked(I, ell), kh_ranking(I, ell))
        I32 = I.astype(np.float32)
        np.testing.assert_array_equal(kernels.top_ranked(I32, ell), kh_ranking(I32, ell))


def test_step_ties_in_currents(mnist):
    """Integer-valued weights make many KH currents equal: the step's ranking must still match."""
    x, y = mnist
    N, M, B = 784, 12, 20
    for mode in ("td", "bu"):
        for ell in (1, 3):
            W = np.random.default_rng(ell).integers(-1, 2, size=(N, M)).astype(np.float64)
            p1 = Params(W, np.zeros(N), np.zeros(M))
            p2 = p1.copy()
            st = StepSettings(kh_mode=mode, eps=0.01, ell=ell)
            r1 = numpy_step(p1, x[:B], st, 11)
            r2 = kernels.NumbaStepper(N, M, B, np.float64).step(p2, x[:B], st, 11)
            np.testing.assert_array_equal(r1.ranked, r2.ranked)
            np.testing.assert_allclose(p1.W, p2.W, rtol=0, atol=1e-9)


def test_warmup_then_fresh_stepper(mnist):
    x, y = mnist
    kernels.warmup((np.float32,))
    s = kernels.make_stepper("numba", 784, 25, 10, np.float32)
    s.warmup()
    p = init_params(784, 25, "lecun", 3, np.float32)
    W0 = p.W.copy()
    res = s.step(p, x[:10], StepSettings(kh_mode="td", eps=0.01), rng.stream(3, 0))
    assert res.ranked.shape == (10, 2) and res.chain is None
    assert np.isfinite(p.W).all() and not np.array_equal(p.W, W0)
    # PCD: the returned chain is the caller's own array, not a buffer reused by the next step
    chain = x[:10].astype(np.float32)
    c1 = s.step(p, x[:10], StepSettings(persistent=True), 1, chain).chain
    c1_copy = c1.copy()
    c2 = s.step(p, x[:10], StepSettings(persistent=True), 2, c1).chain
    assert c2 is not c1 and np.array_equal(c1, c1_copy)
    # the numpy backend behind the same interface
    q = init_params(784, 25, "lecun", 3, np.float32)
    assert kernels.make_stepper("numpy", 784, 25, 10, np.float32).step(q, x[:10], StepSettings(), 1).chain is None
    with pytest.raises(ValueError):
        kernels.make_stepper("tpu", 784, 25, 10)
    with pytest.raises(ValueError):
        s.step(p, x[:11], StepSettings(), 1)            # more rows than batch_size
    with pytest.raises(ValueError):
        s.step(p, x[:10], StepSettings(kh_mode="bu", eps=0.1, ell=25), 1)   # ℓ ≥ K


def test_shuffled_control_delegates(mnist):
    x, y = mnist
    st = StepSettings(kh_mode="td", eps=0.02, shuffle_xi=True)
    p1 = _params(784, 20, np.float64)
    p2 = p1.copy()
    numpy_step(p1, x[:30], st, 5)
    kernels.NumbaStepper(784, 20, 30, np.float64).step(p2, x[:30], st, 5)
    np.testing.assert_array_equal(p1.W, p2.W)


def test_params_norm_after_a_step(mnist):
    """The step reports ‖θ‖₂ of the parameters it leaves (the divergence check's bound on max |θ|), NaN for
    a NaN anywhere, inf for an inf."""
    x, y = mnist
    s = kernels.NumbaStepper(784, 30, 20, np.float32)
    for st in (StepSettings(), StepSettings(kh_mode="td", eps=0.02)):
        p = _params(784, 30, np.float32)
        s.step(p, x[:20], st, 3)
        exact = np.sqrt(sum((v.astype(np.float64) ** 2).sum() for v in (p.W, p.a, p.b)))
        assert s.params_norm == pytest.approx(exact, rel=1e-5)
        for name, i, bad in (("W", (5, 7), np.nan), ("a", 3, np.nan), ("b", 29, np.nan), ("W", (700, 2), np.inf)):
            q = p.copy()
            getattr(q, name)[i] = bad
            s.step(q, x[:20], st, 4)
            assert not np.isfinite(s.params_norm), (name, bad)
    s.step(p, x[:20], StepSettings(kh_mode="td", eps=0.02, shuffle_xi=True), 5)
    assert s.params_norm is None


def _gather_numpy(S, ix, vx, nn, binary, tot):
    """The gather's sums in its order (a NumPy transcription): rows 4 at a time as (s0 + s1) + (s2 + s3)
    (products vx·s for lists with values), then one by one; with column sums ``tot``, a binary list with
    more ones than zeros as tot minus the same sums over its zeros ix[nn:]."""
    complement = binary and tot is not None and 2 * nn > len(S)
    rows = ix[nn:len(S)] if complement else ix[:nn]
    terms = S[rows] if binary else vx[:nn, None] * S[rows]
    o = np.zeros(S.shape[1], S.dtype)
    n4 = len(rows) // 4 * 4
    for n in range(0, n4, 4):
        o += (terms[n] + terms[n + 1]) + (terms[n + 2] + terms[n + 3])
    for n in range(n4, len(rows)):
        o += terms[n]
    return tot - o if complement else o


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_gathers_keep_their_sums(dtype):
    """kernels._gather_row (binary lists without products) and kernels._gather_rows (the lists of a
    block advancing together over blocks of rows of S) give exactly the sums of _gather_numpy, in its
    order: sparse and dense (complement) binary rows, rows with values, empty and full rows, lengths
    that are not multiples of 4, more rows of S than a GATHER_BLOCK."""
    g = np.random.default_rng(3)
    n_all, K = 3 * kernels.GATHER_BLOCK + 5, 37
    S = g.standard_normal((n_all, K)).astype(dtype)
    tot = S.sum(axis=0, dtype=dtype)
    V = (g.random((13, n_all)) < np.array([0.05, 0.2, 0.3, 0.45, 0.55, 0.7, 0.95] + [0.3] * 6)[:, None])
    V = V.astype(dtype)
    V[7] = 0
    V[8] = 1
    V[9] *= g.random(n_all).astype(dtype)                  # values: products
    V[10, :4] = 1                                          # ones only in the first rows of S, then none
    V[11, -3:] = 1                                         # ones only in the last rows
    idx = np.empty(V.shape, np.int32)
    val = np.empty(V.shape, dtype)
    nnz = np.empty(len(V), np.int32)
    binary = np.empty(len(V), np.bool_)
    for q in range(len(V)):
        nnz[q], binary[q] = kernels._list_row(V[q], idx[q], val[q])
    assert binary.sum() == len(V) - 1
    for use_tot in (True, False):
        ref = np.array([_gather_numpy(S, idx[q], val[q], nnz[q], binary[q], tot if use_tot else None)
                        for q in range(len(V))])
        one = np.empty_like(ref)
        for q in range(len(V)):
            kernels._gather_row(one[q], idx[q], val[q], nnz[q], binary[q], S, tot, use_tot)
        block = np.full_like(ref, np.nan)
        kernels._gather_rows(block, idx, val, nnz, binary, len(V), S, tot, use_tot, np.empty(len(V), np.int64))
        np.testing.assert_array_equal(one, ref)
        np.testing.assert_array_equal(block, ref)
        np.testing.assert_allclose(ref, V @ S.astype(np.float64), rtol=0, atol=1e-4 if dtype == np.float32 else 1e-12)
