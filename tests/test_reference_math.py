"""Tests OF the reference code (khrbm/rbm.py, kh.py, step.py) against independent transcriptions of
SPEC written here with loops and plain formulas (never by calling the function under test).

Tie rule checked here (kh.py docstring): when postsynaptic currents are exactly equal, the unit with
the lower index ranks higher.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from khrbm.core import rng
from khrbm.core.kh import kh_delta, kh_epsilon
from khrbm.core.rbm import (Params, cd_gradient, crbm_log_posterior, free_energy, gibbs_chain,
                       sample_visible)
from khrbm.core.step import StepSettings, numpy_step


# ---------------------------------------------------------------------------------------------
# independent helpers
# ---------------------------------------------------------------------------------------------
def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def energy(v, h, W, a, b) -> float:
    """E(v,h) = -vᵀWh - aᵀv - bᵀh, by loops."""
    e = 0.0
    for i in range(len(v)):
        e -= a[i] * v[i]
        for j in range(len(h)):
            e -= v[i] * W[i, j] * h[j]
    for j in range(len(h)):
        e -= b[j] * h[j]
    return e


def cond_prob(target, source, Wmat, bias) -> float:
    """Π_j Bern(target_j; σ(bias_j + Σ_i source_i Wmat[i, j]))."""
    p = 1.0
    for j in range(len(target)):
        q = sig(bias[j] + sum(source[i] * Wmat[i, j] for i in range(len(source))))
        p *= q if target[j] else 1.0 - q
    return p


def random_params(N, M, seed, scale=1.0, bias_scale=0.5):
    g = np.random.default_rng(seed)
    return Params(g.normal(0, scale, (N, M)), g.normal(0, bias_scale, N), g.normal(0, bias_scale, M))


def kh_loop(X, W, b, mode, eps, delta, ell, R, p, key, band=False):
    """Per-sample loop transcription of SPEC's KH step (Eqs. 5-8). Returns (dW, ranked)."""
    B = X.shape[0]
    N, M = W.shape
    if mode == "td":
        u = rng.uniforms(rng.stream(key, rng.KH_HIDDEN), (B, M))
        x = np.zeros((B, M))
        for s in range(B):
            for j in range(M):
                act = b[j] + sum(float(X[s, i]) * W[i, j] for i in range(N))
                x[s, j] = 1.0 if u[s, j] < sig(act) else 0.0
        S = np.array(W, dtype=np.float64)                    # K = N visible, pre = M
    else:
        x = np.array(X, dtype=np.float64)
        S = np.array(W, dtype=np.float64).T.copy()           # K = M hidden, pre = N
    K, P = S.shape
    hebb = np.zeros((K, P))
    gI = np.zeros(K)
    ranked = []
    for s in range(B):
        I = [sum(math.copysign(abs(S[mu, i]) ** (p - 1), S[mu, i]) * x[s, i] for i in range(P))
             for mu in range(K)]
        order = sorted(range(K), key=lambda mu: (-I[mu], mu))   # descending, ties -> lower index
        ranked.append(order[: ell + 1])
        g = [0.0] * K
        g[order[0]] = 1.0
        for r in (range(1, ell + 1) if band else [ell]):
            g[order[r]] = -delta
        for mu in range(K):
            for i in range(P):
                hebb[mu, i] += R**p * g[mu] * x[s, i]
            gI[mu] += g[mu] * I[mu]
    ds = np.zeros((K, P))
    for mu in range(K):
        for i in range(P):
            ds[mu, i] = hebb[mu, i] - gI[mu] * S[mu, i]
    m = max(max(abs(ds[mu, i]) for mu in range(K) for i in range(P)), 1e-50)
    dS = eps * ds / m
    return (dS.T if mode == "bu" else dS), np.array(ranked)


# ---------------------------------------------------------------------------------------------
# KH step
# ---------------------------------------------------------------------------------------------
KH_CASES = [
    # mode, ell, band, p, R, delta
    ("bu", 1, False, 2.0, 1.0, 0.4),
    ("td", 1, False, 2.0, 1.0, 0.4),
    ("bu", 3, False, 2.0, 1.0, 0.3),
    ("td", 3, False, 2.0, 0.1, 0.3),
    ("bu", 3, True, 2.0, 1.0, 0.3),
    ("td", 2, True, 3.0, 1.0, 0.5),
    ("bu", 1, False, 3.0, 0.7, 0.4),
    ("td", 1, False, 3.0, 1.0, 0.4),
    ("bu", 2, False, 1.5, 1.0, 0.2),
    ("td", 2, False, 1.5, 2.5, 0.6),
    ("bu", 1, False, 2.0, 0.1, 0.0),
    ("td", 1, False, 2.0, 1e-4, 0.4),      # tiny R and (below) tiny W: max|ds| ~ 1e-8, still scaled to ε
]


@pytest.mark.parametrize("mode,ell,band,p,R,delta", KH_CASES)
def test_kh_delta_matches_loop_transcription(mode, ell, band, p, R, delta):
    N, M, B = 7, 5, 4
    seed = KH_CASES.index((mode, ell, band, p, R, delta))
    params = random_params(N, M, seed=seed)
    if R < 1e-3:
        params.W *= 1e-4
    g = np.random.default_rng(11 + seed)
    X = (g.random((B, N)) < 0.5).astype(np.float64)
    W_before = params.W.copy()
    key = rng.stream(42, ell, int(10 * p))
    eps = 0.03
    dW, ranked = kh_delta(X, params, mode, eps, delta, ell, R, p, key, band)
    dW_ref, ranked_ref = kh_loop(X, params.W, params.b, mode, eps, delta, ell, R, p, key, band)
    assert dW.shape == params.W.shape and dW.dtype == params.W.dtype
    np.testing.assert_array_equal(ranked, ranked_ref)
    np.testing.assert_allclose(dW, dW_ref, rtol=1e-9, atol=1e-12)
    # global max normalisation: the largest |δW| equals ε
    assert np.abs(dW).max() == pytest.approx(eps, rel=1e-12)
    # kh_delta only returns dW: params are not modified
    np.testing.assert_array_equal(params.W, W_before)


def test_kh_delta_band_differs_from_single_unit():
    """ℓ > 1: Eq. 8 inhibits only the ℓ-th unit; the band option inhibits all of 1..ℓ -> different dW."""
    params = random_params(7, 5, seed=3)
    X = (np.random.default_rng(4).random((4, 7)) < 0.5).astype(np.float64)
    single, _ = kh_delta(X, params, "bu", 0.1, 0.5, 3, 1.0, 2.0, 9, band=False)
    band, _ = kh_delta(X, params, "bu", 0.1, 0.5, 3, 1.0, 2.0, 9, band=True)
    assert not np.allclose(single, band)


@pytest.mark.parametrize("mode", ["bu", "td"])
def test_kh_delta_all_zero_ds_gives_exact_zero(mode):
    N, M, B = 7, 5, 4
    params = random_params(N, M, seed=5)
    if mode == "bu":
        X = np.zeros((B, N))                   # x = 0: currents 0, g xᵀ = 0, Σ g I = 0
    else:
        X = (np.random.default_rng(6).random((B, N)) < 0.5).astype(np.float64)
        params.b[:] = -200.0                   # σ(XW+b) ≈ 0 -> sampled h = 0 exactly
    with np.errstate(all="raise"):
        dW, ranked = kh_delta(X, params, mode, 0.05, 0.4, 1, 1.0, 2.0, 17)
    assert np.all(dW == 0.0) and np.all(np.isfinite(dW))
    # all currents tie at 0: the lowest indices win (documented tie rule)
    np.testing.assert_array_equal(ranked, np.tile([0, 1], (B, 1)))


@pytest.mark.parametrize("mode", ["bu", "td"])
def test_kh_delta_ties_go_to_lower_index(mode):
    """Identical synapse rows -> exactly equal currents (dyadic values, exact sums) -> lower index ranks
    first. BU: identical columns 1 and 3 of W (hidden units); TD: identical rows 2 and 5 (visible)."""
    N, M, B = 7, 5, 4
    g = np.random.default_rng(8)
    W = g.integers(-4, 5, (N, M)) * 0.25
    if mode == "bu":
        W[:, 1] = W[:, 3] = 4.0 + g.integers(0, 4, N) * 0.25    # make the tied pair the top two
        tied = (1, 3)
    else:
        W[2, :] = W[5, :] = 4.0 + g.integers(0, 4, M) * 0.25
        tied = (2, 5)
    params = Params(W, np.zeros(N), np.zeros(M))
    X = (g.random((B, N)) < 0.6).astype(np.float64)
    X[:, 0] = 1.0                          # every sample has some input
    dW, ranked = kh_delta(X, params, mode, 0.05, 0.4, 1, 1.0, 2.0, 23)
    dW_ref, ranked_ref = kh_loop(X, W, params.b, mode, 0.05, 0.4, 1, 1.0, 2.0, 23)
    np.testing.assert_array_equal(ranked, ranked_ref)
    active = ranked_ref[:, 0] == tied[0]
    assert active.any()
    np.testing.assert_array_equal(ranked[active], np.tile(tied, (active.sum(), 1)))
    np.testing.assert_allclose(dW, dW_ref, rtol=1e-9, atol=1e-12)


def test_kh_delta_float32_params_close_to_float64():
    params = random_params(7, 5, seed=12)
    p32 = Params(params.W.astype(np.float32), params.a.astype(np.float32), params.b.astype(np.float32))
    X = (np.random.default_rng(13).random((4, 7)) < 0.5).astype(np.float32)
    dW32, _ = kh_delta(X, p32, "bu", 0.04, 0.4, 1, 1.0, 2.0, 1)
    dW_ref, _ = kh_loop(X, p32.W.astype(np.float64), p32.b, "bu", 0.04, 0.4, 1, 1.0, 2.0, 1)
    assert dW32.dtype == np.float32
    np.testing.assert_allclose(dW32, dW_ref, rtol=1e-5, atol=1e-7)


def test_kh_epsilon_schedule():
    eps0, S = 0.04, 10.0
    assert kh_epsilon(eps0, 0, S) == pytest.approx(eps0, rel=1e-15)
    assert kh_epsilon(eps0, 5, S) == pytest.approx(eps0 * 0.5**1.5, rel=1e-12)
    assert kh_epsilon(eps0, 2.5, S) == pytest.approx(eps0 * 0.75**1.5, rel=1e-12)
    just_below = kh_epsilon(eps0, S - 1e-6, S)
    assert 0.0 < just_below == pytest.approx(eps0 * (1e-7) ** 1.5, rel=1e-6)
    assert kh_epsilon(eps0, S, S) == 0.0
    assert kh_epsilon(eps0, S + 3, S) == 0.0
    assert kh_epsilon(eps0, 1e6, S) == 0.0
    # monotone decreasing on [0, S)
    vals = [kh_epsilon(eps0, e, S) for e in np.linspace(0, S, 41)]
    assert all(x >= y for x, y in zip(vals, vals[1:]))


# ---------------------------------------------------------------------------------------------
# CD gradient against exact enumeration
# ---------------------------------------------------------------------------------------------
def transition_matrix(W, a, b):
    """T[v, v'] = Σ_h p(h|v) p(v'|h) over all visible states (rows of states(N))."""
    N, M = W.shape
    Vs, Hs = states(N), states(M)
    T = np.zeros((len(Vs), len(Vs)))
    for iv, v in enumerate(Vs):
        for h in Hs:
            ph = cond_prob(h, v, W, b)
            for jv, v2 in enumerate(Vs):
                T[iv, jv] += ph * cond_prob(v2, h, W.T, a)
    return T


def state_index(v) -> int:
    return int("".join(str(int(x)) for x in v), 2)


def exact_negative_phase(dist, W, b):
    """E_dist[v ⊗ σ(vW+b)], E[v], E[σ(vW+b)] over the distribution ``dist`` on states(N)."""
    N, M = W.shape
    EvQ, Ev, EQ = np.zeros((N, M)), np.zeros(N), np.zeros(M)
    for pv, v in zip(dist, states(N)):
        Q = np.array([sig(b[j] + sum(v[i] * W[i, j] for i in range(N))) for j in range(M)])
        EvQ += pv * np.outer(v, Q)
        Ev += pv * v
        EQ += pv * Q
    return EvQ, Ev, EQ


def exact_cd_gradient(X, start, W, b, T, k):
    """Expected CD-k / PCD-k gradient: positive phase from X, chain of k steps from ``start`` rows."""
    B, (N, M) = len(X), W.shape
    gW, ga, gb = np.zeros((N, M)), np.zeros(N), np.zeros(M)
    Tk = np.linalg.matrix_power(T, k)
    for x, c in zip(X, start):
        P = np.array([sig(b[j] + sum(x[i] * W[i, j] for i in range(N))) for j in range(M)])
        EvQ, Ev, EQ = exact_negative_phase(Tk[state_index(c)], W, b)
        gW -= (np.outer(x, P) - EvQ) / B
        ga -= (x - Ev) / B
        gb -= (P - EQ) / B
    return gW, ga, gb


def check_mean(samples, exact, n_se=5.0):
    samples = np.asarray(samples)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - exact) <= n_se * se + 1e-9), (mean, exact, se)


def test_cd1_expected_gradient_by_enumerating_h0_v1():
    """CD-1: E[∇L] by explicit enumeration of h⁰ and v¹, vs the average of cd_gradient over keys."""
    N, M = 4, 3
    params = random_params(N, M, seed=21, scale=1.0)
    W, a, b = params.W, params.a, params.b
    X = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0]], dtype=np.float64)
    B = len(X)
    gW, ga, gb = np.zeros((N, M)), np.zeros(N), np.zeros(M)
    for x in X:
        P = np.array([sig(b[j] + sum(x[i] * W[i, j] for i in range(N))) for j in range(M)])
        for h0 in states(M):
            p_h0 = cond_prob(h0, x, W, b)
            for v1 in states(N):
                p = p_h0 * cond_prob(v1, h0, W.T, a)
                Q = np.array([sig(b[j] + sum(v1[i] * W[i, j] for i in range(N))) for j in range(M)])
                gW -= p * (np.outer(x, P) - np.outer(v1, Q)) / B
                ga -= p * (x - v1) / B
                gb -= p * (P - Q) / B
    samples = [cd_gradient(X, params, 1, rng.stream(5, t)) for t in range(3000)]
    check_mean([s[0] for s in samples], gW)
    check_mean([s[1] for s in samples], ga)
    check_mean([s[2] for s in samples], gb)
    # the sampled vᵏ is binary and the gradient formula holds sample by sample
    gW1, ga1, gb1, vk = samples[0]
    assert set(np.unique(vk)) <= {0.0, 1.0}
    Ph = 1 / (1 + np.exp(-(X @ W + b)))
    Qh = 1 / (1 + np.exp(-(vk @ W + b)))
    np.testing.assert_allclose(gW1, -(X.T @ Ph - vk.T @ Qh) / B, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k,persistent", [(3, False), (2, True)])
def test_cdk_and_pcd_expected_gradient_by_transition_matrix(k, persistent):
    """CD-k / PCD-k: the exact k-step visible distribution from the transition matrix."""
    N, M = 4, 3
    params = random_params(N, M, seed=31 + k, scale=1.2)
    X = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=np.float64)
    chain = np.array([[0, 0, 0, 1], [1, 1, 1, 1]], dtype=np.float64) if persistent else None
    T = transition_matrix(params.W, params.a, params.b)
    exact = exact_cd_gradient(X, X if chain is None else chain, params.W, params.b, T, k)
    samples = [cd_gradient(X, params, k, rng.stream(77, t), chain=chain) for t in range(3000)]
    for i in range(3):
        check_mean([s[i] for s in samples], exact[i])


def test_long_chain_negative_phase_reaches_model_expectation():
    """With k large the CD negative phase is the model expectation E_p[v ⊗ σ(vW+b)], p(v) ∝ Σ_h e^{-E}."""
    N, M = 4, 3
    params = random_params(N, M, seed=41, scale=0.7)
    W, a, b = params.W, params.a, params.b
    Vs, Hs = states(N), states(M)
    weights = np.array([sum(math.exp(-energy(v, h, W, a, b)) for h in Hs) for v in Vs])
    p_model = weights / weights.sum()
    k = 25
    # precondition (tests this test): 25 steps mix to 1e-6 from every start
    Tk = np.linalg.matrix_power(transition_matrix(W, a, b), k)
    assert np.abs(Tk - p_model[None, :]).max() < 1e-6
    EvQ, Ev, _ = exact_negative_phase(p_model, W, b)
    X = np.tile(np.array([[1, 1, 0, 0]], dtype=np.float64), (4000, 1))
    gW, ga, gb, vk = cd_gradient(X, params, k, rng.stream(8, 8))
    Qh = 1 / (1 + np.exp(-(vk @ W + b)))
    per_row = vk[:, :, None] * Qh[:, None, :]
    check_mean(per_row, EvQ)
    check_mean(vk, Ev)
    Ph = 1 / (1 + np.exp(-(X @ W + b)))
    np.testing.assert_allclose(gW, -(X.T @ Ph - per_row.sum(axis=0)) / len(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ga, -(X - vk).mean(axis=0), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# free energy, cRBM
# ---------------------------------------------------------------------------------------------
def test_free_energy_against_enumeration():
    N, M = 5, 4
    params = random_params(N, M, seed=51, scale=1.5)
    Vs = states(N)
    F = free_energy(Vs, params)
    for v, f in zip(Vs, F):
        ref = -math.log(sum(math.exp(-energy(v, h, params.W, params.a, params.b)) for h in states(M)))
        assert f == pytest.approx(ref, rel=1e-12, abs=1e-12)


def test_crbm_log_posterior_against_brute_force():
    n_pix, C, M = 3, 3, 4
    params = random_params(n_pix + C, M, seed=61, scale=1.5, bias_scale=1.0)
    Xs = states(n_pix)
    logp = crbm_log_posterior(Xs, params, C)
    assert logp.shape == (len(Xs), C)
    for x, row in zip(Xs, logp):
        joint = []
        for y in range(C):
            v = np.concatenate([x, np.eye(C)[y]])
            joint.append(sum(math.exp(-energy(v, h, params.W, params.a, params.b)) for h in states(M)))
        ref = np.log(np.array(joint) / sum(joint))
        np.testing.assert_allclose(row, ref, rtol=1e-10, atol=1e-12)


def test_sample_visible_pixels_and_argmax_label():
    n_pix, C, M, B = 5, 4, 6, 30
    params = random_params(n_pix + C, M, seed=71, scale=1.5)
    g = np.random.default_rng(72)
    H = (g.random((B, M)) < 0.5).astype(np.float64)
    u = rng.uniforms(rng.stream(1, 2), (B, n_pix + C))
    V = sample_visible(H, params.W, params.a, u, n_labels=C, label_sampling="argmax")
    for s in range(B):
        act = [params.a[i] + sum(H[s, j] * params.W[i, j] for j in range(M)) for i in range(n_pix + C)]
        for i in range(n_pix):
            assert V[s, i] == (1.0 if u[s, i] < sig(act[i]) else 0.0)
        labels = act[n_pix:]
        best = max(range(C), key=lambda c: (labels[c], -c))
        np.testing.assert_array_equal(V[s, n_pix:], np.eye(C)[best])


def test_sample_visible_softmax_label_frequencies():
    n_pix, C, M = 2, 4, 3
    params = random_params(n_pix + C, M, seed=81, scale=1.0, bias_scale=0.8)
    h = np.array([1.0, 0.0, 1.0])
    logits = np.array([params.a[n_pix + c] + sum(h[j] * params.W[n_pix + c, j] for j in range(M))
                       for c in range(C)])
    soft = np.exp(logits - logits.max())
    soft /= soft.sum()
    n = 20000
    H = np.tile(h, (n, 1))
    u = np.zeros((n, n_pix + C))
    # stratified uniforms: frequencies must equal the softmax up to 1/n
    u_strat = (np.arange(n) + 0.5) / n
    V = sample_visible(H, params.W, params.a, u, C, "softmax", u_strat)
    assert np.all(V[:, n_pix:].sum(axis=1) == 1)
    np.testing.assert_allclose(V[:, n_pix:].mean(axis=0), soft, atol=2.0 / n)
    # random uniforms: chi-square with C-1 = 3 dof, threshold 25 (p ≈ 1.6e-5)
    u_rand = rng.uniforms(rng.stream(3, 3), (n,))
    V = sample_visible(H, params.W, params.a, u, C, "softmax", u_rand)
    counts = V[:, n_pix:].sum(axis=0)
    chi2 = ((counts - n * soft) ** 2 / (n * soft)).sum()
    assert chi2 < 25.0, (counts / n, soft)


def test_gibbs_chain_label_block_is_one_hot_in_both_modes():
    params = random_params(6 + 3, 4, seed=91)
    V0 = (np.random.default_rng(92).random((10, 9)) < 0.5).astype(np.float64)
    for mode in ("argmax", "softmax"):
        V = gibbs_chain(V0, params, 3, 99, n_labels=3, label_sampling=mode)
        assert np.all(V[:, 6:].sum(axis=1) == 1)


# ---------------------------------------------------------------------------------------------
# Eq. 9 step order and the shuffled-ξ control
# ---------------------------------------------------------------------------------------------
def _settings(**kw):
    base = dict(lr=0.1, k=1, kh_mode="td", eps=0.05, delta=0.4, ell=1, radius=1.0, p=2.0)
    base.update(kw)
    return StepSettings(**base)


@pytest.mark.parametrize("mode", ["td", "bu"])
def test_numpy_step_order_is_kh_then_cd_at_modulated_W(mode):
    N, M, B = 8, 6, 5
    params = random_params(N, M, seed=101)
    X = (np.random.default_rng(102).random((B, N)) < 0.4).astype(np.float64)
    st = _settings(kh_mode=mode, k=2)
    key = rng.stream(3, 14)
    new = params.copy()
    res = numpy_step(new, X, st, key)
    # manual Eq. 9: θ_KH = θ + δθ, then θ_KH - η ∇L(θ_KH), same key for both
    dW, ranked = kh_delta(X, params, mode, st.eps, st.delta, st.ell, st.radius, st.p, key)
    mod = Params(params.W + dW, params.a.copy(), params.b.copy())
    gW, ga, gb, _ = cd_gradient(X, mod, st.k, key)
    np.testing.assert_allclose(new.W, mod.W - st.lr * gW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new.a, mod.a - st.lr * ga, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new.b, mod.b - st.lr * gb, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(res.ranked, ranked)
    assert res.chain is None
    # discriminating: the other order (CD at the unmodulated W, then add δθ) gives another result
    gW0, ga0, gb0, _ = cd_gradient(X, params, st.k, key)
    other = np.concatenate([(params.W + dW - st.lr * gW0).ravel(), params.a - st.lr * ga0,
                            params.b - st.lr * gb0])
    assert not np.allclose(np.concatenate([new.W.ravel(), new.a, new.b]), other, rtol=1e-9, atol=1e-12)


def test_numpy_step_without_kh_is_plain_cd_and_pcd_returns_chain():
    params = random_params(6, 4, seed=111)
    X = (np.random.default_rng(112).random((5, 6)) < 0.5).astype(np.float64)
    chain = (np.random.default_rng(113).random((5, 6)) < 0.5).astype(np.float64)
    st = _settings(kh_mode="td", eps=0.0, persistent=True, k=3)
    assert not st.kh_active
    new = params.copy()
    res = numpy_step(new, X, st, 55, chain=chain)
    gW, ga, gb, vk = cd_gradient(X, params, 3, 55, chain=chain)
    np.testing.assert_allclose(new.W, params.W - 0.1 * gW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new.a, params.a - 0.1 * ga, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(res.chain, vk)
    np.testing.assert_array_equal(res.chain, gibbs_chain(chain, params, 3, 55))
    assert res.ranked is None


def test_shuffled_xi_step_applies_a_permutation_of_xi():
    """θ_old - θ_new = η(∇L(θ) + π(ξ)): the sorted components of Δθ/η - ∇L(θ) equal those of ξ, with
    ∇L and ξ = ∇L(θ+δθ) - ∇L(θ) - δθ/η recomputed here on the same key."""
    N, M, B = 8, 6, 5
    params = random_params(N, M, seed=121)
    X = (np.random.default_rng(122).random((B, N)) < 0.4).astype(np.float64)
    st = _settings(kh_mode="td", shuffle_xi=True, lr=0.1, eps=0.08)
    key = rng.stream(4, 2)
    new = params.copy()
    numpy_step(new, X, st, key)
    dW, _ = kh_delta(X, params, "td", st.eps, st.delta, st.ell, st.radius, st.p, key)
    g0 = cd_gradient(X, params, st.k, key)
    g1 = cd_gradient(X, Params(params.W + dW, params.a, params.b), st.k, key)
    xi = np.concatenate([(g1[0] - g0[0] - dW / st.lr).ravel(), g1[1] - g0[1], g1[2] - g0[2]])
    grad = np.concatenate([g0[0].ravel(), g0[1], g0[2]])
    old = np.concatenate([params.W.ravel(), params.a, params.b])
    upd = np.concatenate([new.W.ravel(), new.a, new.b])
    applied = (old - upd) / st.lr - grad
    np.testing.assert_allclose(np.sort(applied), np.sort(xi), rtol=1e-8, atol=1e-9)
    assert not np.allclose(applied, xi, rtol=1e-6, atol=1e-9)        # actually permuted
    # and it is not the KH step itself
    kh = params.copy()
    numpy_step(kh, X, _settings(kh_mode="td", lr=0.1, eps=0.08), key)
    assert not np.allclose(kh.W, new.W)
    # a fresh permutation for another step key: recover where each distinct-valued ξ component went
    def destinations(step_key):
        upd = params.copy()
        numpy_step(upd, X, st, step_key)
        dW_, _ = kh_delta(X, params, "td", st.eps, st.delta, st.ell, st.radius, st.p, step_key)
        h0 = cd_gradient(X, params, st.k, step_key)
        h1 = cd_gradient(X, Params(params.W + dW_, params.a, params.b), st.k, step_key)
        xi_ = np.concatenate([(h1[0] - h0[0] - dW_ / st.lr).ravel(), h1[1] - h0[1], h1[2] - h0[2]])
        grad_ = np.concatenate([h0[0].ravel(), h0[1], h0[2]])
        applied_ = (old - np.concatenate([upd.W.ravel(), upd.a, upd.b])) / st.lr - grad_
        dest = {}
        for i in np.flatnonzero(np.abs(xi_) > 1e-6):
            close = np.flatnonzero(np.isclose(applied_, xi_[i], rtol=1e-9, atol=1e-12))
            if len(close) == 1 and np.sum(np.isclose(xi_, xi_[i], rtol=1e-9, atol=1e-12)) == 1:
                dest[i] = int(close[0])
        return dest
    d1, d2 = destinations(key), destinations(rng.stream(4, 3))
    common = sorted(set(d1) & set(d2))
    assert len(common) > 10
    assert sum(d1[i] != d2[i] for i in common) > len(common) // 2
