"""Evaluation metrics of an RBM / cRBM (SPEC, "Metrics"): pure functions of arrays.

Every function accumulates in float64 whatever the dtype of the parameters. Sampled metrics take a
stream ``key`` and draw their uniforms from :mod:`khrbm.rng`, so that a metric point is reproducible:

* the hidden sample ``h ~ p(h|v)`` uses ``uniforms(stream(key, GIBBS_HIDDEN), (B, M))``,
* the visible sample ``v̂ ~ p(v|h)`` uses ``uniforms(stream(key, GIBBS_VISIBLE), (B, N))``
  (i.e. exactly Gibbs step 0 of :func:`khrbm.rbm.gibbs_chain` with that key),
* the flipped pixel of the pseudo-log-likelihood uses ``uniforms(stream(key, PLL_FLIP), (B,))``.

For a cRBM the visible layer is ``[pixels, one-hot label]``; pass ``n_pixels`` so that only the
pixel columns are scored.
"""
from __future__ import annotations

import numpy as np

from . import rng
from .rbm import Params, crbm_log_posterior, gibbs_chain, sample_hidden, sigmoid

PLL_FLIP = 9100          # rng purpose: which pixel the pseudo-log-likelihood flips
AIS_STREAM = 9200        # rng purpose: the AIS chains (seeded np.random.Generator)
MAX_ENUM_UNITS = 22      # exact_log_partition enumerates at most 2**22 configurations
CE_CLIP = 1e-6


def _f64(params: Params):
    return (np.asarray(params.W, np.float64), np.asarray(params.a, np.float64),
            np.asarray(params.b, np.float64))


def _softplus64(x):
    """log(1 + e^x), stable (float64); faster than np.logaddexp(0, x)."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _n_pix(params: Params, n_pixels):
    return params.n_visible if n_pixels is None else int(n_pixels)


# ---------------------------------------------------------------------------------------------
# sampled reconstruction metrics (Eqs. 11, 12)
# ---------------------------------------------------------------------------------------------
def reconstruction_mse(V, params: Params, key: int, n_pixels=None) -> float:
    """Eq. 11, per pixel: one Gibbs step ``h ~ p(h|v)``, ``v̂ ~ p(v|h)`` (sampled, as the authors do),
    then the mean over samples and over the first ``n_pixels`` columns of ``(v - v̂)²``.

    The authors' code sums over pixels instead (SPEC); multiply by ``n_pixels`` to compare.
    For a cRBM the label block of ``v̂`` is produced (argmax one-hot) but not scored."""
    V = np.asarray(V)
    n_pix = _n_pix(params, n_pixels)
    n_labels = params.n_visible - n_pix
    Vh = gibbs_chain(V.astype(params.W.dtype), params, 1, key, n_labels, "argmax")
    diff = V[:, :n_pix].astype(np.float64) - Vh[:, :n_pix].astype(np.float64)
    return float(np.mean(diff * diff))


def cross_entropy(V, params: Params, key: int, n_pixels=None) -> float:
    """Eq. 12 (SPEC): ``h ~ p(h|v)``, ``p = σ(hWᵀ + a)`` clipped to [1e-6, 1 - 1e-6], then the mean over
    samples and over the first ``n_pixels`` columns of ``-[v log p + (1 - v) log(1 - p)]``."""
    V = np.asarray(V)
    W, a, b = _f64(params)
    n_pix = _n_pix(params, n_pixels)
    u = rng.uniforms(rng.stream(key, rng.GIBBS_HIDDEN), (len(V), params.n_hidden))
    H = sample_hidden(V.astype(params.W.dtype), params.W, params.b, u).astype(np.float64)
    p = np.clip(sigmoid(H @ W[:n_pix].T + a[:n_pix]), CE_CLIP, 1.0 - CE_CLIP)
    v = V[:, :n_pix].astype(np.float64)
    return float(-np.mean(v * np.log(p) + (1.0 - v) * np.log1p(-p)))


def reconstruction_metrics(V, params: Params, key: int, n_pixels=None) -> tuple[float, float]:
    """``(reconstruction_mse, cross_entropy)`` with one ``key``: both score the same hidden sample."""
    return reconstruction_mse(V, params, key, n_pixels), cross_entropy(V, params, key, n_pixels)


# ---------------------------------------------------------------------------------------------
# pseudo-log-likelihood, receptive fields, accuracy
# ---------------------------------------------------------------------------------------------
def _free_energy64(V, W, a, b):
    """F(v) = -aᵀv - Σ_j softplus(b_j + (vW)_j), float64 (SPEC, notation)."""
    return -V @ a - _softplus64(V @ W + b).sum(axis=1)


def pll_samples(V, params: Params, flip) -> np.ndarray:
    """Per-sample pseudo-log-likelihood with sample s's pixel ``flip[s]`` flipped:
    ``N · log σ(F(ṽ) - F(v))`` (scikit-learn's BernoulliRBM.score_samples)."""
    W, a, b = _f64(params)
    V = np.asarray(V, np.float64)
    Vf = V.copy()
    rows = np.arange(len(V))
    Vf[rows, flip] = 1.0 - Vf[rows, flip]
    diff = _free_energy64(Vf, W, a, b) - _free_energy64(V, W, a, b)
    return -V.shape[1] * _softplus64(-diff)


def pseudo_log_likelihood(V, params: Params, key: int) -> float:
    """Mean over samples of scikit-learn's pseudo-log-likelihood ``N · log σ(F(ṽ) - F(v))``, where ṽ is v
    with one uniformly chosen pixel flipped (from stream ``PLL_FLIP`` of ``key``). Its expectation over
    the flip is the usual PLL ``Σ_i log p(v_i | v_-i)`` (SPEC, Metrics)."""
    V = np.asarray(V)
    N = V.shape[1]
    u = rng.uniforms(rng.stream(key, PLL_FLIP), (len(V),), np.float64)
    flip = np.minimum((u * N).astype(np.int64), N - 1)
    return float(np.mean(pll_samples(V, params, flip)))


def receptive_field_overlap(W, n_pixels=None, chunk: int = 1024) -> float:
    """For each hidden unit j the largest cosine similarity between ``W[:n_pixels, j]`` and any other
    column ``W[:n_pixels, j']``, averaged over j (SPEC; the paper reports 0.41 / 0.37 / 0.35).

    A zero column has cosine 0 with everything. With a single hidden unit the result is nan."""
    W = np.asarray(W, np.float64)
    if n_pixels is not None:
        W = W[: int(n_pixels)]
    M = W.shape[1]
    if M < 2:
        return float("nan")
    norm = np.linalg.norm(W, axis=0)
    Wn = W / np.where(norm > 0, norm, 1.0)
    best = np.empty(M)
    for j0 in range(0, M, chunk):
        C = Wn[:, j0:j0 + chunk].T @ Wn          # (chunk × M) cosines
        idx = np.arange(C.shape[0])
        C[idx, j0 + idx] = -np.inf               # exclude the unit itself
        best[j0:j0 + chunk] = C.max(axis=1)
    return float(best.mean())


def crbm_accuracy(X_pixels, y, params: Params, n_labels: int, chunk: int = 2048) -> float:
    """Classification accuracy of the cRBM: the fraction of rows whose exact ``argmax_y log p(y|x)``
    (:func:`khrbm.rbm.crbm_log_posterior`) equals ``y``; computed ``chunk`` rows at a time."""
    X_pixels = np.asarray(X_pixels)
    y = np.asarray(y)
    if len(X_pixels) == 0:
        return float("nan")
    correct = 0
    for s in range(0, len(X_pixels), chunk):
        pred = crbm_log_posterior(X_pixels[s:s + chunk], params, n_labels).argmax(axis=1)
        correct += int(np.sum(pred == y[s:s + chunk]))
    return correct / len(X_pixels)


# ---------------------------------------------------------------------------------------------
# partition function and log-likelihood
# ---------------------------------------------------------------------------------------------
def _all_states(n: int, start: int, stop: int) -> np.ndarray:
    """Binary configurations start..stop-1 of n units (bit i of the integer = unit i), float64."""
    codes = np.arange(start, stop, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(np.float64)


def exact_log_partition(params: Params, block: int = 1 << 15) -> float:
    """Exact log Z = log Σ_{v,h} exp(-E(v,h)) by enumerating the smaller layer (at most 22 units):
    ``log Z = logsumexp_h [bᵀh + Σ_i softplus(a_i + (Wh)_i)]`` or ``logsumexp_v [-F(v)]``."""
    W, a, b = _f64(params)
    N, M = W.shape
    if min(N, M) > MAX_ENUM_UNITS:
        raise ValueError(f"exact_log_partition enumerates the smaller layer, which must have at most "
                         f"{MAX_ENUM_UNITS} units; this RBM has {N} visible and {M} hidden units "
                         f"(use ais_log_partition)")
    if M <= N:      # enumerate h: Σ_v exp(-E) = exp(bᵀh) Π_i (1 + exp(a_i + (Wh)_i))
        n, W_, bias_in, bias_out = M, W.T, b, a
    else:           # enumerate v: -F(v) = aᵀv + Σ_j softplus(b_j + (vW)_j)
        n, W_, bias_in, bias_out = N, W, a, b
    total = 1 << n
    parts = []
    for s in range(0, total, block):
        S = _all_states(n, s, min(total, s + block))
        vals = S @ bias_in + _softplus64(S @ W_ + bias_out).sum(axis=1)
        parts.append(np.logaddexp.reduce(vals))
    return float(np.logaddexp.reduce(np.array(parts)))


def base_rate_biases(V, smoothing: float = 0.05) -> np.ndarray:
    """Visible biases of the base-rate model for AIS: the logit of the (smoothed) mean of the data V
    (Salakhutdinov & Murray 2008)."""
    V = np.asarray(V, np.float64)
    m = (V.sum(axis=0) + smoothing) / (len(V) + 2 * smoothing)
    return np.log(m) - np.log1p(-m)


def ais_log_partition(params: Params, n_chains: int = 100, n_betas: int = 1000, seed: int = 0,
                      base_a=None):
    """log Z by annealed importance sampling (Salakhutdinov & Murray 2008). Returns
    ``(log_Z, log_Z_lo, log_Z_hi)``, with the interval ``log(mean(w) ∓ 3 · stderr(w))`` (lo is -inf when
    mean - 3 stderr ≤ 0).

    Base model A: visible biases ``base_a`` (default 0; pass :func:`base_rate_biases` of the data for a
    tighter estimate), no weights, hidden biases 0, so ``log Z_A = Σ_i softplus(base_a_i) + M log 2``.
    Intermediate distributions (geometric path, β_0 = 0 < … < β_K = 1 evenly spaced, K = n_betas - 1):
    ``log p*_β(v) = (1-β) base_aᵀv + β aᵀv + Σ_j softplus(β (b_j + (vW)_j))``. Each chain starts with an
    exact sample of A and, at each β_k, adds ``log p*_{β_k}(v) - log p*_{β_{k-1}}(v)`` to its log weight,
    then takes one Gibbs step that leaves ``p_{β_k}`` invariant (h ~ σ(β(vW+b)), v ~ σ((1-β)base_a +
    β(hWᵀ+a))). All visible units are treated as binary (for a cRBM this is the joint RBM's Z)."""
    W, a, b = _f64(params)
    N, M = W.shape
    base_a = np.zeros(N) if base_a is None else np.asarray(base_a, np.float64)
    if base_a.shape != (N,):
        raise ValueError(f"base_a must have {N} entries, got shape {base_a.shape}")
    if n_betas < 2 or n_chains < 1:
        raise ValueError("ais_log_partition needs n_betas >= 2 and n_chains >= 1")
    gen = rng.generator(seed, AIS_STREAM)
    betas = np.linspace(0.0, 1.0, int(n_betas))
    v = (gen.random((n_chains, N)) < sigmoid(base_a)).astype(np.float64)
    log_w = np.zeros(n_chains)

    def log_p(v, beta, act):  # act = vW + b
        return (1.0 - beta) * (v @ base_a) + beta * (v @ a) + _softplus64(beta * act).sum(axis=1)

    for k in range(1, len(betas)):
        bk, bp = betas[k], betas[k - 1]
        act = v @ W + b
        log_w += log_p(v, bk, act) - log_p(v, bp, act)
        if k < len(betas) - 1:           # the last sample would be unused
            h = (gen.random((n_chains, M)) < sigmoid(bk * act)).astype(np.float64)
            pv = sigmoid((1.0 - bk) * base_a + bk * (h @ W.T + a))
            v = (gen.random((n_chains, N)) < pv).astype(np.float64)

    log_ZA = _softplus64(base_a).sum() + M * np.log(2.0)
    shift = log_w.max()
    w = np.exp(log_w - shift)
    mean = w.mean()
    se = w.std(ddof=1) / np.sqrt(n_chains) if n_chains > 1 else 0.0
    lo = np.log(mean - 3 * se) if mean - 3 * se > 0 else -np.inf
    base = log_ZA + shift
    return float(base + np.log(mean)), float(base + lo), float(base + np.log(mean + 3 * se))


def log_likelihood(V, params: Params, log_Z: float) -> float:
    """Mean over the rows of V of log p(v) = -F(v) - log Z."""
    W, a, b = _f64(params)
    return float(np.mean(-_free_energy64(np.asarray(V, np.float64), W, a, b)) - log_Z)


BAR_MATCH = 0.5    # cosine from which a receptive field counts as matching a bar


def bar_masks(size: int) -> np.ndarray:
    """(2·size, size²) 0/1 masks of Földiák's bars on a size×size image: the horizontal bars (image rows)
    first, then the vertical ones (columns), as ``khrbm.data.make_bars`` draws them."""
    masks = np.zeros((2, size, size, size))
    idx = np.arange(size)
    masks[0, idx, idx, :] = 1.0
    masks[1, idx, :, idx] = 1.0
    return masks.reshape(2 * size, size * size)


def bar_selectivity(W, n_pixels=None, threshold: float = BAR_MATCH) -> dict:
    """Which hidden units own one bar (Földiák 1990): unit j is selective for bar b when the cosine between
    its receptive field ``W[:n_pixels, j]`` and the mask of bar b is at least ``threshold`` and no other
    bar's is (a cross of two bars is not selective; nor is a unit whose field is the negative of a bar).
    The image is square, n_pixels = size².

    Returns ``share`` (selective units / M), ``bars`` (distinct bars that have a selective unit), ``bar``
    (per unit: its bar, -1 if none) and ``cosine`` (per unit: its best cosine with a bar)."""
    W = np.asarray(W, np.float64)
    n = W.shape[0] if n_pixels is None else int(n_pixels)
    size = int(round(n ** 0.5))
    if size * size != n:
        raise ValueError(f"bars are square images; {n} pixels are not")
    masks = bar_masks(size)
    R = W[:n]
    norm = np.linalg.norm(R, axis=0)
    C = (masks @ R) / (np.linalg.norm(masks, axis=1)[:, None] * np.where(norm > 0, norm, 1.0))   # (bars, M)
    selective = (C >= threshold).sum(axis=0) == 1
    bar = np.where(selective, C.argmax(axis=0), -1)
    return {"share": float(selective.mean()) if W.shape[1] else float("nan"),
            "bars": int(len(np.unique(bar[selective]))), "bar": bar, "cosine": C.max(axis=0)}
