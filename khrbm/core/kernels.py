"""The fast training step: Numba kernels for the whole KH + CD-k / PCD-k step, same contract as
:func:`khrbm.step.numpy_step`.

How it is fast (``benchmarks/README.md`` has the measurements behind each choice):

* **Binary units are index lists.** A minibatch, a hidden sample and a visible sample are all 0/1, so
  every product with W is a *row gather*: ``(vW)_j = Σ_{i: v_i=1} W_ij`` adds the rows of W picked by
  the active units (13 % of MNIST pixels), and the hidden→visible product adds rows of a transposed
  copy ``WT`` that the stepper refreshes at the start of each step. The gradient ``XᵀPh - vᵏᵀQh`` is
  scattered per pixel row of W (each row written once) from per-pixel lists of the batch rows where the
  pixel is on in X only, in vᵏ only (``-Qh``) or in both (``Ph - Qh``, one row instead of two).
  Non-binary inputs work too: the lists carry the values; binary lists are summed without them.
* **Dense rows take the complement.** A binary row with more ones than zeros is gathered as
  ``column sums - Σ over its zeros``, so a product never costs more than half a dense one; this is
  the fallback for dense data (KMNIST, Fashion-MNIST, inverted images, hidden layers near 50 %). It is
  chosen per row, and the column sums are computed only when the rows that need them save more than
  they cost. (Measured: a dense BLAS product is slower than the gather at any density ≤ 1/2 here.)
* **Random numbers are counter-based** (:func:`khrbm.rng.uniform_at`): each element's uniform is a pure
  function of (stream key, row·ncols + col), so the kernels draw exactly the numbers the NumPy reference
  draws, in any thread order. A unit is on iff its uniform < its probability.
* **KH needs no sort and no dense g.** The top-(ℓ+1) currents of each sample are kept in a tiny sorted
  list (ties → lower index, as :func:`khrbm.kh.kh_ranking`); ``g xᵀ`` and ``Σ_s g⊙I`` are accumulated
  only for the ≤ (ℓ+1)·B touched postsynaptic units; the global max runs over those rows only. In TD
  mode the positive phase then adds ``X·δW`` over the changed rows to the ``XW`` the KH sample used.
* **float32 sigmoid without libm**: a Cephes-style exp (≤ 1e-7 relative error) that LLVM vectorizes;
  float64 parameters use ``np.exp``.
* **One threading runtime, no spinning.** The step calls no BLAS, so Numba's threads never fight
  OpenBLAS's. Numba's OpenMP layer is preferred (a launch costs ~2-9 µs against ~130 µs for
  "workqueue", and it is safe to launch from several threads) with ``OMP_WAIT_POLICY=PASSIVE`` so that
  idle Numba threads sleep instead of spinning while NumPy/OpenBLAS works. Both are set below before
  Numba starts its pool; explicit ``NUMBA_THREADING_LAYER``/``OMP_WAIT_POLICY`` settings win. Caveat of
  GNU OpenMP: a process that has run a step must not ``fork()`` and run steps in the child (use the
  "spawn" start method).
* **No allocation in the step**: every buffer lives in the :class:`NumbaStepper` (sized for
  ``batch_size``; a smaller last batch uses the leading rows). The only per-step allocations are the
  returned ``ranked`` array (B × (ℓ+1) ints) and, for PCD, the returned chain, which the caller owns.

Kernels are compiled with ``cache=True`` (on disk, in ``khrbm/__pycache__``); :func:`warmup` compiles
(~20 s per dtype the first time) or loads (< 1 s) every variant, and the app and the CLI call it at
start. Numba's cache only watches this file, so the cache is also dropped when ``rng.py`` (whose
``uniform_at`` is inlined here) changes (:func:`drop_stale_cache`).
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

# The threading runtime must be chosen before Numba starts its thread pool (first parallel launch).
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numba  # noqa: E402
import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, prange, types  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

from . import rng  # noqa: E402
from .rng import uniform_at  # noqa: E402
from .step import StepResult, StepSettings, numpy_step, shuffled_xi_step  # noqa: E402

__all__ = ["NumbaStepper", "NumpyStepper", "make_stepper", "warmup"]


def drop_stale_cache(stem: str, dependencies: tuple) -> None:
    """Delete the Numba cache files of module ``stem`` (in this folder's ``__pycache__``) when one of
    ``dependencies`` (file names in this folder whose jitted functions the module inlines or calls)
    changed since they were written: Numba's cache only watches the module's own source file."""
    here = Path(__file__).resolve().parent
    cache = here / "__pycache__"
    try:
        digest = hashlib.sha256(b"".join((here / d).read_bytes() for d in dependencies)).hexdigest()[:16]
        stamp = cache / f"{stem}.deps-stamp"
        if stamp.is_file() and stamp.read_text() == digest:
            return
        if cache.is_dir():
            for f in list(cache.glob(f"{stem}.*.nbi")) + list(cache.glob(f"{stem}.*.nbc")):
                f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:
        pass


drop_stale_cache("kernels", ("rng.py",))

_LOCK = threading.RLock()

_JIT = dict(cache=True, error_model="numpy", nogil=True)
_PJIT = dict(_JIT, parallel=True)

# --------------------------------------------------------------------------------------------------
# sigmoid: vectorizable float32 exp (Cephes expf polynomial, 2^n by bit construction); float64 = np.exp


@intrinsic
def _f32_from_bits(typingctx, i):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_LOG2E = np.float32(1.4426950408889634)
_LN2HI = np.float32(0.693359375)
_LN2LO = np.float32(-2.12194440e-4)
_E0 = np.float32(1.9875691500e-4)
_E1 = np.float32(1.3981999507e-3)
_E2 = np.float32(8.3334519073e-3)
_E3 = np.float32(4.1665795894e-2)
_E4 = np.float32(1.6666665459e-1)
_E5 = np.float32(5.0000001201e-1)
_XLO = np.float32(-87.3)
_XHI = np.float32(88.3)
_HALF32 = np.float32(0.5)
_ONE32 = np.float32(1.0)


@njit(inline="always")
def _exp32(x):
    x = _XLO if x < _XLO else x                       # clamp; NaN stays NaN
    x = _XHI if x > _XHI else x
    t = x * _LOG2E + _HALF32
    n = np.float32(np.int32(t))
    n = n - _ONE32 if n > t else n                     # floor
    r = x - n * _LN2HI - n * _LN2LO
    y = (((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5) * (r * r) + r + _ONE32
    return y * _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


def _sigmoid(x):  # pragma: no cover - replaced by the overload inside jitted code
    return 1.0 / (1.0 + np.exp(-x))


@overload(_sigmoid, inline="always")
def _sigmoid_ov(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            return _ONE32 / (_ONE32 + _exp32(-x))
    else:
        def impl(x):
            return 1.0 / (1.0 + np.exp(-x))
    return impl


@njit(**_JIT)
def sigmoid_array(x):
    """σ(x) elementwise with the kernels' sigmoid (float32: the vectorized polynomial exp)."""
    out = np.empty_like(x)
    xf = x.ravel()
    of = out.ravel()
    for i in range(xf.size):
        of[i] = _sigmoid(xf[i])
    return out


def _as(x, like):  # pragma: no cover - replaced by the overload inside jitted code
    return type(like)(x)


@overload(_as, inline="always")
def _as_ov(x, like):
    """``x`` converted to the float type of ``like`` (casts to the parameters' dtype inside kernels)."""
    if like == types.float32:
        return lambda x, like: np.float32(x)
    return lambda x, like: np.float64(x)


# --------------------------------------------------------------------------------------------------
# building blocks

GATHER_BLOCK = 16            # rows of S per block in _gather_rows (16 rows of 784 float32: 50 KB, ~L1)


@njit(**_PJIT)
def _transpose(A, AT):
    """AT = Aᵀ, 16 rows of A at a time (contiguous 16-element runs written per row of AT)."""
    n, m = A.shape
    T = 16
    nb = (n + T - 1) // T
    for bi in prange(nb):
        i0 = bi * T
        if i0 + T <= n:
            for j in range(m):
                row = AT[j]
                for ii in range(T):
                    row[i0 + ii] = A[i0 + ii, j]
        else:
            for j in range(m):
                for i in range(i0, n):
                    AT[j, i] = A[i, j]


@njit(**_JIT)
def _compact(row, n, ix, vx, dense):
    """Index list of the non-zero entries of row[:n] into ix (ascending; values into vx if it has
    room); with ``dense`` the zero entries follow, descending, in ix[c:n]. Returns c."""
    c = 0
    if dense:
        for i in range(n):
            ix[c] = i
            ix[n - 1 - i + c] = i
            c += row[i] != 0
    elif vx.shape[0] > 0:
        for i in range(n):
            x = row[i]
            ix[c] = i
            vx[c] = x
            c += x != 0
    else:
        for i in range(n):
            ix[c] = i
            c += row[i] != 0
    return c


@njit(**_JIT)
def _list_row(row, ix, vx):
    """Index list of one row (see :func:`_to_lists`) into ix/vx; returns (nnz, binary)."""
    n = row.shape[0]
    c = 0
    ones = 0
    for i in range(n):
        c += row[i] != 0
        ones += row[i] == 1
    binary = ones == c
    if binary:
        for i in range(c):
            vx[i] = 1
        _compact(row, n, ix, vx[:0], 2 * c > n)
    else:
        _compact(row, n, ix, vx, False)
    return c, binary


@njit(**_PJIT)
def _to_lists(X, nrows, idx, val, nnz, binary):
    """Index lists of the rows of X[:nrows]: idx[r, :nnz[r]] are the columns of the non-zero entries
    (ascending; their values in val[r, :nnz[r]]); for a binary row with more ones than zeros,
    idx[r, nnz[r]:] lists the zero columns (descending). binary[r]: every non-zero entry is 1."""
    for r in prange(nrows):
        nnz[r], binary[r] = _list_row(X[r], idx[r], val[r])


@njit(**_PJIT)
def _column_sums(S, tot):
    """tot[k] = Σ_j S[j, k] (for gathers of the complement of dense binary rows)."""
    n, K = S.shape
    nch = 4
    per = (K + nch - 1) // nch
    for ch in prange(nch):
        k0 = ch * per
        k1 = min(K, k0 + per)
        t = tot[k0:k1]
        t[:] = 0
        for j in range(n):
            sj = S[j, k0:k1]
            for k in range(k1 - k0):
                t[k] += sj[k]


@njit(**_JIT)
def _gather(out, r, idx, val, nnz, binary, S, tot, use_tot):
    """out[r] = Σ_n val[r, n] · S[idx[r, n]]: :func:`_gather_row` of row r of the index lists."""
    _gather_row(out[r], idx[r], val[r], nnz[r], binary[r], S, tot, use_tot)


@njit(**_JIT)
def _add_rows(o, ix, n, nn, S, limit):
    """o += S[ix[n]] + … over the list entries n, n + 1, … < nn, 4 rows per pass ((s0 + s1) + (s2 + s3)
    added to o), while the pass's last row ix[n + 3] < ``limit``; returns the first entry not added (the
    < 4 left at the end, or the pass that reaches ``limit``). No multiplications: for binary lists."""
    K = S.shape[1]
    while n + 4 <= nn and ix[n + 3] < limit:
        s0 = S[ix[n]]
        s1 = S[ix[n + 1]]
        s2 = S[ix[n + 2]]
        s3 = S[ix[n + 3]]
        for k in range(K):
            o[k] += (s0[k] + s1[k]) + (s2[k] + s3[k])
        n += 4
    return n


@njit(**_JIT)
def _add_rest(o, ix, n, nn, S):
    """o += S[ix[m]] for the list entries n ≤ m < nn, one by one (the tail after :func:`_add_rows`)."""
    K = S.shape[1]
    while n < nn:
        s0 = S[ix[n]]
        for k in range(K):
            o[k] += s0[k]
        n += 1


@njit(**_JIT)
def _gather_row(o, ix, vx, nn, binary, S, tot, use_tot):
    """o = Σ_n vx[n] · S[ix[n]] over the nn non-zero entries of one index list (4 rows of S per pass).
    A binary list (every vx[n] = 1) is summed without the products (the same sums: 1·s = s exactly).
    For a binary row with more ones than zeros (and ``use_tot``: tot = column sums of S) it is
    computed as tot - Σ over the zero entries ix[nn:], which costs min(ones, zeros) row additions."""
    K = S.shape[1]
    n_all = S.shape[0]
    for k in range(K):
        o[k] = 0
    if use_tot and binary and 2 * nn > n_all:
        _add_rest(o, ix, _add_rows(o, ix, nn, n_all, S, n_all), n_all, S)
        for k in range(K):
            o[k] = tot[k] - o[k]
        return
    if binary:
        _add_rest(o, ix, _add_rows(o, ix, 0, nn, S, n_all), nn, S)
        return
    n = 0
    while n + 4 <= nn:
        s0 = S[ix[n]]
        s1 = S[ix[n + 1]]
        s2 = S[ix[n + 2]]
        s3 = S[ix[n + 3]]
        v0 = vx[n]
        v1 = vx[n + 1]
        v2 = vx[n + 2]
        v3 = vx[n + 3]
        for k in range(K):
            o[k] += (v0 * s0[k] + v1 * s1[k]) + (v2 * s2[k] + v3 * s3[k])
        n += 4
    while n < nn:
        s0 = S[ix[n]]
        v0 = vx[n]
        for k in range(K):
            o[k] += v0 * s0[k]
        n += 1


@njit(**_JIT)
def _gather_rows(O, idx, val, nnz, binary, nrows, S, tot, use_tot, cur):
    """O[q] = :func:`_gather_row` of list q, for q < nrows, with the same sums in the same order; the
    binary lists gathered directly (not by their complement; ascending, as :func:`_list_row` and
    :func:`_sample_list` write them) advance together over blocks of ``GATHER_BLOCK`` rows of S, so that
    each row of S, while in L1, serves every list that has it (scratch cur[:nrows])."""
    K = S.shape[1]
    n_all = S.shape[0]
    for q in range(nrows):
        if binary[q] and not (use_tot and 2 * nnz[q] > n_all):
            cur[q] = 0
            o = O[q]
            for k in range(K):
                o[k] = 0
        else:
            cur[q] = -1
            _gather_row(O[q], idx[q], val[q], nnz[q], binary[q], S, tot, use_tot)
    for limit in range(GATHER_BLOCK, n_all + GATHER_BLOCK, GATHER_BLOCK):
        for q in range(nrows):
            if cur[q] >= 0:
                cur[q] = _add_rows(O[q], idx[q], cur[q], nnz[q], S, limit)
    for q in range(nrows):
        if cur[q] >= 0:
            _add_rest(O[q], idx[q], cur[q], nnz[q], S)


@njit(**_JIT)
def _sample_list(p, key, base, hi, mask):
    """h = u < p with u = uniform_at(key, base + j), as an index list in hi (ones ascending; if more
    than half are on, the zeros follow, descending, for the complement gathers); returns the number of
    ones. The draws go to ``mask`` first (a loop that vectorizes), then a branch-free compaction."""
    M = p.shape[0]
    cnt = 0
    for j in range(M):
        on = uniform_at(key, base + np.uint64(j)) < p[j]
        mask[j] = on
        cnt += on
    c = 0
    if 2 * cnt > M:
        for j in range(M):
            hi[c] = j
            hi[M - 1 - j + c] = j
            c += mask[j]
    else:
        for j in range(M):
            hi[c] = j
            c += mask[j]
    return c


@njit(**_JIT)
def _probs_and_sample(r, pre, b, P, key, sample, hidx, hnnz, hmask, Ph, D):
    """P[r] = σ(pre[r] + b); D[r] = Ph[r] - P[r] if Ph has rows; if ``sample``: h = u < P[r] as an
    index list (:func:`_sample_list`, scratch hmask[r]) with u = uniform_at(key, r·M + j)."""
    M = P.shape[1]
    pr = pre[r]
    p = P[r]
    for j in range(M):
        p[j] = _sigmoid(pr[j] + b[j])
    if Ph.shape[0] > 0:
        d = D[r]
        ph = Ph[r]
        for j in range(M):
            d[j] = ph[j] - p[j]
    if sample:
        hnnz[r] = _sample_list(p, key, np.uint64(r) * np.uint64(M), hidx[r], hmask[r])


@njit(**_PJIT)
def _hidden(idx, val, nnz, binary, nrows, W, tot, use_tot, b, pre, P, key, sample, hidx, hnnz, hmask, Ph, D):
    """pre = v W (row gathers), P = σ(pre + b); if ``sample``: h = u < P as index lists (hidx, hnnz)
    with u = uniform_at(key, r·M + j). If ``Ph`` has rows: D = Ph - P (the gradient's difference)."""
    for r in prange(nrows):
        _gather(pre, r, idx, val, nnz, binary, W, tot, use_tot)
        _probs_and_sample(r, pre, b, P, key, sample, hidx, hnnz, hmask, Ph, D)


@njit(**_PJIT)
def _hidden_update(idx, val, nnz, nrows, slot_of, dS, b, pre, P, key, sample, hidx, hnnz, hmask):
    """After a KH change δ of some rows of W (row i changed by dS[slot_of[i]] where slot_of[i] >= 0):
    pre += v δ (only the changed rows), then P and the sample as in :func:`_hidden`."""
    M = pre.shape[1]
    for r in prange(nrows):
        pr = pre[r]
        ix = idx[r]
        vx = val[r]
        cnt = 0                                   # changed rows wait in (q0, v0) … (q3, v3): 4 per pass
        q0 = q1 = q2 = 0
        v0 = v1 = v2 = vx[0]
        for n in range(nnz[r]):
            q = slot_of[ix[n]]
            if q < 0:
                continue
            if cnt == 0:
                q0, v0 = q, vx[n]
            elif cnt == 1:
                q1, v1 = q, vx[n]
            elif cnt == 2:
                q2, v2 = q, vx[n]
            else:
                d0, d1, d2, d3 = dS[q0], dS[q1], dS[q2], dS[q]
                v3 = vx[n]
                for j in range(M):
                    pr[j] += (v0 * d0[j] + v1 * d1[j]) + (v2 * d2[j] + v3 * d3[j])
                cnt = -1
            cnt += 1
        for t in range(cnt):
            q = q0 if t == 0 else (q1 if t == 1 else q2)
            v = v0 if t == 0 else (v1 if t == 1 else v2)
            dq = dS[q]
            for j in range(M):
                pr[j] += v * dq[j]
        _probs_and_sample(r, pre, b, P, key, sample, hidx, hnnz, hmask, P[:0], P)


@njit(**_PJIT)
def _visible(hidx, hval, hnnz, hbin, nrows, WT, tot, use_tot, a, act, key_v, key_y, n_labels, softmax,
             V, vidx, vnnz):
    """act = h Wᵀ + a (gathers of WT rows); pixels v = u < σ(act); the label block (if any) one-hot:
    argmax, or a sample of the softmax with one uniform per row (stream ``key_y``). Writes the dense
    sample V and its two-ended index lists (vidx, vnnz)."""
    N = WT.shape[1]
    npix = N - n_labels
    for r in prange(nrows):
        _gather(act, r, hidx, hval, hnnz, hbin, WT, tot, use_tot)
        ac = act[r]
        vr = V[r]
        for i in range(N):
            ac[i] += a[i]
        base = np.uint64(r) * np.uint64(N)
        for i in range(npix):
            on = uniform_at(key_v, base + np.uint64(i)) < _sigmoid(ac[i])
            vr[i] = 1.0 if on else 0.0
        if n_labels > 0:
            best = 0
            mx = np.float64(ac[npix])
            for y in range(1, n_labels):
                lg = np.float64(ac[npix + y])
                if lg > mx:
                    mx = lg
                    best = y
            if softmax:
                s = 0.0
                for y in range(n_labels):
                    s += np.exp(np.float64(ac[npix + y]) - mx)
                u = np.float64(uniform_at(key_y, np.uint64(r)))
                cdf = 0.0
                cnt = 0
                for y in range(n_labels):
                    cdf += np.exp(np.float64(ac[npix + y]) - mx) / s
                    cnt += cdf < u
                best = min(cnt, n_labels - 1)
            for y in range(n_labels):
                vr[npix + y] = 0.0
            vr[npix + best] = 1.0
        c = 0
        for i in range(N):
            c += vr[i] != 0
        _compact(vr, N, vidx[r], vr[:0], 2 * c > N)
        vnnz[r] = c


@njit(**_JIT)
def _top(I, r, K, ell1, topv, ranked):
    """The ell1 largest entries of I[r, :K] into ranked[r] (descending; ties → lower index)."""
    cnt = 0
    for k in range(K):
        v = I[r, k]
        if cnt < ell1 or v > topv[r, ell1 - 1]:
            pos = cnt if cnt < ell1 else ell1 - 1
            while pos > 0 and topv[r, pos - 1] < v:
                topv[r, pos] = topv[r, pos - 1]
                ranked[r, pos] = ranked[r, pos - 1]
                pos -= 1
            topv[r, pos] = v
            ranked[r, pos] = k
            if cnt < ell1:
                cnt += 1


@njit(**_PJIT)
def _currents_ranked(idx, val, nnz, binary, nrows, S, tot, use_tot, I, ell1, topv, ranked):
    """KH currents I[r] = Σ_n val · S[idx[r, n]] (S is the synapse matrix transposed: P × K), then
    the ℓ+1 largest of I[r] (descending, ties → lower index) into ranked[r]."""
    K = S.shape[1]
    for r in prange(nrows):
        _gather(I, r, idx, val, nnz, binary, S, tot, use_tot)
        _top(I, r, K, ell1, topv, ranked)


@njit(**dict(_JIT, fastmath={"reassoc"}))
def _sum_squares(x):
    """Σ x² in x's dtype, reassociated so that it vectorizes (a bound, not a metric: NaN and ±inf still
    propagate)."""
    s = x.dtype.type(0)
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


@njit(**_JIT)
def top_ranked(I, ell):
    """Standalone top-(ℓ+1) selection of the columns of I (K × B), as :func:`khrbm.kh.kh_ranking`."""
    K, B = I.shape
    It = np.ascontiguousarray(I.T)
    topv = np.empty((B, ell + 1), It.dtype)
    ranked = np.empty((B, ell + 1), np.int64)
    for r in range(B):
        _top(It, r, K, ell + 1, topv, ranked)
    return ranked


@njit(**_JIT)
def _kh_slots(ranked, nrows, ell1, band, delta, slot_of, units, ent_start, ent_s, ent_g, ent_tmp):
    """Group the non-zero entries of g (K × B) by postsynaptic unit. Returns the number of touched
    units; unit units[q] has entries ent_start[q]..ent_start[q+1] of (sample ent_s, value ent_g)."""
    nslot = 0
    r0 = 1 if band else ell1 - 1
    for s in range(nrows):
        for rr in range(ell1):
            if rr != 0 and rr < r0:
                continue
            k = ranked[s, rr]
            if slot_of[k] < 0:
                slot_of[k] = nslot
                units[nslot] = k
                ent_start[nslot] = 0
                nslot += 1
            ent_start[slot_of[k]] += 1
    tot = 0                                   # counting sort of the entries by slot
    for q in range(nslot):
        c = ent_start[q]
        ent_start[q] = tot
        ent_tmp[q] = tot
        tot += c
    ent_start[nslot] = tot
    for s in range(nrows):
        for rr in range(ell1):
            if rr != 0 and rr < r0:
                continue
            q = slot_of[ranked[s, rr]]
            e = ent_tmp[q]
            ent_s[e] = s
            ent_g[e] = 1.0 if rr == 0 else -delta
            ent_tmp[q] = e + 1
    return nslot


@njit(**_JIT)
def _reset_slots(nslot, units, slot_of):
    for q in range(nslot):
        slot_of[units[q]] = -1


@njit(**_PJIT)
def _kh_ds(nslot, units, ent_start, ent_s, ent_g, xidx, xval, xnnz, I, S, Rp, ds, rowmax):
    """ds[q] = R^p Σ_s g x[s] - (Σ_s g I[s, k]) S[k] for touched unit k = units[q] (float64)."""
    P = S.shape[1]
    for q in prange(nslot):
        k = units[q]
        d = ds[q]
        for p in range(P):
            d[p] = 0.0
        c = 0.0
        for e in range(ent_start[q], ent_start[q + 1]):
            s = ent_s[e]
            g = ent_g[e]
            c += g * np.float64(I[s, k])
            for n in range(xnnz[s]):
                d[xidx[s, n]] += g * np.float64(xval[s, n])
        m = 0.0
        sk = S[k]
        for p in range(P):
            v = Rp * d[p] - c * np.float64(sk[p])
            d[p] = v
            m = max(m, abs(v))
        rowmax[q] = m


@njit(**_PJIT)
def _kh_apply(nslot, units, ds, rowmax, eps, S, ST, dS):
    """δ = ε ds / max(|ds|) (global max over the touched rows, floored at 1e-50), cast to the dtype
    into dS; S[k] += δ and, to keep the transposed copy in sync, ST[:, k] += δ."""
    mx = 1e-50
    for q in range(nslot):
        mx = max(mx, rowmax[q])
    P = S.shape[1]
    for q in prange(nslot):
        sk = S[units[q]]
        d = ds[q]
        dq = dS[q]
        for p in range(P):
            dv = _as(eps * d[p] / mx, sk[p])
            dq[p] = dv
            sk[p] += dv
    nch = 16
    per = (P + nch - 1) // nch
    for ch in prange(nch):
        for p in range(ch * per, min(P, (ch + 1) * per)):
            row = ST[p]
            for q in range(nslot):
                row[units[q]] += dS[q, p]


@njit(**_PJIT)
def _signed_power(A, e, out):
    """out = sign(A)·|A|^e."""
    n, m = A.shape
    for i in prange(n):
        for j in range(m):
            x = A[i, j]
            y = abs(x) ** e
            out[i, j] = y if x > 0 else (-y if x < 0 else 0.0)


@njit(**_PJIT)
def _grad_lists(xidx, xval, xnnz, vidx, vnnz, nrows, cx, cxv, nx, cv, nv, cd, nd):
    """Per-pixel lists of batch rows for the gradient scatter, merged from the (ascending) row lists
    of the data X and of the chain end V: cx/cxv (on in X only, with X's value), cv (on in V only),
    cd (on in both, X = 1). Pixel ranges in parallel; within a range a branch-free merge: every step
    writes all three lists and advances the counters that apply."""
    N = nx.shape[0]
    nch = 4
    per = (N + nch - 1) // nch
    for ch in prange(nch):
        i0 = ch * per
        i1 = min(N, i0 + per)
        for i in range(i0, i1):
            nx[i] = 0
            nv[i] = 0
            nd[i] = 0
        for r in range(nrows):
            xi = xidx[r, :xnnz[r]]
            vi = vidx[r, :vnnz[r]]
            xv = xval[r]
            na = xi.shape[0]
            nb = vi.shape[0]
            a = np.searchsorted(xi, i0)
            b = np.searchsorted(vi, i0)
            while True:
                ia = xi[a] if a < na else N
                ib = vi[b] if b < nb else N
                i = min(ia, ib)
                if i >= i1:
                    break
                x = xv[a] if a < na else xv[0]
                both = ia == ib and x == 1
                ta = ia == i
                tb = ib == i
                xo = ta and not both
                vo = tb and not both
                p = nx[i]
                cx[i, p] = r
                cxv[i, p] = x
                nx[i] = p + xo
                q = nv[i]
                cv[i, q] = r
                nv[i] = q + vo
                d = nd[i]
                cd[i, d] = r
                nd[i] = d + both
                a += ta
                b += tb


@njit(**_JIT)
def _accumulate(acc, lst, cnt, i, R, neg):
    """acc ±= Σ_n R[lst[i, n]] (4 rows per pass)."""
    M = acc.shape[0]
    nn = cnt[i]
    n = 0
    while n + 4 <= nn:
        r0 = R[lst[i, n]]
        r1 = R[lst[i, n + 1]]
        r2 = R[lst[i, n + 2]]
        r3 = R[lst[i, n + 3]]
        if neg:
            for j in range(M):
                acc[j] -= (r0[j] + r1[j]) + (r2[j] + r3[j])
        else:
            for j in range(M):
                acc[j] += (r0[j] + r1[j]) + (r2[j] + r3[j])
        n += 4
    while n < nn:
        r0 = R[lst[i, n]]
        if neg:
            for j in range(M):
                acc[j] -= r0[j]
        else:
            for j in range(M):
                acc[j] += r0[j]
        n += 1


@njit(**_JIT)
def _accumulate_scaled(acc, lst, vals, cnt, i, R):
    """acc += Σ_n vals[i, n] · R[lst[i, n]] (4 rows per pass)."""
    M = acc.shape[0]
    nn = cnt[i]
    n = 0
    while n + 4 <= nn:
        r0 = R[lst[i, n]]
        r1 = R[lst[i, n + 1]]
        r2 = R[lst[i, n + 2]]
        r3 = R[lst[i, n + 3]]
        v0 = vals[i, n]
        v1 = vals[i, n + 1]
        v2 = vals[i, n + 2]
        v3 = vals[i, n + 3]
        for j in range(M):
            acc[j] += (v0 * r0[j] + v1 * r1[j]) + (v2 * r2[j] + v3 * r3[j])
        n += 4
    while n < nn:
        r0 = R[lst[i, n]]
        v0 = vals[i, n]
        for j in range(M):
            acc[j] += v0 * r0[j]
        n += 1


@njit(**_PJIT)
def _apply_gradient(nrows, cx, cxv, nx, cv, nv, cd, nd, Ph, Qh, D, W, a, b, lr, acc, ssq):
    """θ ← θ - η∇L with ∇_W L = -(XᵀPh - VᵀQh)/B, ∇_a L = -mean(X - V), ∇_b L = -mean(Ph - Qh);
    V is the (binary) end of the chain and D = Ph - Qh. Row i of XᵀPh - VᵀQh is the sum of D over the
    batch rows where pixel i is on in both, + x·Ph where only in X, - Qh where only in V. One pass per
    W row; rows are split in chunks with one accumulator each (acc: chunk × M). On the way, Σθ² of the new
    values of each chunk into ssq (W and a, then b): ‖θ‖ bounds max |θ| for the divergence check without
    a pass of its own (NaN and ±inf propagate into it)."""
    N, M = W.shape
    nch = acc.shape[0]
    Bf = _as(nrows, W[0, 0])
    per = (N + nch - 1) // nch
    for ch in prange(nch):
        ac = acc[ch]
        sq = 0.0
        for i in range(ch * per, min(N, (ch + 1) * per)):
            for j in range(M):
                ac[j] = 0
            _accumulate(ac, cd, nd, i, D, False)
            sa = _as(0, W[0, 0])
            for n in range(nx[i]):
                sa += cxv[i, n]
            _accumulate_scaled(ac, cx, cxv, nx, i, Ph)
            _accumulate(ac, cv, nv, i, Qh, True)
            sa -= nv[i]
            wi = W[i]
            for j in range(M):
                wi[j] -= lr * (-ac[j] / Bf)
            a[i] -= lr * (-sa / Bf)
            sq += np.float64(_sum_squares(wi)) + np.float64(a[i]) * np.float64(a[i])
        ssq[ch] = sq
    per_m = (M + nch - 1) // nch
    for ch in prange(nch):
        sq = 0.0
        for j in range(ch * per_m, min(M, (ch + 1) * per_m)):
            s = _as(0, W[0, 0])
            for r in range(nrows):
                s += D[r, j]
            b[j] -= lr * (-s / Bf)
            sq += np.float64(b[j]) * np.float64(b[j])
        ssq[nch + ch] = sq


# --------------------------------------------------------------------------------------------------
# the stepper


def _key(k: int) -> np.uint64:
    return np.uint64(int(k) & 0xFFFFFFFFFFFFFFFF)


class NumbaStepper:
    """The whole training step in Numba kernels, with every buffer preallocated.

    ``step(params, X, st, key, chain=None) -> StepResult`` has exactly the contract of
    :func:`khrbm.step.numpy_step`: it updates ``params.W/a/b`` in place (KH change first when
    ``st.kh_active``, then CD-k or PCD-k from the modulated W), draws the same uniforms (same streams,
    same indices), and returns ``StepResult(chain, ranked)``. ``ranked`` is a fresh B × (ℓ+1) int64
    array (winner first) or None; for PCD ``chain`` is a fresh array of X's shape and W's dtype that
    the caller owns and may keep (CD: None). ``X`` (and the PCD chain) may be uint8, bool or float, with
    1..``batch_size`` rows; ``params`` must have this stepper's shapes and dtype, C-contiguous.
    ``st.shuffle_xi`` (the shuffled control) is delegated to :func:`khrbm.step.shuffled_xi_step`.
    Steps are serialised by a module lock, so several threads may share the kernels. After a step,
    ``params_norm`` is ‖θ‖₂ of the new parameters (NaN or inf if one is; None after a delegated step),
    summed while updating them: it bounds max |θ|, so the trainer's divergence check needs no pass over W
    of its own unless the bound is large.
    """

    def __init__(self, n_visible: int, n_hidden: int, batch_size: int, dtype=np.float32):
        self.n_visible, self.n_hidden, self.batch_size = int(n_visible), int(n_hidden), int(batch_size)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        N, M, B, dt = self.n_visible, self.n_hidden, self.batch_size, self.dtype
        K = max(N, M)
        i32, e = np.int32, np.empty
        self.WT = e((M, N), dt)
        self.totW = e(M, dt)                  # column sums of W (complement gathers), per step
        self.totWT = e(N, dt)                 # column sums of WT = row sums of W
        self.totS = e(K, dt)                  # column sums of the KH current matrix
        # index lists: the data (x), the PCD chain start (c), hidden and visible samples (h, v)
        self.xidx, self.xval, self.xnnz, self.xbin = e((B, N), i32), e((B, N), dt), e(B, i32), e(B, np.bool_)
        self.cidx, self.cval, self.cnnz, self.cbin = e((B, N), i32), e((B, N), dt), e(B, i32), e(B, np.bool_)
        self.hidx, self.hnnz, self.hmask = e((B, M), i32), e(B, i32), e((B, M), np.uint8)
        self.hval = np.ones((B, M), dt)
        self.vidx, self.vnnz = e((B, N), i32), e(B, i32)
        self.vval = np.ones((B, N), dt)
        self.ones = np.ones(B, np.bool_)
        self.V = e((B, N), dt)
        self.pre = e((B, M), dt)
        self.Ph = e((B, M), dt)
        self.Pc = e((B, M), dt)               # hidden probabilities along the chain (scratch)
        self.Qh = e((B, M), dt)
        self.D = e((B, M), dt)                # Ph - Qh
        self.none = e((0, M), dt)
        self.act = e((B, N), dt)
        # gradient scatter: per-pixel lists (X only, V only, both) and per-chunk accumulators
        self.cx, self.cxv, self.nx = e((N, B), i32), e((N, B), dt), e(N, i32)
        self.cv, self.nv = e((N, B), i32), e(N, i32)
        self.cd, self.nd = e((N, B), i32), e(N, i32)
        self.n_chunks = max(2 * numba.get_num_threads(), 2)
        self.acc = e((self.n_chunks, M), dt)
        self.ssq = e(2 * self.n_chunks)       # Σθ² per chunk of the last update
        self.params_norm = None               # ‖θ‖₂ after the last step (NaN/inf: a NaN/inf), None if unknown
        # KH
        self.I = e((B, K), dt)
        self.slot_of = np.full(K, -1, np.int64)
        self._kh_ell = -1
        self.Sp = None

    def _kh_buffers(self, ell: int):
        """KH buffers depend on ℓ: (re)sized only when ℓ changes."""
        if ell != self._kh_ell:
            B, K = self.batch_size, max(self.n_visible, self.n_hidden)
            L = ell + 1
            ns = min(B * L, K)
            self.topv = np.empty((B, L), self.dtype)
            self.ranked = np.empty((B, L), np.int64)
            self.units = np.empty(ns, np.int64)
            self.ent_start = np.empty(ns + 1, np.int64)
            self.ent_tmp = np.empty(ns + 1, np.int64)
            self.ent_s = np.empty(B * L, np.int64)
            self.ent_g = np.empty(B * L, np.float64)
            self.ds = np.empty((ns, K), np.float64)
            self.dS = np.empty((ns, K), self.dtype)
            self.rowmax = np.empty(ns, np.float64)
            self._kh_ell = ell

    def _check(self, params, X, chain):
        W = params.W
        if W.shape != (self.n_visible, self.n_hidden) or W.dtype != self.dtype:
            raise ValueError(f"stepper is for W {self.n_visible}×{self.n_hidden} {self.dtype}, "
                             f"got {W.shape} {W.dtype}")
        for name, arr, n in (("W", W, W.size), ("a", params.a, self.n_visible), ("b", params.b, self.n_hidden)):
            if not arr.flags.c_contiguous or arr.dtype != self.dtype or arr.size != n:
                raise ValueError(f"params.{name} must be a C-contiguous {self.dtype} array of {n} values")
        if X.ndim != 2 or X.shape[1] != self.n_visible or not 1 <= len(X) <= self.batch_size:
            raise ValueError(f"X must have 1..{self.batch_size} rows of {self.n_visible}, got {X.shape}")
        if chain is not None and chain.shape != X.shape:
            raise ValueError(f"the persistent chain must have X's shape {X.shape}, got {chain.shape}")

    def _check_settings(self, st: StepSettings):
        if int(st.k) < 1:
            raise ValueError(f"k must be at least 1, got {st.k}")
        if not 0 <= int(st.n_labels) < self.n_visible:
            raise ValueError(f"n_labels must be in [0, {self.n_visible}), got {st.n_labels}")

    @staticmethod
    def _input(A):
        A = np.ascontiguousarray(A)
        return A.view(np.uint8) if A.dtype == np.bool_ else A

    @staticmethod
    def _dense(nnz, nr, n) -> bool:
        """Do the complement gathers pay for the column sums they need? A row with c of n units on
        costs min(c, n - c) row additions; the column sums cost n."""
        return int(np.maximum(2 * nnz[:nr] - n, 0).sum()) > n

    def step(self, params, X, st: StepSettings, key: int, chain=None) -> StepResult:
        self.params_norm = None
        if st.kh_active and st.shuffle_xi:
            return shuffled_xi_step(params, X, st, key, chain)
        X = self._input(X)
        if st.persistent:
            if chain is None:
                raise ValueError("PCD needs the persistent chain")
            chain = self._input(chain)
        self._check(params, X, chain if st.persistent else None)
        self._check_settings(st)
        with _LOCK:
            return self._step(params, X, st, key, chain)

    def _step(self, params, X, st: StepSettings, key: int, chain) -> StepResult:
        W, a, b = params.W, params.a, params.b
        N, M = self.n_visible, self.n_hidden
        nr = len(X)
        none = self.none
        _transpose(W, self.WT)
        _to_lists(X, nr, self.xidx, self.xval, self.xnnz, self.xbin)
        x_dense = self._dense(self.xnnz, nr, N)
        self._totW_ok = self._totWT_ok = False
        h_key = _key(rng.stream(key, rng.GIBBS_HIDDEN))
        cd_start = not st.persistent
        ranked = None
        updated = False
        if st.kh_active:
            ranked, updated = self._kh(params, st, key, nr, x_dense, cd_start, h_key)
        # positive phase (and, for CD, the first hidden sample: the chain starts at X)
        if not updated:
            _hidden(self.xidx, self.xval, self.xnnz, self.xbin, nr, W, self._totW(W, x_dense), x_dense, b,
                    self.pre, self.Ph, h_key, cd_start, self.hidx, self.hnnz, self.hmask, none, none)
        if st.persistent:
            _to_lists(chain, nr, self.cidx, self.cval, self.cnnz, self.cbin)
            c_dense = self._dense(self.cnnz, nr, N)
            _hidden(self.cidx, self.cval, self.cnnz, self.cbin, nr, W, self._totW(W, c_dense), c_dense, b,
                    self.pre, self.Pc, h_key, True, self.hidx, self.hnnz, self.hmask, none, none)
        k = int(st.k)
        out = np.empty((nr, N), self.dtype) if st.persistent else None
        softmax = st.label_sampling != "argmax"         # as rbm.sample_visible
        for t in range(k):
            if t > 0:
                v_dense = self._dense(self.vnnz, nr, N)
                _hidden(self.vidx, self.vval, self.vnnz, self.ones, nr, W, self._totW(W, v_dense), v_dense, b,
                        self.pre, self.Pc, _key(rng.stream(key, rng.GIBBS_HIDDEN + 2 * t)), True,
                        self.hidx, self.hnnz, self.hmask, none, none)
            h_dense = self._dense(self.hnnz, nr, M)
            y_key = _key(rng.stream(key, rng.GIBBS_LABEL + t)) if st.n_labels else np.uint64(0)
            _visible(self.hidx, self.hval, self.hnnz, self.ones, nr, self.WT, self._totWT(h_dense), h_dense,
                     a, self.act, _key(rng.stream(key, rng.GIBBS_VISIBLE + 2 * t)), y_key, int(st.n_labels),
                     softmax, out if (out is not None and t == k - 1) else self.V, self.vidx, self.vnnz)
        v_dense = self._dense(self.vnnz, nr, N)
        _hidden(self.vidx, self.vval, self.vnnz, self.ones, nr, W, self._totW(W, v_dense), v_dense, b,
                self.pre, self.Qh, np.uint64(0), False, self.hidx, self.hnnz, self.hmask, self.Ph, self.D)
        _grad_lists(self.xidx, self.xval, self.xnnz, self.vidx, self.vnnz, nr,
                    self.cx, self.cxv, self.nx, self.cv, self.nv, self.cd, self.nd)
        _apply_gradient(nr, self.cx, self.cxv, self.nx, self.cv, self.nv, self.cd, self.nd,
                        self.Ph, self.Qh, self.D, W, a, b, self.dtype.type(st.lr), self.acc, self.ssq)
        self.params_norm = float(np.sqrt(self.ssq.sum()))
        return StepResult(out, ranked)

    def _totW(self, W, needed):
        if needed and not self._totW_ok:
            _column_sums(W, self.totW)
            self._totW_ok = True
        return self.totW

    def _totWT(self, needed):
        if needed and not self._totWT_ok:
            _column_sums(self.WT, self.totWT)
            self._totWT_ok = True
        return self.totWT

    def _kh(self, params, st: StepSettings, key: int, nr: int, x_dense: bool, cd_start: bool, h_key):
        """The KH change of W (Eqs. 6–8), in place on W and WT. Returns (ranked, updated): ``updated``
        says that the positive phase (pre, Ph and, for CD, the first hidden sample) is already done."""
        W, b = params.W, params.b
        N, M = self.n_visible, self.n_hidden
        td = st.kh_mode == "td"
        if st.kh_mode not in ("td", "bu"):
            raise ValueError(f"unknown KH mode {st.kh_mode!r}")
        K = N if td else M
        ell = int(st.ell)
        if not 1 <= ell < K:
            raise ValueError(f"ℓ must be in [1, {K - 1}] for {K} postsynaptic units, got {ell}")
        self._kh_buffers(ell)
        L = ell + 1
        p = float(st.p)
        S, ST = (W, self.WT) if td else (self.WT, W)     # synapses S (K × P) and Sᵀ, both row-major
        if p != 2.0:
            if self.Sp is None:
                self.Sp = np.empty(N * M, self.dtype)
            G = self.Sp.reshape(ST.shape)
            _signed_power(ST, p - 1.0, G)                 # the currents gather rows of sign(Sᵀ)|Sᵀ|^(p-1)
        else:
            G = ST
        if td:
            # x = h ~ Bern(σ(XW+b)) (stream KH_HIDDEN); currents I[s] = h[s] Sᵀ: gathers of rows of G
            _hidden(self.xidx, self.xval, self.xnnz, self.xbin, nr, W, self._totW(W, x_dense), x_dense, b,
                    self.pre, self.Pc, _key(rng.stream(key, rng.KH_HIDDEN)), True, self.hidx, self.hnnz,
                    self.hmask, self.none, self.none)
            xidx, xval, xnnz, xbin = self.hidx, self.hval, self.hnnz, self.ones
        else:
            xidx, xval, xnnz, xbin = self.xidx, self.xval, self.xnnz, self.xbin
        g_dense = self._dense(xnnz, nr, G.shape[0])
        if g_dense:
            _column_sums(G, self.totS)
        _currents_ranked(xidx, xval, xnnz, xbin, nr, G, self.totS, g_dense, self.I, L, self.topv, self.ranked)
        nslot = _kh_slots(self.ranked, nr, L, bool(st.ell_band), float(st.delta), self.slot_of, self.units,
                          self.ent_start, self.ent_s, self.ent_g, self.ent_tmp)
        _kh_ds(nslot, self.units, self.ent_start, self.ent_s, self.ent_g, xidx, xval, xnnz, self.I, S,
               float(st.radius) ** p, self.ds, self.rowmax)
        _kh_apply(nslot, self.units, self.ds, self.rowmax, float(st.eps), S, ST, self.dS)
        self._totW_ok = self._totWT_ok = False
        if td:
            # W changed only in the rows of the touched pixels: update XW instead of recomputing it
            _hidden_update(self.xidx, self.xval, self.xnnz, nr, self.slot_of, self.dS, b, self.pre, self.Ph,
                           h_key, cd_start, self.hidx, self.hnnz, self.hmask)
        _reset_slots(nslot, self.units, self.slot_of)
        return self.ranked[:nr].copy(), td

    def warmup(self):
        """Compile (or load from the on-disk cache) every kernel variant for this stepper's dtype."""
        warmup((self.dtype,))


class NumpyStepper:
    """The NumPy reference behind the same interface (``backend="numpy"``)."""

    def __init__(self, n_visible: int, n_hidden: int, batch_size: int, dtype=np.float32):
        self.n_visible, self.n_hidden, self.batch_size = int(n_visible), int(n_hidden), int(batch_size)
        self.dtype = np.dtype(dtype)

    def step(self, params, X, st: StepSettings, key: int, chain=None) -> StepResult:
        return numpy_step(params, X, st, key, chain)

    def warmup(self):
        pass


def make_stepper(backend: str, n_visible: int, n_hidden: int, batch_size: int, dtype=np.float32):
    """A stepper for ``backend`` "numba" (:class:`NumbaStepper`), "numpy" (:class:`NumpyStepper`) or
    "cuda" (:class:`khrbm.core.cuda_stepper.CudaStepper`; ConfigError in one line without a GPU)."""
    if backend == "numba":
        return NumbaStepper(n_visible, n_hidden, batch_size, dtype)
    if backend == "numpy":
        return NumpyStepper(n_visible, n_hidden, batch_size, dtype)
    if backend == "cuda":
        from .cuda_stepper import CudaStepper     # imports numba.cuda only for this backend
        return CudaStepper(n_visible, n_hidden, batch_size, dtype)
    raise ValueError(f"unknown backend {backend!r}: expected 'numba', 'numpy' or 'cuda'")


_WARM: set = set()


def warmup(dtypes=(np.float32, np.float64)):
    """Compile (first run in this environment) or load from the disk cache every kernel variant, on
    tiny arrays: each dtype with uint8 and float inputs, sparse and dense rows, CD-k and PCD-k, KH td/bu
    with p = 2 and p ≠ 2, the cRBM label block; and the evaluation kernels (:mod:`khrbm.core.eval_kernels`).
    The app and the CLI call it at start."""
    from . import eval_kernels
    from .rbm import Params

    with _LOCK:
        for dt in dtypes:
            dt = np.dtype(dt)
            if dt in _WARM:
                continue
            N, M, B = 12, 5, 4
            r = np.random.default_rng(0)
            stepper = NumbaStepper(N, M, B, dt)
            params = Params((r.standard_normal((N, M)) * 0.1).astype(dt), np.zeros(N, dt), np.zeros(M, dt))
            for density in (0.3, 0.8):
                Xu = (r.random((B, N)) < density).astype(np.uint8)
                for X in (Xu, Xu.astype(dt)):
                    stepper.step(params, X, StepSettings(k=2), 1)
                    stepper.step(params, X, StepSettings(k=2, persistent=True), 2, X.astype(dt))
                    for mode in ("td", "bu"):
                        for p in (2.0, 3.0):
                            stepper.step(params, X, StepSettings(kh_mode=mode, eps=0.01, p=p), 3)
                    stepper.step(params, X, StepSettings(n_labels=3, label_sampling="softmax"), 4)
            top_ranked(r.standard_normal((6, 3)).astype(dt), 1)
            eval_kernels.warmup((dt,))
            _WARM.add(dt)
