"""The evaluation metrics of :mod:`khrbm.core.metrics` as Numba kernels: same values, same random
streams, the step's sparse row gathers, and both cores.

* :func:`reconstruction_metrics` returns ``(metrics.reconstruction_mse(V, params, key, n_pixels),
  metrics.cross_entropy(V, params, key, n_pixels))``: one gather ``vW`` and one hidden sample
  ``h ~ p(h|v)`` (stream ``GIBBS_HIDDEN`` of ``key``, uniform ``r·M + j``), which both NumPy metrics draw
  identically; then one gather ``hWᵀ`` over the pixel columns, the MSE's visible sample (Eq. 11;
  stream ``GIBBS_VISIBLE``, uniform ``r·N + i``) and the clipped cross-entropy (Eq. 12) from it.
* :func:`crbm_accuracy`: exact ``argmax_y log p(y|x)`` of the cRBM (SPEC, cRBM).
* :func:`receptive_field_overlap`: mean over units of the largest cosine with another unit.
* :func:`mean_field_reconstruction`: ``σ(σ(VW+b)Wᵀ+a)``, the probes the trainer's snapshots show.

Equality. float64 parameters: every product, exp and log is float64, as in the NumPy metrics, so the
values agree to rounding (~1e-12; a sample could differ only if a uniform fell within an ulp of its
probability). float32 parameters: the gathers, the sigmoid (the step's vectorized exp), the
cross-entropy's softplus (a vectorized ``log1p``) and the per-pixel sums over a chunk (≤ 128 rows) are
float32, the chunks are summed in float64: the MSE may differ by the rare pixel whose uniform lies within
~1e-7 of its probability, the cross-entropy by ~1e-7 relative, the overlap (float32 cosines) by ~1e-8;
cRBM logits are float32 too, and any sample whose two best logits are within RECHECK (1e-4, relative) is
decided again in float64, so the predictions are the exact ones (tests/test_eval_kernels.py).

Rows are processed in fixed chunks of ``CHUNK`` samples spread over the threads (prange over chunks);
partial sums are per chunk, so a value does not depend on the number of threads. Launches take the
kernels' lock (:data:`khrbm.core.kernels._LOCK`: one threading runtime, launched by this module and
``kernels`` only). A module of its own rather than more of ``kernels.py`` (already ~1000 lines): Numba's
on-disk cache only watches the file that defines a function, so :func:`~khrbm.core.kernels.drop_stale_cache`
drops this module's cache whenever ``kernels.py`` or ``rng.py`` (whose jitted functions are compiled
into these kernels) change, and editing a metric does not recompile the step.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import rng
from .kernels import (_JIT, _LOCK, _PJIT, _as, _exp32, _gather, _list_row, _sample_list,
                      _sigmoid, _transpose, drop_stale_cache)
from .rbm import Params
from .rng import uniform_at

__all__ = ["reconstruction_metrics", "crbm_accuracy", "crbm_predict", "receptive_field_overlap",
           "mean_field_reconstruction"]

drop_stale_cache("eval_kernels", ("kernels.py", "rng.py"))

CHUNK = 128                  # samples per chunk (one chunk = one unit of parallel work)
CE_CLIP = 1e-6               # as metrics.CE_CLIP: p clipped to [CE_CLIP, 1 - CE_CLIP]
_CE_LO = -math.log1p(-CE_CLIP)     # the clipped -log p and -log(1 - p) lie in [_CE_LO, _CE_HI]
_CE_HI = -math.log(CE_CLIP)
RECHECK = 1e-4               # float32 cRBM logits closer than this (relative) are decided in float64

# --------------------------------------------------------------------------------------------------
# log1p(exp(-|x|)) (the softplus tail): float32 vectorizable (Cephes logf polynomial), float64 libm

_SQRT2M1 = np.float32(0.41421356237)
_L0 = np.float32(7.0376836292e-2)
_L1 = np.float32(-1.1514610310e-1)
_L2 = np.float32(1.1676998740e-1)
_L3 = np.float32(-1.2420140846e-1)
_L4 = np.float32(1.4249322787e-1)
_L5 = np.float32(-1.6668057665e-1)
_L6 = np.float32(2.0000714765e-1)
_L7 = np.float32(-2.4999993993e-1)
_L8 = np.float32(3.3333331174e-1)
_LN2LO = np.float32(-2.12194440e-4)
_LN2HI = np.float32(0.693359375)
_HALF32 = np.float32(0.5)
_ZERO32 = np.float32(0.0)
_ONE32 = np.float32(1.0)


@njit(**_JIT)
def _log1p32(e):
    """log(1 + e) for float32 e in [0, 1]: 1 + e = 2^k (1 + f) with f = e (k = 0) or (e - 1)/2 (k = 1),
    both exact, then Cephes' logf polynomial in f (error ~1 ulp)."""
    hi = e > _SQRT2M1
    f = (e - _ONE32) * _HALF32 if hi else e
    k = _ONE32 if hi else _ZERO32
    z = f * f
    y = ((((((((_L0 * f + _L1) * f + _L2) * f + _L3) * f + _L4) * f + _L5) * f + _L6) * f + _L7) * f + _L8) * f * z
    y = y + k * _LN2LO - _HALF32 * z
    return f + y + k * _LN2HI


def _softplus_tail(x):  # pragma: no cover - replaced by the overload inside jitted code
    return np.log1p(np.exp(-abs(x)))


@overload(_softplus_tail, jit_options=_JIT)
def _softplus_tail_ov(x):
    """log1p(exp(-|x|)), so that softplus(±x) = max(±x, 0) + _softplus_tail(x) with no cancellation."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _log1p32(_exp32(-abs(x)))
    return lambda x: np.log1p(np.exp(-abs(x)))


def _sigmoid_and_tail(x):  # pragma: no cover - replaced by the overload inside jitted code
    return 1.0 / (1.0 + np.exp(-x)), np.log1p(np.exp(-abs(x)))


@overload(_sigmoid_and_tail, jit_options=_JIT)
def _sigmoid_and_tail_ov(x):
    """(σ(x), log1p(exp(-|x|))); float32 from one exp(-|x|), float64 exactly as the NumPy metrics."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            e = _exp32(-abs(x))
            return (_ONE32 if x >= _ZERO32 else e) / (_ONE32 + e), _log1p32(e)
    else:
        def impl(x):
            return 1.0 / (1.0 + np.exp(-x)), np.log1p(np.exp(-abs(x)))
    return impl


@njit(**_JIT)
def _sigma(x):
    """The step's σ (kernels._sigmoid), called, not inlined into the parallel loops: Numba's IR inliner
    trips over its branches inside a prange body (NumbaIRAssumptionWarning); LLVM inlines it anyway."""
    return _sigmoid(x)


@njit(**_JIT)
def log1p_exp_array(x):
    """log1p(exp(-|x|)) elementwise with the kernels' formula (for the accuracy test)."""
    out = np.empty_like(x)
    xf = x.ravel()
    of = out.ravel()
    for i in range(xf.size):
        of[i] = _softplus_tail(xf[i])
    return out


# --------------------------------------------------------------------------------------------------
# kernels


@njit(**_JIT)
def _column_sum_rows(S, tot):
    """tot[k] = Σ_j S[j, k] (serial; once per evaluation)."""
    tot[:] = 0
    for j in range(S.shape[0]):
        sj = S[j]
        for k in range(S.shape[1]):
            tot[k] += sj[k]


@njit(**_PJIT)
def _reconstruction(V, W, WTp, totW, totWTp, a, b, key_h, key_v, idx, val, nnz, binary, pre, hidx, hval,
                    hnnz, hbin, act, se, ce):
    """Per chunk c of CHUNK rows: se[c, i] = Σ_r (v_ri - v̂_ri)², ce[c, i] = Σ_r CE term of pixel i
    (in the parameters' dtype), with h = u_h < σ(vW + b), v̂ = u_v < σ(hWᵀ + a) over the pixels
    (WTp = W[:n_pix]ᵀ). V must have the parameters' dtype."""
    B, N = V.shape
    lo = _as(_CE_LO, a[0])
    hi = _as(_CE_HI, a[0])
    M = W.shape[1]
    n_pix = WTp.shape[1]
    nch = se.shape[0]
    for c in prange(nch):
        sec = se[c]
        cec = ce[c]
        sec[:] = 0.0
        cec[:] = 0.0
        pr = pre[c]
        ac = act[c]
        for r in range(c * CHUNK, min(B, (c + 1) * CHUNK)):
            vr = V[r]
            nnz[c], binary[c] = _list_row(vr, idx[c], val[c])
            _gather(pre, c, idx, val, nnz, binary, W, totW, True)
            for j in range(M):
                pr[j] = _sigma(pr[j] + b[j])
            hnnz[c] = _sample_list(pr, key_h, np.uint64(r) * np.uint64(M), hidx[c])
            _gather(act, c, hidx, hval, hnnz, hbin, WTp, totWTp, True)
            base = np.uint64(r) * np.uint64(N)
            for i in range(n_pix):
                x = ac[i] + a[i]
                p, tail = _sigmoid_and_tail(x)
                v = vr[i]
                d = v - (_as(1, x) if uniform_at(key_v, base + np.uint64(i)) < p else _as(0, x))
                sec[i] += d * d
                neg_log_p = min(max(max(-x, _as(0, x)) + tail, lo), hi)       # -log σ(x), clipped
                neg_log_q = min(max(max(x, _as(0, x)) + tail, lo), hi)        # -log(1 - σ(x)), clipped
                cec[i] += v * neg_log_p + (_as(1, x) - v) * neg_log_q


@njit(**_JIT)
def _fold_sum(x):
    """Σ x in float64, destroying x: 16 lanes folded into x[:16] first (vectorizes without
    reassociation), then the lanes and the tail."""
    n = x.shape[0]
    m = n - n % 16
    for i0 in range(16, m, 16):
        for q in range(16):
            x[q] += x[i0 + q]
    s = 0.0
    for q in range(min(16, m)):
        s += np.float64(x[q])
    for i in range(m, n):
        s += np.float64(x[i])
    return s


@njit(**_JIT)
def _exact_logits(xi, xv, nn, W, a, b, n_pix, out):
    """log p(y|x) up to a constant, in float64 from scratch: a_y + Σ_j softplus(b_j + (xW_x)_j + W_yj)
    for the pixels xi[:nn] with values xv[:nn] — the float64 decision of a near tie."""
    M = W.shape[1]
    n_labels = out.shape[0]
    base = np.zeros(M)
    for n in range(nn):
        wi = W[xi[n]]
        v = np.float64(xv[n])
        for j in range(M):
            base[j] += v * np.float64(wi[j])
    for y in range(n_labels):
        wy = W[n_pix + y]
        s = 0.0
        for j in range(M):
            z = base[j] + np.float64(b[j]) + np.float64(wy[j])
            s += max(z, 0.0) + np.log1p(np.exp(-abs(z)))
        out[y] = np.float64(a[n_pix + y]) + s


@njit(**_PJIT)
def _crbm_predict(X, W, totWp, a, b, recheck, idx, val, nnz, binary, pre, terms, logits, pred):
    """pred[r] = argmax_y of a_y + Σ_j softplus(b_j + (x_r W_x)_j + W_yj) (first index on ties); with
    ``recheck``, rows whose two best logits are within RECHECK (relative) are decided in float64."""
    B, n_pix = X.shape
    M = W.shape[1]
    n_labels = W.shape[0] - n_pix
    nch = logits.shape[0]
    Wp = W[:n_pix]
    for c in prange(nch):
        pr = pre[c]
        tm = terms[c]
        lg = logits[c]
        for r in range(c * CHUNK, min(B, (c + 1) * CHUNK)):
            nnz[c], binary[c] = _list_row(X[r], idx[c], val[c])
            _gather(pre, c, idx, val, nnz, binary, Wp, totWp, True)
            for j in range(M):
                pr[j] += b[j]
            for y in range(n_labels):
                wy = W[n_pix + y]
                for j in range(M):
                    z = pr[j] + wy[j]
                    tm[j] = max(z, _as(0, z)) + _softplus_tail(z)
                lg[y] = np.float64(a[n_pix + y]) + _fold_sum(tm)
            best = 0
            second = -np.inf
            for y in range(1, n_labels):
                if lg[y] > lg[best]:
                    second = lg[best]
                    best = y
                elif lg[y] > second:
                    second = lg[y]
            if recheck and lg[best] - second <= RECHECK * max(1.0, abs(lg[best])):
                _exact_logits(idx[c], val[c], nnz[c], W, a, b, n_pix, lg)
                best = 0
                for y in range(1, n_labels):
                    if lg[y] > lg[best]:
                        best = y
            pred[r] = best


@njit(**dict(_PJIT, fastmath={"contract"}))
def _best_cosines(Wn, M, rowbest, colbest, acc):
    """rowbest[j] = max over k > j, colbest[q, k] = max over the j < k of block q, of Σ_i Wn[i, j] Wn[i, k]
    (Wn: P × Mpad, its first M columns the units, the rest zero): the upper triangle of the Gram matrix
    in strips of acc.shape[2] columns k (the strip of Wn stays in cache), 8 rows j per block (blocks
    with a pair in the strip are shared evenly by the threads), the 8 × strip products summed in
    acc[block] (no reduction, so the loop vectorizes)."""
    P = Wn.shape[0]
    KS = acc.shape[2]
    rowbest[:] = -np.inf
    colbest[:] = -np.inf
    for k0 in range(0, M, KS):
        k1 = min(M, k0 + KS)
        w = k1 - k0
        for q in prange((k1 - 1 + 7) // 8):
            j0 = q * 8
            A = acc[q]
            a0, a1, a2, a3, a4, a5, a6, a7 = A[0], A[1], A[2], A[3], A[4], A[5], A[6], A[7]
            A[:, :w] = 0.0
            for i in range(P):
                row = Wn[i, k0:k1]
                wi = Wn[i, j0:j0 + 8]
                w0, w1, w2, w3, w4, w5, w6, w7 = wi[0], wi[1], wi[2], wi[3], wi[4], wi[5], wi[6], wi[7]
                for kk in range(w):
                    r = row[kk]
                    a0[kk] += w0 * r
                    a1[kk] += w1 * r
                    a2[kk] += w2 * r
                    a3[kk] += w3 * r
                    a4[kk] += w4 * r
                    a5[kk] += w5 * r
                    a6[kk] += w6 * r
                    a7[kk] += w7 * r
            cb = colbest[q]
            for jj in range(8):
                j = j0 + jj
                for kk in range(max(0, j + 1 - k0), w):
                    d = A[jj, kk]
                    if d > rowbest[j]:
                        rowbest[j] = d
                    if d > cb[k0 + kk]:
                        cb[k0 + kk] = d


@njit(**_PJIT)
def _mean_field(V, W, WT, a, b, idx, val, nnz, binary, tot, H, out):
    """out = σ(σ(VW + b) Wᵀ + a) by rows: H[r] = σ(V[r] W + b) by a gather, then Σ_j H[r, j] WT[j]."""
    B, N = V.shape
    M = W.shape[1]
    for r in prange(B):
        nnz[r], binary[r] = _list_row(V[r], idx[r], val[r])
        _gather(H, r, idx, val, nnz, binary, W, tot, True)
        hr = H[r]
        o = out[r]
        o[:] = 0
        for j in range(M):
            h = _sigma(hr[j] + b[j])
            s = WT[j]
            for i in range(N):
                o[i] += h * s[i]
        for i in range(N):
            o[i] = _sigma(o[i] + a[i])


# --------------------------------------------------------------------------------------------------
# public API (the signatures of khrbm.core.metrics)


def _params(params: Params):
    W, a, b = params.W, params.a, params.b
    dt = W.dtype
    if dt not in (np.float32, np.float64):
        raise ValueError(f"parameters must be float32 or float64, got {dt}")
    return (np.ascontiguousarray(W), np.ascontiguousarray(a, dt), np.ascontiguousarray(b, dt))


def _rows(V, dtype, n_cols: int, what: str):
    V = np.asarray(V)
    if V.ndim != 2 or V.shape[1] != n_cols:
        raise ValueError(f"{what} must have {n_cols} columns, got shape {V.shape}")
    return np.ascontiguousarray(V.view(np.uint8) if V.dtype == np.bool_ else V)


def _chunks(n: int) -> int:
    return max(1, -(-n // CHUNK))


def reconstruction_metrics(V, params: Params, key: int, n_pixels=None) -> tuple[float, float]:
    """(reconstruction MSE per pixel, cross-entropy) of the rows of V (Eqs. 11, 12), equal to
    ``metrics.reconstruction_mse`` and ``metrics.cross_entropy`` called with the same ``key``; the first
    ``n_pixels`` columns are scored (a cRBM's label block is not)."""
    W, a, b = _params(params)
    N, M = W.shape
    V = np.ascontiguousarray(_rows(V, W.dtype, N, "V"), W.dtype)
    n_pix = N if n_pixels is None else int(n_pixels)
    B = len(V)
    if B == 0:
        return math.nan, math.nan
    nch = _chunks(B)
    dt = W.dtype
    e, i32 = np.empty, np.int32
    WTp = e((M, n_pix), dt)
    totW, totWTp = e(M, dt), e(n_pix, dt)
    se, ce = e((nch, n_pix), dt), e((nch, n_pix), dt)
    key_h = np.uint64(rng.stream(key, rng.GIBBS_HIDDEN))
    key_v = np.uint64(rng.stream(key, rng.GIBBS_VISIBLE))
    with _LOCK:
        _transpose(W[:n_pix], WTp)
        _column_sum_rows(W, totW)
        _column_sum_rows(WTp, totWTp)
        _reconstruction(V, W, WTp, totW, totWTp, a, b, key_h, key_v,
                        e((nch, N), i32), e((nch, N), dt), e(nch, i32), e(nch, np.bool_),
                        e((nch, M), dt), e((nch, M), i32), np.ones((nch, M), dt), e(nch, i32),
                        np.ones(nch, np.bool_), e((nch, n_pix), dt), se, ce)
    n = B * n_pix
    return float(se.sum(dtype=np.float64) / n), float(ce.sum(dtype=np.float64) / n)


def crbm_accuracy(X_pixels, y, params: Params, n_labels: int) -> float:
    """Fraction of rows whose exact ``argmax_y log p(y|x)`` equals ``y`` (as ``metrics.crbm_accuracy``)."""
    if len(X_pixels) == 0:
        return math.nan
    return float(np.mean(crbm_predict(X_pixels, params, n_labels) == np.asarray(y)))


def crbm_predict(X_pixels, params: Params, n_labels: int) -> np.ndarray:
    """The predicted labels (int64) of the pixel rows: exact ``argmax_y log p(y|x)`` (see crbm_accuracy)."""
    W, a, b = _params(params)
    n_pix, M = W.shape[0] - int(n_labels), W.shape[1]
    X = _rows(X_pixels, W.dtype, n_pix, "X_pixels")
    B = len(X)
    nch = _chunks(B)
    dt = W.dtype
    e, i32 = np.empty, np.int32
    totWp = e(M, dt)
    pred = e(B, np.int64)
    with _LOCK:
        _column_sum_rows(W[:n_pix], totWp)
        _crbm_predict(X, W, totWp, a, b, dt == np.float32, e((nch, n_pix), i32), e((nch, n_pix), dt), e(nch, i32),
                      e(nch, np.bool_), e((nch, M), dt), e((nch, M), dt), e((nch, int(n_labels))), pred)
    return pred


def receptive_field_overlap(W, n_pixels=None) -> float:
    """Mean over hidden units of the largest cosine similarity between ``W[:n_pixels, j]`` and another
    column (as ``metrics.receptive_field_overlap``): the norms in float64, the cosines in W's dtype
    (float32 weights: cosines to ~1e-7). nan with a single hidden unit."""
    W = np.asarray(W)
    if n_pixels is not None:
        W = W[: int(n_pixels)]
    M = W.shape[1]
    if M < 2:
        return math.nan
    dt = np.float32 if W.dtype == np.float32 else np.float64
    W = np.asarray(W, np.float64)
    norm = np.linalg.norm(W, axis=0)
    Mpad = -(-M // 8) * 8
    Wn = np.zeros((W.shape[0], Mpad), dt)
    Wn[:, :M] = W / np.where(norm > 0, norm, 1.0)
    nb = Mpad // 8
    rowbest, colbest = np.empty(Mpad, dt), np.empty((nb, Mpad), dt)
    with _LOCK:
        _best_cosines(Wn, M, rowbest, colbest, np.empty((nb, 8, 128), dt))
    best = np.maximum(rowbest, colbest.max(axis=0))[:M]
    return float(best.mean(dtype=np.float64))


def mean_field_reconstruction(V, params: Params) -> np.ndarray:
    """σ(σ(VW + b)Wᵀ + a) in the parameters' dtype (as :meth:`khrbm.train.run.Run.reconstruct`)."""
    W, a, b = _params(params)
    N, M = W.shape
    V = _rows(V, W.dtype, N, "V")
    B = len(V)
    dt = W.dtype
    e = np.empty
    tot = e(M, dt)
    WT = e((M, N), dt)
    out = e((B, N), dt)
    with _LOCK:
        _column_sum_rows(W, tot)
        _transpose(W, WT)
        _mean_field(V, W, WT, a, b, e((B, N), np.int32), e((B, N), dt), e(B, np.int32), e(B, np.bool_), tot,
                    e((B, M), dt), out)
    return out


_WARM: set = set()


def warmup(dtypes=(np.float32, np.float64)):
    """Compile (or load from the disk cache) every evaluation kernel for ``dtypes`` on tiny arrays."""
    for dt in dtypes:
        dt = np.dtype(dt)
        if dt in _WARM:
            continue
        g = np.random.default_rng(0)
        N, M = 12, 5
        p = Params((g.standard_normal((N, M)) * 0.3).astype(dt), np.zeros(N, dt), np.zeros(M, dt))
        for V in ((g.random((3, N)) < 0.3).astype(np.uint8), g.random((3, N)).astype(dt)):
            reconstruction_metrics(V, p, 1, N - 2)
            mean_field_reconstruction(V, p)
            crbm_accuracy(V[:, : N - 3], np.zeros(3, np.int64), p, 3)
        receptive_field_overlap(p.W, N - 2)
        _WARM.add(dt)
