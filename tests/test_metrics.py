"""Tests of khrbm/metrics.py and khrbm/probe.py against independent transcriptions (loops, brute-force
enumeration, scikit-learn)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from khrbm.core import metrics, rng
from khrbm.core.kh import kh_delta
from khrbm.core.probe import xi_probe
from khrbm.core.rbm import Params, cd_gradient
from khrbm.core.step import StepSettings


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def random_params(N, M, seed, scale=1.0, bias_scale=0.5):
    g = np.random.default_rng(seed)
    return Params(g.normal(0, scale, (N, M)), g.normal(0, bias_scale, N), g.normal(0, bias_scale, M))


def binary(shape, seed, p=0.4):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# reconstruction MSE and cross-entropy (Eqs. 11, 12), same uniforms as documented in metrics.py
# ---------------------------------------------------------------------------------------------
def loop_hidden(V, params, key):
    B, (N, M) = len(V), params.W.shape
    u = rng.uniforms(rng.stream(key, rng.GIBBS_HIDDEN), (B, M))
    H = np.zeros((B, M))
    for s in range(B):
        for j in range(M):
            act = params.b[j] + sum(float(V[s, i]) * params.W[i, j] for i in range(N))
            H[s, j] = 1.0 if u[s, j] < sig(act) else 0.0
    return H


def loop_mse(V, params, key, n_pix):
    B, (N, M) = len(V), params.W.shape
    H = loop_hidden(V, params, key)
    u = rng.uniforms(rng.stream(key, rng.GIBBS_VISIBLE), (B, N))
    total = 0.0
    for s in range(B):
        for i in range(n_pix):
            act = params.a[i] + sum(H[s, j] * params.W[i, j] for j in range(M))
            vhat = 1.0 if u[s, i] < sig(act) else 0.0
            total += (float(V[s, i]) - vhat) ** 2
    return total / (B * n_pix)


def loop_ce(V, params, key, n_pix):
    B, M = len(V), params.W.shape[1]
    H = loop_hidden(V, params, key)
    total = 0.0
    for s in range(B):
        for i in range(n_pix):
            p = sig(params.a[i] + sum(H[s, j] * params.W[i, j] for j in range(M)))
            p = min(max(p, 1e-6), 1 - 1e-6)
            v = float(V[s, i])
            total -= v * math.log(p) + (1 - v) * math.log(1 - p)
    return total / (B * n_pix)


@pytest.mark.parametrize("n_labels", [0, 3])
def test_reconstruction_mse_and_cross_entropy_match_loops(n_labels):
    N_pix, M, B = 9, 6, 12
    params = random_params(N_pix + n_labels, M, seed=1, scale=2.0)
    V = binary((B, N_pix + n_labels), 2)
    if n_labels:
        V[:, N_pix:] = np.eye(n_labels, dtype=np.uint8)[np.arange(B) % n_labels]
    n_pixels = N_pix if n_labels else None
    for key in (rng.stream(1, 5), rng.stream(2, 9)):
        mse = metrics.reconstruction_mse(V, params, key, n_pixels)
        ce = metrics.cross_entropy(V, params, key, n_pixels)
        assert mse == pytest.approx(loop_mse(V, params, key, N_pix), rel=1e-12, abs=1e-15)
        assert ce == pytest.approx(loop_ce(V, params, key, N_pix), rel=1e-10)
    # reproducible, and a different key gives a different sample
    assert metrics.reconstruction_mse(V, params, 7, n_pixels) == metrics.reconstruction_mse(V, params, 7, n_pixels)


def test_reconstruction_metrics_analytic_cases():
    """W = 0, a = +40: v̂ = 1 always and p = 1 - 1e-6 (clipped): MSE = fraction of zeros,
    CE = -(f1 log(1-1e-6) + f0 log 1e-6). Label columns are excluded when n_pixels is given."""
    N, M, B = 10, 4, 20
    params = Params(np.zeros((N, M)), np.full(N, 40.0), np.zeros(M))
    V = binary((B, N), 3, p=0.3)
    f0 = 1.0 - V[:, :7].mean()
    assert metrics.reconstruction_mse(V, params, 1, n_pixels=7) == pytest.approx(f0, rel=1e-12)
    ce = -((1 - f0) * math.log(1 - 1e-6) + f0 * math.log(1e-6))
    assert metrics.cross_entropy(V, params, 1, n_pixels=7) == pytest.approx(ce, rel=1e-9)
    # a = -40: v̂ = 0 and p = 1e-6 (lower clip)
    params_neg = Params(np.zeros((N, M)), np.full(N, -40.0), np.zeros(M))
    f1 = V.mean()
    assert metrics.reconstruction_mse(V, params_neg, 2) == pytest.approx(f1, rel=1e-12)
    ce = -(f1 * math.log(1e-6) + (1 - f1) * math.log(1 - 1e-6))
    assert metrics.cross_entropy(V, params_neg, 2) == pytest.approx(ce, rel=1e-9)
    # float32 parameters give the same (exactly representable) answer
    p32 = Params(params.W.astype(np.float32), params.a.astype(np.float32), params.b.astype(np.float32))
    assert metrics.reconstruction_mse(V, p32, 1) == pytest.approx(1.0 - V.mean(), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# receptive-field overlap
# ---------------------------------------------------------------------------------------------
def loop_overlap(W):
    N, M = W.shape
    best = []
    for j in range(M):
        cj = W[:, j]
        cos = []
        for k in range(M):
            if k != j:
                ck = W[:, k]
                cos.append(sum(cj * ck) / math.sqrt(sum(cj * cj) * sum(ck * ck)))
        best.append(max(cos))
    return sum(best) / M


def test_receptive_field_overlap_brute_force():
    W = np.random.default_rng(4).normal(size=(12, 9))
    ref = loop_overlap(W)
    assert metrics.receptive_field_overlap(W) == pytest.approx(ref, rel=1e-12)
    assert metrics.receptive_field_overlap(W, chunk=2) == pytest.approx(ref, rel=1e-12)
    assert metrics.receptive_field_overlap(W.astype(np.float32)) == pytest.approx(ref, rel=1e-5)
    # only the pixel rows count
    assert metrics.receptive_field_overlap(W, n_pixels=8) == pytest.approx(loop_overlap(W[:8]), rel=1e-12)


def test_receptive_field_overlap_duplicates_and_orthogonal():
    g = np.random.default_rng(5)
    base = g.normal(size=(10, 3))
    W = np.concatenate([base, 2.5 * base], axis=1)           # every column has a positive multiple
    assert metrics.receptive_field_overlap(W) == pytest.approx(1.0, abs=1e-12)
    # label rows appended that differ between the copies: 1 only when they are excluded
    Wl = np.concatenate([W, g.normal(size=(3, 6))], axis=0)
    assert metrics.receptive_field_overlap(Wl, n_pixels=10) == pytest.approx(1.0, abs=1e-12)
    assert metrics.receptive_field_overlap(Wl) < 0.999
    assert metrics.receptive_field_overlap(np.eye(5)) == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------------------------------------
# partition function, AIS, log-likelihood
# ---------------------------------------------------------------------------------------------
def brute_log_Z(params):
    """log Σ_{v,h} exp(vᵀWh + aᵀv + bᵀh) over the full joint table (both layers enumerated)."""
    W, a, b = params.W, params.a, params.b
    Vs, Hs = states(W.shape[0]), states(W.shape[1])
    neg_E = Vs @ W @ Hs.T + (Vs @ a)[:, None] + (Hs @ b)[None, :]
    m = neg_E.max()
    return float(m + np.log(np.exp(neg_E - m).sum()))


@pytest.mark.parametrize("N,M", [(6, 5), (4, 7), (5, 5)])
def test_exact_log_partition_against_joint_enumeration(N, M):
    params = random_params(N, M, seed=N * 10 + M, scale=1.3, bias_scale=1.0)
    ref = brute_log_Z(params)
    assert metrics.exact_log_partition(params) == pytest.approx(ref, rel=1e-12)
    assert metrics.exact_log_partition(params, block=3) == pytest.approx(ref, rel=1e-12)


def test_exact_log_partition_refuses_large_models():
    params = Params(np.zeros((23, 30)), np.zeros(23), np.zeros(30))
    with pytest.raises(ValueError, match="at most 22"):
        metrics.exact_log_partition(params)
    # a small layer of 22 units is fine (in principle); here check a wide/short one quickly
    params = Params(np.zeros((3, 1000)), np.zeros(3), np.zeros(1000))
    assert metrics.exact_log_partition(params) == pytest.approx(1003 * math.log(2), rel=1e-12)


def test_ais_matches_exact_log_partition():
    params = random_params(10, 8, seed=7, scale=1.0, bias_scale=0.5)
    exact = metrics.exact_log_partition(params)
    assert exact == pytest.approx(brute_log_Z(params), rel=1e-12)
    est, lo, hi = metrics.ais_log_partition(params, n_chains=200, n_betas=2000, seed=3)
    assert abs(est - exact) < 0.1
    assert lo <= est <= hi
    assert lo - 0.05 <= exact <= hi + 0.05
    # a non-zero base-rate model (tests log Z_A = Σ softplus(base_a) + M log 2)
    V = binary((50, 10), 8, p=0.3)
    base = metrics.base_rate_biases(V)
    est2, lo2, hi2 = metrics.ais_log_partition(params, n_chains=200, n_betas=2000, seed=4, base_a=base)
    assert abs(est2 - exact) < 0.1
    # reproducible
    assert metrics.ais_log_partition(params, 20, 50, seed=9) == metrics.ais_log_partition(params, 20, 50, seed=9)


def test_ais_is_exact_when_base_model_equals_target_without_weights():
    """W = 0 and base_a = a: every importance weight is the same, log Z = Σ softplus(a) + Σ softplus(b)."""
    g = np.random.default_rng(9)
    N, M = 30, 12
    params = Params(np.zeros((N, M)), g.normal(size=N), g.normal(size=M))
    ref = np.logaddexp(0, params.a).sum() + np.logaddexp(0, params.b).sum()
    est, lo, hi = metrics.ais_log_partition(params, n_chains=5, n_betas=20, seed=1, base_a=params.a)
    assert est == pytest.approx(ref, rel=1e-12)
    assert lo == pytest.approx(ref, rel=1e-12) and hi == pytest.approx(ref, rel=1e-12)


def test_log_likelihood_normalised():
    params = random_params(6, 4, seed=10, scale=1.2)
    log_Z = metrics.exact_log_partition(params)
    Vs = states(6)
    total = sum(math.exp(metrics.log_likelihood(v[None], params, log_Z)) for v in Vs)
    assert total == pytest.approx(1.0, rel=1e-12)
    # mean over rows
    lls = [metrics.log_likelihood(v[None], params, log_Z) for v in Vs[:5]]
    assert metrics.log_likelihood(Vs[:5], params, log_Z) == pytest.approx(np.mean(lls), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# pseudo-log-likelihood against scikit-learn
# ---------------------------------------------------------------------------------------------
def sklearn_rbm(params, random_state):
    from sklearn.neural_network import BernoulliRBM
    rbm = BernoulliRBM(n_components=params.n_hidden, random_state=random_state)
    rbm.components_ = params.W.T.copy()
    rbm.intercept_hidden_ = params.b.copy()
    rbm.intercept_visible_ = params.a.copy()
    rbm.h_samples_ = np.zeros((1, params.n_hidden))
    rbm.n_features_in_ = params.n_visible
    return rbm


def testpll_samples_equal_sklearn_score_samples_at_sklearns_flips():
    params = random_params(12, 7, seed=12, scale=1.5)
    V = binary((40, 12), 13, p=0.5).astype(np.float64)
    for rs in (0, 1, 123):
        ref = sklearn_rbm(params, rs).score_samples(V)
        flip = np.random.RandomState(rs).randint(0, V.shape[1], V.shape[0])   # sklearn's own draw
        np.testing.assert_allclose(metrics.pll_samples(V, params, flip), ref, rtol=1e-10)


def test_pseudo_log_likelihood_expectation_over_flips():
    """The public PLL (random flip per row) against the exact average over all flip positions, with the
    per-position values taken from scikit-learn (one row at a time, random_state chosen to hit each
    position) for a few rows, and the validated helper for the rest; tolerance 5 standard errors."""
    N, B = 8, 3000
    params = random_params(N, 5, seed=14, scale=1.5)
    V = binary((B, N), 15, p=0.5).astype(np.float64)
    # make every flip position matter: the last pixel is off but strongly favoured on, so flipping it
    # (and only it) costs about -8N; a flip that never picks the last position is detected
    params.a[-1] = 8.0
    V[:, -1] = 0.0
    per_pos = np.stack([metrics.pll_samples(V, params, np.full(B, i)) for i in range(N)], axis=1)
    # sklearn spot check of the per-position table on the first row
    hit = {}
    for rs in range(200):
        i = int(np.random.RandomState(rs).randint(0, N, 1)[0])
        hit.setdefault(i, rs)
    for i, rs in hit.items():
        assert sklearn_rbm(params, rs).score_samples(V[:1])[0] == pytest.approx(per_pos[0, i], rel=1e-10)
    expected = per_pos.mean()
    se = np.sqrt(per_pos.var(axis=1).mean() / B)
    got = metrics.pseudo_log_likelihood(V, params, rng.stream(6, 1))
    assert abs(got - expected) < 5 * se
    assert got < 0


# ---------------------------------------------------------------------------------------------
# cRBM accuracy
# ---------------------------------------------------------------------------------------------
def test_crbm_accuracy_on_constructed_model():
    """3 pixels, 3 labels, 3 hidden units: hidden unit c links pixel c and label c strongly, so the
    posterior picks the label of the lit pixel. With 2 of every 8 labels wrong, accuracy is 0.75."""
    C = 3
    W = np.zeros((2 * C, C))
    for c in range(C):
        W[c, c] = 6.0
        W[C + c, c] = 6.0
    params = Params(W, np.zeros(2 * C), np.full(C, -6.0))
    n = 400
    y_true = np.arange(n) % C
    X = np.eye(C)[y_true]
    y = y_true.copy()
    wrong = (np.arange(n) % 8) < 2
    y[wrong] = (y[wrong] + 1) % C
    acc = 1.0 - wrong.mean()
    assert metrics.crbm_accuracy(X, y, params, C) == pytest.approx(acc, abs=1e-15)
    assert metrics.crbm_accuracy(X, y, params, C, chunk=7) == pytest.approx(acc, abs=1e-15)
    assert metrics.crbm_accuracy(X, y_true, params, C) == 1.0


# ---------------------------------------------------------------------------------------------
# ξ probe (Fig. 2)
# ---------------------------------------------------------------------------------------------
def probe_setup(lr=0.1, eps=0.05, mode="td", persistent=False):
    N, M, B = 10, 7, 6
    params = random_params(N, M, seed=20, scale=1.0)
    X = binary((B, N), 21, p=0.4).astype(np.float64)
    st = StepSettings(lr=lr, k=1, kh_mode=mode, eps=eps, delta=0.4, ell=1, radius=1.0, p=2.0,
                      persistent=persistent)
    return params, X, st


def direct_xi(X, params, st, key, trials, chain=None):
    """ḡ0 (flattened), δθ (flattened), ξ̄ from cd_gradient directly."""
    dW, _ = kh_delta(X, params, st.kh_mode, st.eps, st.delta, st.ell, st.radius, st.p, key)
    shifted = Params(params.W + dW, params.a, params.b)
    g0s, g1s = [], []
    for t in range(trials):
        kt = rng.stream(key, 7000 + t)
        c = chain if st.persistent else None
        g0s.append(np.concatenate([x.ravel() for x in cd_gradient(X, params, st.k, kt, c)[:3]]))
        g1s.append(np.concatenate([x.ravel() for x in cd_gradient(X, shifted, st.k, kt, c)[:3]]))
    dtheta = np.concatenate([dW.ravel(), np.zeros(params.a.size + params.b.size)])
    g0 = np.mean(g0s, axis=0)
    xi = np.mean(g1s, axis=0) - g0 - dtheta / st.lr
    return g0, dtheta, xi


@pytest.mark.parametrize("mode,persistent", [("td", False), ("bu", True)])
def test_xi_probe_matches_direct_computation(mode, persistent):
    params, X, st = probe_setup(mode=mode, persistent=persistent)
    chain = binary(X.shape, 22).astype(np.float64) if persistent else None
    key, trials = rng.stream(1, 33), 25
    before = params.copy()
    chain_before = None if chain is None else chain.copy()
    ratio, cosine = xi_probe(X, params, st, key, trials, chain)
    g0, _, xi = direct_xi(X, params, st, key, trials, chain)
    assert ratio == pytest.approx(np.linalg.norm(xi) / np.linalg.norm(g0), rel=1e-9)
    assert cosine == pytest.approx(g0 @ xi / (np.linalg.norm(g0) * np.linalg.norm(xi)), rel=1e-9)
    assert ratio > 0 and -1 <= cosine <= 1
    # params (and the chain) are untouched
    np.testing.assert_array_equal(params.W, before.W)
    np.testing.assert_array_equal(params.a, before.a)
    np.testing.assert_array_equal(params.b, before.b)
    if chain is not None:
        np.testing.assert_array_equal(chain, chain_before)


def test_xi_probe_dependence_on_learning_rate():
    """δθ and both gradients do not depend on η, so ξ(η) = c - δθ/η: (i) ratio·cosine = ξ·ḡ/|ḡ|² is affine in
    1/η; (ii) as η → 0, ξ → -δθ/η, so cosine → cos(ḡ, -δθ) and ratio·η → |δθ|/|ḡ|."""
    key, trials = rng.stream(2, 44), 10
    rc = []
    for lr in (0.05, 0.1, 0.4):
        params, X, st = probe_setup(lr=lr)
        r, c = xi_probe(X, params, st, key, trials)
        rc.append((1 / lr, r * c))
    (x1, q1), (x2, q2), (x3, q3) = rc
    assert (q2 - q1) / (x2 - x1) == pytest.approx((q3 - q1) / (x3 - x1), rel=1e-8)
    params, X, st = probe_setup(lr=1e-9)
    g0, dtheta, _ = direct_xi(X, params, st, key, trials)
    r, c = xi_probe(X, params, st, key, trials)
    assert c == pytest.approx(-(g0 @ dtheta) / (np.linalg.norm(g0) * np.linalg.norm(dtheta)), abs=1e-6)
    assert r * 1e-9 == pytest.approx(np.linalg.norm(dtheta) / np.linalg.norm(g0), rel=1e-6)
    # the slope of (i) is -δθ·ḡ/|ḡ|²
    assert (q2 - q1) / (x2 - x1) == pytest.approx(-(g0 @ dtheta) / (g0 @ g0), rel=1e-8)


def test_xi_probe_inactive_kh():
    params, X, _ = probe_setup()
    for st in (StepSettings(kh_mode="td", eps=0.0), StepSettings(kh_mode="off", eps=0.05)):
        ratio, cosine = xi_probe(X, params, st, 5, 3)
        assert ratio == 0.0 and math.isnan(cosine)


# --- bar selectivity (khrbm.core.metrics.bar_selectivity) --------------------------------------------------
def test_bar_masks_are_the_bars_make_bars_draws():
    from khrbm.core.metrics import bar_masks
    from khrbm.data import make_bars

    masks = bar_masks(6)
    images = make_bars(400, seed=3, size=6, p_bar=0.15)
    # every image is the union (logical or) of the bars it holds; a bar is held iff all its pixels are on
    for img in images:
        held = [m for m in masks if np.all(img[m > 0] == 1)]
        union = np.max(held, axis=0) if held else np.zeros(36)
        assert np.array_equal(union, img)
    assert masks.sum(axis=1).tolist() == [6] * 12 and masks[0].reshape(6, 6)[0].tolist() == [1] * 6


def test_bar_selectivity_on_constructed_receptive_fields():
    from khrbm.core.metrics import bar_masks, bar_selectivity

    size = 8
    masks = bar_masks(size)
    rng = np.random.default_rng(0)
    cols = [
        masks[2] + 0.05 * rng.normal(size=size * size),       # 0: horizontal bar 2, a little noise
        masks[size + 5] - 0.02,                              # 1: vertical bar 5 on a slightly negative ground
        masks[3] + masks[size + 1],                          # 2: a cross of two bars: matches two, not one
        -masks[4],                                           # 3: the negative of a bar
        np.ones(size * size),                                # 4: everything (cos 1/sqrt(8) with each bar)
        np.zeros(size * size),                               # 5: a dead unit
        masks[2] * 2.0,                                      # 6: bar 2 again
    ]
    W = np.stack(cols, axis=1)
    W = np.vstack([W, np.ones((3, W.shape[1]))])             # label rows of a cRBM are not pixels
    out = bar_selectivity(W, n_pixels=size * size)
    assert out["bar"].tolist() == [2, size + 5, -1, -1, -1, -1, 2]
    assert out["share"] == pytest.approx(3 / 7) and out["bars"] == 2
    # independent transcription of the cosine for unit 1
    w = W[: size * size, 1]
    cos = [float(w @ m / (np.linalg.norm(w) * np.linalg.norm(m))) for m in masks]
    assert out["cosine"][1] == pytest.approx(max(cos))
    # the cross: 2 where the bars meet, 1 on the other 2·size - 2 pixels; with either bar: (size + 1) / ...
    assert out["cosine"][2] == pytest.approx((size + 1) / np.sqrt((2 * size + 2) * size))
    with pytest.raises(ValueError, match="square"):
        bar_selectivity(np.ones((10, 2)))
