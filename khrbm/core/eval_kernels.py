"""The evaluation metrics of :mod:`khrbm.core.metrics` as Numba kernels: same values, same random
streams, the step's sparse row gathers, and both cores.

* :func:`split_metrics`: one pass over a split that gives ``metrics.reconstruction_mse``,
  ``metrics.cross_entropy`` (same ``key``) and, for a cRBM, ``metrics.crbm_accuracy``. Per image: one
  gather ``xW`` over the pixels, which serves both the accuracy (``c = xW + b``) and, plus the label row,
  the hidden sample ``h ~ p(h|v)`` (stream ``GIBBS_HIDDEN`` of ``key``, uniform ``r·M + j``) that both
  NumPy metrics draw identically; then one gather ``hWᵀ`` over the pixel columns, the MSE's visible
  sample (Eq. 11; stream ``GIBBS_VISIBLE``, uniform ``r·N + i``) and the clipped cross-entropy (Eq. 12).
  :func:`reconstruction_metrics` and :func:`crbm_accuracy` are the same kernel with the signatures of
  :mod:`khrbm.core.metrics`.
* :func:`crbm_predict`: exact ``argmax_y log p(y|x)`` of the cRBM (SPEC, cRBM).
* :func:`receptive_field_overlap`: mean over units of the largest cosine with another unit.
* :func:`mean_field_reconstruction`: ``σ(σ(VW+b)Wᵀ+a)``, the probes the trainer's snapshots show.

How the per-image work is kept small (``benchmarks/README.md`` has the measurements):

* **Two phases per chunk.** A chunk of ``CHUNK`` images first does every ``xW`` gather and hidden sample
  (W in the core's cache), then every ``hWᵀ`` gather (Wᵀ in cache): alternating per image, W and Wᵀ
  (1.5 MB each at M = 500) would not fit one core's L2 together.
* **Images in blocks.** The gathers of BLOCK images advance together over blocks of rows of W (or Wᵀ)
  (:func:`~khrbm.core.kernels._gather_rows`), so a row in L1 serves every image of the block that has
  it; each image's sums keep the order of a gather of its own.
* **Logarithms by products.** The cross-entropy's ``log(1 + e^{-|x|})`` terms and the accuracy's softplus
  tails are summed as the log of a float64 product of the factors ``1 + e^{-|x|}`` (each in [1, 2], so
  960 of them cannot overflow): one ``log`` per row instead of one per pixel or unit.
* **Accuracy without an exp per term.** ``softplus(c_j + W_yj) = max(z, 0) + log(1 + e^{-|z|})`` with
  ``e^{-|z|} = e^{∓c_j} e^{∓W_yj}``: ``e^{±c}`` once per image, ``e^{±W_y}`` once per evaluation, so each
  of the 10 × M terms is a product and a select (when every |c_j| and |W_yj| ≤ ``EXP_RANGE``, else the
  terms are computed one by one).

Equality. float64 parameters: every product, exp and log is float64, as in the NumPy metrics, so the
values agree to rounding (~1e-12; a sample could differ only if a uniform fell within an ulp of its
probability). float32 parameters: the gathers, the sigmoid (the step's vectorized exp) and the per-pixel
sums over a chunk (≤ 128 rows) are float32, the products, logs and the sum over chunks float64: the MSE may
differ by the rare pixel whose uniform lies within ~1e-7 of its probability, the cross-entropy by ~1e-7
relative, the overlap (float32 cosines) by ~1e-8; cRBM logits are float32 sums too, and any sample whose
two best logits are within RECHECK (1e-4, relative) is decided again in float64 (the labels within that
margin of the best), so the predictions are the exact ones (tests/test_eval_kernels.py).

Images are processed in fixed chunks of ``CHUNK`` rows; each thread takes every T-th chunk with its own
scratch, and partial sums are per chunk, so a value does not depend on the number of threads. Launches
take the kernels' lock (:data:`khrbm.core.kernels._LOCK`: one threading runtime, launched by this module
and ``kernels`` only). A module of its own rather than more of ``kernels.py`` (already ~1000 lines):
Numba's on-disk cache only watches the file that defines a function, so
:func:`~khrbm.core.kernels.drop_stale_cache` drops this module's cache whenever ``kernels.py`` or
``rng.py`` (whose jitted functions are compiled into these kernels) change, and editing a metric does
not recompile the step.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import rng
from .kernels import (_JIT, _LOCK, _PJIT, _as, _exp32, _gather, _gather_rows, _list_row, _sample_list,
                      _sigmoid, _transpose, drop_stale_cache)
from .rbm import Params
from .rng import uniform_at

__all__ = ["split_metrics", "reconstruction_metrics", "crbm_accuracy", "crbm_predict",
           "receptive_field_overlap", "mean_field_reconstruction"]

drop_stale_cache("eval_kernels", ("kernels.py", "rng.py"))

CHUNK = 128                  # samples per chunk (one chunk = one unit of parallel work)
BLOCK = 16                   # samples per gather pass (kernels._gather_rows): each row of W serves all of them
CE_CLIP = 1e-6               # as metrics.CE_CLIP: p clipped to [CE_CLIP, 1 - CE_CLIP]
_CE_LO = -math.log1p(-CE_CLIP)     # the clipped -log p and -log(1 - p) lie in [_CE_LO, _CE_HI]
_CE_HI = -math.log(CE_CLIP)
_CE_EDGE = math.log(1.0 / CE_CLIP - 1.0)   # σ(x) or 1 - σ(x) is clipped iff |x| ≥ this
RECHECK = 1e-4               # float32 cRBM logits closer than this (relative) are decided in float64
EXP_RANGE = 80.0             # e^{±c}, e^{±W_y} are formed when |c|, |W_y| ≤ this (no overflow or denormal)
_LOG_GROUP = 960             # factors in [1, 2] multiplied before one log (2^960 < float64's max)

# --------------------------------------------------------------------------------------------------
# elementary functions: float32 vectorizable (Cephes polynomials), float64 libm as the NumPy metrics

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


def _exp(x):  # pragma: no cover - replaced by the overload inside jitted code
    return np.exp(x)


@overload(_exp, jit_options=_JIT)
def _exp_ov(x):
    """e^x: float32 the step's vectorized polynomial, float64 libm."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _exp32(x)
    return lambda x: np.exp(x)


def _softplus_tail(x):  # pragma: no cover - replaced by the overload inside jitted code
    return np.log1p(np.exp(-abs(x)))


@overload(_softplus_tail, jit_options=_JIT)
def _softplus_tail_ov(x):
    """log1p(exp(-|x|)), so that softplus(±x) = max(±x, 0) + _softplus_tail(x) with no cancellation."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _log1p32(_exp32(-abs(x)))
    return lambda x: np.log1p(np.exp(-abs(x)))


def _sigmoid_and_tail_factor(x):  # pragma: no cover - replaced by the overload inside jitted code
    return 1.0 / (1.0 + np.exp(-x)), np.exp(-abs(x))


@overload(_sigmoid_and_tail_factor, jit_options=_JIT)
def _sigmoid_and_tail_factor_ov(x):
    """(σ(x), e^{-|x|}); float32 from one exp(-|x|), float64 σ exactly as the NumPy metrics."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            e = _exp32(-abs(x))
            return (_ONE32 if x >= _ZERO32 else e) / (_ONE32 + e), e
    else:
        def impl(x):
            return 1.0 / (1.0 + np.exp(-x)), np.exp(-abs(x))
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


@njit(**_JIT)
def _sum_log(F):
    """Σ log F for float64 F in [1, 2], destroying F: per group of _LOG_GROUP entries, 16 lanes of
    products folded into the group's first 16 (vectorizes), then one log of their product. (Loops run
    over slices from 0: a loop index that may be negative costs Numba's wraparound, and gathers.)"""
    n = F.shape[0]
    s = 0.0
    for g0 in range(0, n, _LOG_GROUP):
        G = F[g0:min(n, g0 + _LOG_GROUP)]
        m = G.shape[0] // 16 * 16
        lanes = G[:16]
        for i0 in range(1, m // 16):
            block = G[i0 * 16:i0 * 16 + 16]
            for q in range(16):
                lanes[q] *= block[q]
        prod = 1.0
        for q in range(min(16, m)):
            prod *= lanes[q]
        rest = G[m:]
        for i in range(rest.shape[0]):
            prod *= rest[i]
        s += np.log(prod)
    return s


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


@njit(**_JIT)
def _score_pixels(ac, a, xr, key_v, base, sec, cec, F, lo, hi, edge):
    """One image's pixels, x = ac + a: the MSE's sample v̂ = u < σ(x) (u = uniform_at(key_v, base + i)),
    sec += (v - v̂)²; the cross-entropy (Eq. 12) -v log p - (1 - v) log(1 - p), p = σ(x) clipped: where
    |x| < edge (no clipping) it is v max(-x, 0) + (1 - v) max(x, 0) + log(1 + e^{-|x|}), else the clipped
    values. cec += all but the logs; returns Σ log(1 + e^{-|x|}) over the unclipped pixels (float64).
    ac is overwritten with e^{-|x|} (0 where clipped), which keeps the loop in one dtype, so it vectorizes
    (a float64 store in it did not); F (float64) then gets the factors 1 + e^{-|x|}."""
    one = _as(1, lo)
    zero = _as(0, lo)
    n = ac.shape[0]
    for i in range(n):
        x = ac[i] + a[i]
        p, e = _sigmoid_and_tail_factor(x)
        v = _as(xr[i], lo)
        d = v - (one if uniform_at(key_v, base + np.uint64(i)) < p else zero)
        sec[i] += d * d
        inside = abs(x) < edge
        linear = v * max(-x, zero) + (one - v) * max(x, zero)
        clipped = v * (hi if x < zero else lo) + (one - v) * (lo if x < zero else hi)
        cec[i] += linear if inside else clipped
        ac[i] = e if inside else zero
    for i in range(n):
        F[i] = 1.0 + np.float64(ac[i])
    return _sum_log(F[:n])


@njit(**_JIT)
def _exact_logits(xi, xv, nn, W, a, b, n_pix, out, base, margin):
    """The float64 decision of a near tie: out[y] for the labels whose float32 logit is within ``margin``
    of the best one, from scratch in float64 (a_y + Σ_j softplus(b_j + (xW_x)_j + W_yj) over the pixels
    xi[:nn] with values xv[:nn]); -inf for the others, which cannot win."""
    M = W.shape[1]
    n_labels = out.shape[0]
    top = -np.inf
    for y in range(n_labels):
        top = max(top, out[y])
    base[:M] = 0.0
    for n in range(nn):
        wi = W[xi[n]]
        v = np.float64(xv[n])
        for j in range(M):
            base[j] += v * np.float64(wi[j])
    for y in range(n_labels):
        if not out[y] >= top - margin:
            out[y] = -np.inf
            continue
        wy = W[n_pix + y]
        s = 0.0
        for j in range(M):
            z = base[j] + np.float64(b[j]) + np.float64(wy[j])
            s += max(z, 0.0) + np.log1p(np.exp(-abs(z)))
        out[y] = np.float64(a[n_pix + y]) + s


@njit(**_JIT)
def _argmax(lg):
    best = 0
    for y in range(1, lg.shape[0]):
        if lg[y] > lg[best]:
            best = y
    return best


@njit(**dict(_JIT, fastmath={"reassoc"}))
def _softplus_sum(c, w, e_pos, e_neg, w_pos, w_neg):
    """Σ_j softplus(c_j + w_j) = Σ max(z, 0) + log Π (1 + e^{-|z|}) with e^{-|z|} = e^{-c} e^{-w} (z ≥ 0)
    or e^{c} e^{w} (e_pos = e^{c}, e_neg = e^{-c}, w_pos, w_neg likewise): a sum in the parameters' dtype
    and a float64 product per _LOG_GROUP units, both reassociated so that they vectorize (the float32
    logits are only compared, near ties are decided again in float64)."""
    M = c.shape[0]
    zero = _as(0, c[0])
    one = _as(1, c[0])
    total = 0.0
    for g0 in range(0, M, _LOG_GROUP):
        g1 = min(M, g0 + _LOG_GROUP)
        cg, wg, ep, en, wp, wn = c[g0:g1], w[g0:g1], e_pos[g0:g1], e_neg[g0:g1], w_pos[g0:g1], w_neg[g0:g1]
        linear = zero
        prod = 1.0
        for j in range(g1 - g0):
            z = cg[j] + wg[j]
            t_neg = en[j] * wn[j]                    # both loaded before the select: the loop vectorizes
            t_pos = ep[j] * wp[j]
            linear += max(z, zero)
            prod *= np.float64(one + (t_neg if z >= zero else t_pos))
        total += np.float64(linear) + np.log(prod)
    return total


@njit(**dict(_JIT, fastmath={"reassoc"}))
def _softplus_sum_direct(c, w):
    """Σ_j softplus(c_j + w_j), each term from its own exp and log (when e^{±c} or e^{±w} would not be
    safe to form), summed in float64, reassociated."""
    s = 0.0
    for j in range(c.shape[0]):
        z = c[j] + w[j]
        s += np.float64(max(z, _as(0, z)) + _softplus_tail(z))
    return s


@njit(**_JIT)
def _predict(pr, b, W, a, n_pix, EW, w_fast, recheck, cb, ec, F, lg, xi, xv, nn):
    """argmax_y of a_y + Σ_j softplus(c_j + W_yj), c = pr + b (pr = the image's xW_x; first index on ties),
    in the parameters' dtype with float64 sums; with ``recheck``, a near tie (within RECHECK, relative) is
    decided in float64 (:func:`_exact_logits`)."""
    M = pr.shape[0]
    n_labels = lg.shape[0]
    big = _as(EXP_RANGE, b[0])
    bad = 0
    for j in range(M):
        c = pr[j] + b[j]
        cb[j] = c
        bad += 0 if abs(c) <= big else 1
    if w_fast and bad == 0:
        e_pos = ec[0]
        e_neg = ec[1]
        for j in range(M):
            e = _exp(cb[j])
            e_pos[j] = e
            e_neg[j] = _as(1, e) / e
        for y in range(n_labels):
            lg[y] = np.float64(a[n_pix + y]) + _softplus_sum(cb, W[n_pix + y], e_pos, e_neg, EW[0, y], EW[1, y])
    else:
        for y in range(n_labels):
            lg[y] = np.float64(a[n_pix + y]) + _softplus_sum_direct(cb, W[n_pix + y])
    best = _argmax(lg)
    second = -np.inf
    for y in range(n_labels):
        if y != best and lg[y] > second:
            second = lg[y]
    margin = RECHECK * max(1.0, abs(lg[best]))
    if recheck and lg[best] - second <= margin:
        _exact_logits(xi, xv, nn, W, a, b, n_pix, lg, F, margin)
        best = _argmax(lg)
    return best


@njit(**_PJIT)
def _evaluate(X, Y, W, Wp, WTp, totWp, totWTp, a, b, key_h, key_v, reconstruct, predict, recheck, EW, w_fast,
              idx, val, nnz, binary, pre, hidx, hval, hbin, hnnz, hmask, act, cur, F, cb, ec, lg, se, ce, ce_log,
              pred):
    """Per chunk c of CHUNK images (the rows of X, pixels, with the label block Y of V = [X, Y]):
    if ``predict``, pred[r] = the cRBM's exact argmax_y p(y|x_r); if ``reconstruct``, se[c, i] and ce[c, i]
    = Σ_r of pixel i's squared error and cross-entropy (without the logs, which go to ce_log[c]), with
    h = u_h < σ(vW + b), v̂ = u_v < σ(hWᵀ + a) over the pixels (Wp = W[:n_pix], WTp = Wpᵀ). The gathers
    take BLOCK images at a time (:func:`~khrbm.core.kernels._gather_rows`). Thread slot t (scratch row t
    of idx … lg) takes chunks t, t + T, …"""
    B, n_pix = X.shape
    N, M = W.shape
    nch = se.shape[0]
    nslot = idx.shape[0]
    n_lab = Y.shape[1]
    lo = _as(_CE_LO, a[0])
    hi = _as(_CE_HI, a[0])
    edge = _as(_CE_EDGE, a[0])
    a_pix = a[:n_pix]
    for t in prange(nslot):
        it, vt, nt, bt, ct = idx[t], val[t], nnz[t], binary[t], cur[t]
        for c in range(t, nch, nslot):
            r0 = c * CHUNK
            r1 = min(B, r0 + CHUNK)
            for q0 in range(r0, r1, BLOCK):  # phase 1: xW, the prediction, the hidden sample (W in cache)
                nq = min(r1, q0 + BLOCK) - q0
                for q in range(nq):
                    nt[q], bt[q] = _list_row(X[q0 + q], it[q], vt[q])
                _gather_rows(pre[t], it, vt, nt, bt, nq, Wp, totWp, True, ct)
                for q in range(nq):
                    r = q0 + q
                    pr = pre[t, q]
                    if predict:
                        pred[r] = _predict(pr, b, W, a, n_pix, EW, w_fast, recheck, cb[t], ec[t], F[t], lg[t],
                                           it[q], vt[q], nt[q])
                    if reconstruct:
                        for k in range(n_lab):
                            y = Y[r, k]
                            if y != 0:
                                wk = W[n_pix + k]
                                for j in range(M):
                                    pr[j] += y * wk[j]
                        for j in range(M):
                            pr[j] = _sigma(pr[j] + b[j])
                        hnnz[t, r - r0] = _sample_list(pr, key_h, np.uint64(r) * np.uint64(M), hidx[t, r - r0],
                                                       hmask[t])
            if not reconstruct:
                continue
            sec = se[c]                      # phase 2: hWᵀ and the pixels' scores (Wᵀ in cache)
            cec = ce[c]
            sec[:] = 0.0
            cec[:] = 0.0
            logs = 0.0
            for q0 in range(r0, r1, BLOCK):
                nq = min(r1, q0 + BLOCK) - q0
                _gather_rows(act[t], hidx[t, q0 - r0:], hval, hnnz[t, q0 - r0:], hbin, nq, WTp, totWTp, True, ct)
                for q in range(nq):
                    r = q0 + q
                    logs += _score_pixels(act[t, q], a_pix, X[r], key_v, np.uint64(r) * np.uint64(N), sec, cec,
                                          F[t], lo, hi, edge)
            ce_log[c] = logs


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
# public API (the signatures of khrbm.core.metrics, and split_metrics)


def _params(params: Params):
    W, a, b = params.W, params.a, params.b
    dt = W.dtype
    if dt not in (np.float32, np.float64):
        raise ValueError(f"parameters must be float32 or float64, got {dt}")
    return (np.ascontiguousarray(W), np.ascontiguousarray(a, dt), np.ascontiguousarray(b, dt))


def _rows(V, dtype, n_cols: int, what: str):
    """V as C-contiguous rows of ``n_cols`` columns: uint8 (also for bool input) or ``dtype``."""
    V = np.asarray(V)
    if V.ndim != 2 or V.shape[1] != n_cols:
        raise ValueError(f"{what} must have {n_cols} columns, got shape {V.shape}")
    if V.dtype == np.bool_:
        V = V.view(np.uint8)
    return np.ascontiguousarray(V, None if V.dtype == np.uint8 else dtype)


def _run(X, Y, params: Params, key: int, reconstruct: bool, predict: bool):
    """The kernel :func:`_evaluate` on pixel rows X (uint8 or the parameters' dtype) and label block Y:
    (MSE, cross-entropy) of V = [X, Y] if ``reconstruct`` (else nan), predictions if ``predict``."""
    W, a, b = _params(params)
    N, M = W.shape
    dt = W.dtype
    B, n_pix = X.shape
    n_labels = N - n_pix
    nch = max(1, -(-B // CHUNK))
    T = max(1, min(numba.get_num_threads(), nch))
    e, i32 = np.empty, np.int32
    Wp = W[:n_pix]
    WTp = e((M, n_pix), dt) if reconstruct else e((0, n_pix), dt)
    totWp, totWTp = e(M, dt), e(n_pix, dt)
    se, ce, ce_log = e((nch, n_pix), dt), e((nch, n_pix), dt), np.zeros(nch)
    pred = e(B if predict else 0, np.int64)
    wl = W[n_pix:].astype(np.float64)
    w_fast = bool(predict and np.all(np.abs(wl) <= EXP_RANGE))
    EW = np.stack([np.exp(wl), np.exp(-wl)]).astype(dt) if w_fast else e((2, n_labels, M), dt)
    key_h = np.uint64(rng.stream(key, rng.GIBBS_HIDDEN))
    key_v = np.uint64(rng.stream(key, rng.GIBBS_VISIBLE))
    with _LOCK:
        _column_sum_rows(Wp, totWp)
        if reconstruct:
            _transpose(Wp, WTp)
            _column_sum_rows(WTp, totWTp)
        _evaluate(X, Y, W, Wp, WTp, totWp, totWTp, a, b, key_h, key_v, reconstruct, predict, dt == np.float32,
                  EW, w_fast, e((T, BLOCK, n_pix), i32), e((T, BLOCK, n_pix), dt), e((T, BLOCK), i32),
                  e((T, BLOCK), np.bool_), e((T, BLOCK, M), dt), e((T, CHUNK, M), i32), np.ones((BLOCK, M), dt),
                  np.ones(BLOCK, np.bool_), e((T, CHUNK), i32), e((T, M), np.uint8), e((T, BLOCK, n_pix), dt),
                  e((T, BLOCK), np.int64), e((T, max(n_pix, M))), e((T, M), dt), e((T, 2, M), dt), e((T, n_labels)),
                  se, ce, ce_log, pred)
    if not reconstruct or B == 0:
        return math.nan, math.nan, pred
    n = B * n_pix
    mse = se.sum(dtype=np.float64) / n
    return float(mse), float((ce.sum(dtype=np.float64) + ce_log.sum()) / n), pred


def split_metrics(X_pixels, y, params: Params, key: int, n_labels: int = 0, accuracy: bool = True):
    """(reconstruction MSE per pixel, cross-entropy, accuracy) of the images ``X_pixels`` with labels ``y``
    in one pass: ``reconstruction_metrics(V, params, key, n_pixels)`` with V = [X, one-hot(y)] (a cRBM,
    ``n_labels`` > 0) or V = X, and ``crbm_accuracy(X_pixels, y, params, n_labels)`` (nan unless
    ``accuracy`` and a cRBM). Pixel rows may be uint8 (no float copy of the split is made)."""
    W, _, _ = _params(params)
    n_labels = int(n_labels)
    X = _rows(X_pixels, W.dtype, W.shape[0] - n_labels, "X_pixels")
    Y = np.zeros((len(X), n_labels), W.dtype)
    predict = bool(accuracy and n_labels and len(X))
    if n_labels:
        y = np.asarray(y)
        Y[np.arange(len(X)), y] = 1
    mse, ce, pred = _run(X, Y, params, key, True, predict)
    return mse, ce, float(np.mean(pred == y)) if predict else math.nan


def reconstruction_metrics(V, params: Params, key: int, n_pixels=None) -> tuple[float, float]:
    """(reconstruction MSE per pixel, cross-entropy) of the rows of V (Eqs. 11, 12), equal to
    ``metrics.reconstruction_mse`` and ``metrics.cross_entropy`` called with the same ``key``; the first
    ``n_pixels`` columns are scored (a cRBM's label block is not)."""
    W, _, _ = _params(params)
    N = W.shape[0]
    V = _rows(V, W.dtype, N, "V")
    n_pix = N if n_pixels is None else int(n_pixels)
    X = np.ascontiguousarray(V[:, :n_pix])
    mse, ce, _ = _run(X, np.ascontiguousarray(V[:, n_pix:], W.dtype), params, key, True, False)
    return mse, ce


def crbm_accuracy(X_pixels, y, params: Params, n_labels: int) -> float:
    """Fraction of rows whose exact ``argmax_y log p(y|x)`` equals ``y`` (as ``metrics.crbm_accuracy``)."""
    if len(X_pixels) == 0:
        return math.nan
    return float(np.mean(crbm_predict(X_pixels, params, n_labels) == np.asarray(y)))


def crbm_predict(X_pixels, params: Params, n_labels: int) -> np.ndarray:
    """The predicted labels (int64) of the pixel rows: exact ``argmax_y log p(y|x)`` (see crbm_accuracy)."""
    W, _, _ = _params(params)
    X = _rows(X_pixels, W.dtype, W.shape[0] - int(n_labels), "X_pixels")
    return _run(X, np.zeros((len(X), 0), W.dtype), params, 0, False, True)[2]


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
