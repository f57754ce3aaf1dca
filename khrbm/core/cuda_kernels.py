"""The CUDA kernels of the GPU step (Numba's CUDA target), batched over R runs of one shape.

Every kernel covers all R runs at once (``blockIdx.z`` is the run) and reads the run's live settings
from two small device arrays (``ist``: integers, ``fst``: floats; columns below), so runs with different
ε, Δ, ℓ, KH mode, k, η, R, p step in lockstep in one set of launches. Arrays are per run:
``W`` (R, N, M), ``a`` (R, N), ``b`` (R, M), and row-major batches ``X``/``V`` (R, B, N),
``H``/``Ph``/``Qh`` (R, B, M); only the first ``nr`` rows of a batch are used (partial batches).

How the products are done: one thread per output element, looping over the reduction dimension and
skipping zero inputs. Data, visible and hidden samples are binary and sparse (13 % of MNIST pixels are
on), and the skip is uniform across a warp (its threads share the input row), so a product costs about
the density times a dense one; reads of W are coalesced along its rows (``XW``, the gradient) or reuse
L1 lines along a row (``HWᵀ``). Random numbers are :mod:`khrbm.core.rng`'s counter-based streams,
computed on the device: the uniform of element (s, c) of purpose P is ``uniform(stream(key, P), s·ncols + c)``,
exactly what the NumPy reference draws, so each unit is on iff its uniform < its probability, as there.

Kernels are built per (dtype, block shape) by :func:`kernels_for` so that float32 parameters keep float32
arithmetic; the KH change ``ds`` and the label softmax are float64 as in the reference (Eqs. 6-8).
The same code runs on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where the tests check it.
"""
from __future__ import annotations

import math
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
from numba import cuda

from . import rng

# columns of the per-run integer settings ``ist`` (R, N_INT): the device step of the run on, Gibbs steps k,
# KH mode, ℓ, band, PCD, softmax label sampling
ON, K_GIBBS, MODE, ELL, BAND, PERSISTENT, SOFTMAX = range(7)
N_INT = 7
# columns of the per-run float settings ``fst`` (R, N_FLOAT): η, ε, Δ, R^p, p
LR, EPS, DELTA, RADIUS_P, POWER = range(5)
N_FLOAT = 5
# KH modes in ``ist[:, MODE]`` (OFF also when ε = 0: the run's KH step is inactive)
OFF, TD, BU = 0, 1, 2
# what a launch of the hidden kernel computes (the ``which`` argument)
H_KH, H_POSITIVE, H_CHAIN, H_GIBBS, H_NEGATIVE = range(5)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_TWO_M24 = np.float32(2.0**-24)


@cuda.jit(device=True)
def mix64(z):
    """SplitMix64's finaliser of z + golden (``rng._mix``), on uint64."""
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@cuda.jit(device=True)
def sub_stream(key, purpose):
    """``rng.stream(key, purpose)`` for a stream key and an integer purpose id."""
    return mix64(mix64(key) ^ np.uint64(purpose))


@cuda.jit(device=True)
def uniform(key, index):
    """``rng.uniform_at(key, index)``: an exact float32 in [0, 1)."""
    z = mix64(key + _GOLDEN * np.uint64(index))
    return np.float32(z >> _S40) * _TWO_M24


@cuda.jit
def uniforms_kernel(keys, out):
    """out[r, i] = uniform(keys[r], i) (for tests: equal to ``rng.uniforms`` bit for bit)."""
    i = cuda.grid(1)
    r = cuda.blockIdx.y
    if i < out.shape[1]:
        out[r, i] = uniform(keys[r], i)


@cuda.jit
def stream_kernel(keys, purposes, out):
    """out[r, q] = rng.stream(keys[r], purposes[q]) (for tests)."""
    q = cuda.grid(1)
    r = cuda.blockIdx.y
    if q < out.shape[1]:
        out[r, q] = sub_stream(keys[r], purposes[q])


@lru_cache(maxsize=None)
def kernels_for(dtype_name: str, tx: int, ty: int) -> SimpleNamespace:
    """The step's kernels for parameters of ``dtype_name`` ("float32"/"float64"), launched with
    (tx, ty) thread blocks (tx along the contiguous output dimension; tx·ty a power of two)."""
    fl = np.float32 if dtype_name == "float32" else np.float64
    zero, one = fl(0.0), fl(1.0)
    exp_limit = fl(88.72283) if fl is np.float32 else fl(709.78)  # e^-x overflows past it: σ(x) = 0 (as NumPy)
    nthreads = tx * ty

    @cuda.jit(device=True)
    def sigmoid(x):
        if x < -exp_limit:
            return zero
        return one / (one + fl(math.exp(-x)))

    @cuda.jit(device=True)
    def synapse(w, p):
        """w, or sign(w)·|w|^(p-1) for the KH currents with p ≠ 2 (Eq. 5)."""
        if p == 2.0:
            return w
        y = fl(abs(w) ** (p - 1.0))
        if w > zero:
            return y
        if w < zero:
            return -y
        return zero

    @cuda.jit(device=True)
    def dot_vw(V, W, r, s, j, p):
        """Σ_i V[r, s, i] · synapse(W[r, i, j], p) over the non-zero V (a column of V W)."""
        acc = zero
        for i in range(W.shape[1]):
            x = V[r, s, i]
            if x != zero:
                acc += x * synapse(W[r, i, j], p)
        return acc

    @cuda.jit(device=True)
    def dot_hwt(H, W, r, s, i, p):
        """Σ_j H[r, s, j] · synapse(W[r, i, j], p) over the non-zero H (a column of H Wᵀ)."""
        acc = zero
        for j in range(W.shape[2]):
            h = H[r, s, j]
            if h != zero:
                acc += h * synapse(W[r, i, j], p)
        return acc

    @cuda.jit
    def gather(data, rows, nr, X):
        """X[r, s] = data[rows[r, s]] (a minibatch per run from the dataset on the device)."""
        i = cuda.blockIdx.x * tx + cuda.threadIdx.x
        s = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        if i < X.shape[2] and s < nr:
            X[r, s, i] = data[rows[r, s], i]

    @cuda.jit
    def tile_rows(V, length, nr):
        """V[r, s] = V[r, s mod length] for length <= s < nr (a PCD chain grown to a larger batch)."""
        i = cuda.blockIdx.x * tx + cuda.threadIdx.x
        s = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        if i < V.shape[2] and length <= s < nr:
            V[r, s, i] = V[r, s % length, i]

    @cuda.jit
    def hidden(src, W, b, keys, ist, which, t, nr, P, H):
        """P = σ(src W + b) (Eq. 2) for batch rows < nr, and h = u < P, per ``which``:
        H_KH: TD runs, h from stream KH_HIDDEN into H (the KH presynaptic sample);
        H_POSITIVE: P into ``P`` (Ph), and for CD runs h (stream GIBBS_HIDDEN) into H;
        H_CHAIN: PCD runs, h of their chain (stream GIBBS_HIDDEN) into H;
        H_GIBBS: runs with t < k, h of Gibbs step t (stream GIBBS_HIDDEN + 2t) into H;
        H_NEGATIVE: P into ``P`` (Qh)."""
        j = cuda.blockIdx.x * tx + cuda.threadIdx.x
        s = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        M = W.shape[2]
        if j >= M or s >= nr or ist[r, ON] == 0:
            return
        purpose = rng.GIBBS_HIDDEN
        store = False
        sample = True
        if which == H_KH:
            if ist[r, MODE] != TD:
                return
            purpose = rng.KH_HIDDEN
        elif which == H_POSITIVE:
            store = True
            sample = ist[r, PERSISTENT] == 0
        elif which == H_CHAIN:
            if ist[r, PERSISTENT] == 0:
                return
        elif which == H_GIBBS:
            if t >= ist[r, K_GIBBS]:
                return
            purpose = rng.GIBBS_HIDDEN + 2 * t
        else:
            store = True
            sample = False
        prob = sigmoid(dot_vw(src, W, r, s, j, 2.0) + b[r, j])
        if store:
            P[r, s, j] = prob
        if sample:
            u = uniform(sub_stream(keys[r], purpose), np.uint64(s) * np.uint64(M) + np.uint64(j))
            H[r, s, j] = one if u < prob else zero

    @cuda.jit
    def visible(H, W, a, keys, ist, t, nr, npix, V, Lact):
        """Gibbs step t of runs with t < k: act = h Wᵀ + a; pixels v = u < σ(act) (stream
        GIBBS_VISIBLE + 2t, index s·N + i); the label block's activations go to Lact."""
        i = cuda.blockIdx.x * tx + cuda.threadIdx.x
        s = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        N = W.shape[1]
        if i >= N or s >= nr or ist[r, ON] == 0 or t >= ist[r, K_GIBBS]:
            return
        act = dot_hwt(H, W, r, s, i, 2.0) + a[r, i]
        if i < npix:
            u = uniform(sub_stream(keys[r], rng.GIBBS_VISIBLE + 2 * t), np.uint64(s) * np.uint64(N) + np.uint64(i))
            V[r, s, i] = one if u < sigmoid(act) else zero
        else:
            Lact[r, s, i - npix] = act

    @cuda.jit
    def labels(Lact, keys, ist, t, nr, npix, V):
        """The cRBM's label block at Gibbs step t: one-hot of the argmax of its activations, or of a
        sample of their softmax with the uniform of row s in stream GIBBS_LABEL + t (as rbm.sample_visible)."""
        s = cuda.blockIdx.x * tx + cuda.threadIdx.x
        r = cuda.blockIdx.z
        C = Lact.shape[2]
        if s >= nr or ist[r, ON] == 0 or t >= ist[r, K_GIBBS]:
            return
        mx = np.float64(Lact[r, s, 0])
        best = 0
        for y in range(1, C):
            lg = np.float64(Lact[r, s, y])
            if lg > mx:
                mx = lg
                best = y
        if ist[r, SOFTMAX] != 0:
            tot = 0.0
            for y in range(C):
                tot += math.exp(np.float64(Lact[r, s, y]) - mx)
            u = np.float64(uniform(sub_stream(keys[r], rng.GIBBS_LABEL + t), s))
            cdf = 0.0
            cnt = 0
            for y in range(C):
                cdf += math.exp(np.float64(Lact[r, s, y]) - mx) / tot
                if cdf < u:
                    cnt += 1
            best = min(cnt, C - 1)
        for y in range(C):
            V[r, s, npix + y] = zero
        V[r, s, npix + best] = one

    @cuda.jit
    def currents(X, H, W, ist, fst, nr, I):
        """KH currents (Eq. 5) of KH runs: TD I[s, i] = Σ_j h[s, j] W'[i, j] (K = N visible units);
        BU I[s, j] = Σ_i X[s, i] W'[i, j] (K = M hidden units); W' = sign(W)|W|^(p-1)."""
        k = cuda.blockIdx.x * tx + cuda.threadIdx.x
        s = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        if s >= nr or ist[r, ON] == 0:
            return
        mode = ist[r, MODE]
        if mode == TD and k < W.shape[1]:
            I[r, s, k] = dot_hwt(H, W, r, s, k, fst[r, POWER])
        elif mode == BU and k < W.shape[2]:
            I[r, s, k] = dot_vw(X, W, r, s, k, fst[r, POWER])

    @cuda.jit
    def rank(I, ist, fst, nr, N, M, ranked, G, dsmax):
        """Per sample: the ℓ+1 largest currents, best first, ties to the lower index (as kh.kh_ranking),
        into ranked[r, s, :ℓ+1]; column s of g (Eq. 8) into G[r, s, :K]: +1 for the winner, -Δ for the
        unit ranked ℓ below it (with the band: for every unit ranked 1..ℓ below it). Resets dsmax[r]."""
        s = cuda.blockIdx.x * tx + cuda.threadIdx.x
        r = cuda.blockIdx.z
        mode = ist[r, MODE]
        if s >= nr or ist[r, ON] == 0 or mode == OFF:
            return
        K = N if mode == TD else M
        L = ist[r, ELL] + 1
        if s == 0:
            dsmax[r] = 0.0
        for k in range(K):
            G[r, s, k] = 0.0
        prev_v = I[r, s, 0]
        prev_k = -1
        for q in range(L):             # the next unit in the order (current descending, index ascending)
            best_v = I[r, s, 0]
            best_k = -1
            for k in range(K):
                v = I[r, s, k]
                after = q == 0 or v < prev_v or (v == prev_v and k > prev_k)
                if after and (best_k < 0 or v > best_v):
                    best_v = v
                    best_k = k
            ranked[r, s, q] = best_k
            prev_v = best_v
            prev_k = best_k
        G[r, s, ranked[r, s, 0]] = 1.0
        delta = fst[r, DELTA]
        for q in range(1 if ist[r, BAND] != 0 else L - 1, L):
            G[r, s, ranked[r, s, q]] = -delta

    @cuda.jit
    def kh_c(G, I, ist, nr, N, M, c):
        """c[r, k] = Σ_s g[k, s] I[k, s] (float64), the homeostatic coefficient of unit k (Eq. 7)."""
        k = cuda.blockIdx.x * tx + cuda.threadIdx.x
        r = cuda.blockIdx.z
        mode = ist[r, MODE]
        if ist[r, ON] == 0 or mode == OFF or k >= (N if mode == TD else M):
            return
        acc = 0.0
        for s in range(nr):
            g = G[r, s, k]
            if g != 0.0:
                acc += g * np.float64(I[r, s, k])
        c[r, k] = acc

    @cuda.jit
    def kh_ds(X, H, G, W, c, ist, fst, nr, ds, dsmax):
        """ds = R^p · g xᵀ - c ⊙ S (Eq. 7, float64) in W's layout (TD: S = W, x = h; BU: S = Wᵀ, x = X),
        and dsmax[r] = max |ds| over the run (a block reduction, then one atomic max per block)."""
        j = cuda.blockIdx.x * tx + cuda.threadIdx.x
        i = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        mode = ist[r, MODE]
        if ist[r, ON] == 0 or mode == OFF:
            return                                   # the whole block: one run
        buf = cuda.shared.array(nthreads, np.float64)
        tid = cuda.threadIdx.y * tx + cuda.threadIdx.x
        v = 0.0
        if i < W.shape[1] and j < W.shape[2]:
            acc = 0.0
            if mode == TD:
                for s in range(nr):
                    g = G[r, s, i]
                    if g != 0.0:
                        acc += g * np.float64(H[r, s, j])
                v = fst[r, RADIUS_P] * acc - c[r, i] * np.float64(W[r, i, j])
            else:
                for s in range(nr):
                    x = X[r, s, i]
                    if x != zero:
                        acc += G[r, s, j] * np.float64(x)
                v = fst[r, RADIUS_P] * acc - c[r, j] * np.float64(W[r, i, j])
            ds[r, i, j] = v
        buf[tid] = abs(v)
        cuda.syncthreads()
        half = nthreads // 2
        while half > 0:
            if tid < half and buf[tid + half] > buf[tid]:
                buf[tid] = buf[tid + half]
            cuda.syncthreads()
            half //= 2
        if tid == 0:
            cuda.atomic.max(dsmax, r, buf[0])

    @cuda.jit
    def kh_apply(W, ds, dsmax, ist, fst):
        """W += ε · ds / max(max |ds|, 1e-50), cast to W's dtype (Eq. 8's normalisation)."""
        j = cuda.blockIdx.x * tx + cuda.threadIdx.x
        i = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        if ist[r, ON] == 0 or ist[r, MODE] == OFF or i >= W.shape[1] or j >= W.shape[2]:
            return
        W[r, i, j] += fl(fst[r, EPS] * ds[r, i, j] / max(dsmax[r], 1e-50))

    @cuda.jit
    def gradient(X, V, Ph, Qh, W, a, b, ist, fst, nr):
        """θ ← θ - η∇L (SPEC, CD-k step): ∇_W L = -(XᵀPh - VᵀQh)/B, ∇_a L = -mean(X - V),
        ∇_b L = -mean(Ph - Qh), B = nr; W by thread (i, j), a by the threads j = 0, b by i = 0."""
        j = cuda.blockIdx.x * tx + cuda.threadIdx.x
        i = cuda.blockIdx.y * ty + cuda.threadIdx.y
        r = cuda.blockIdx.z
        N = W.shape[1]
        M = W.shape[2]
        if ist[r, ON] == 0:
            return
        lr = fl(fst[r, LR])
        rows = fl(nr)
        if i < N and j < M:
            acc = zero
            for s in range(nr):
                x = X[r, s, i]
                v = V[r, s, i]
                if x != zero:
                    acc += x * Ph[r, s, j]
                if v != zero:
                    acc -= v * Qh[r, s, j]
            W[r, i, j] -= lr * (-acc / rows)
            if j == 0:
                sa = zero
                for s in range(nr):
                    sa += X[r, s, i] - V[r, s, i]
                a[r, i] -= lr * (-(sa / rows))
        if i == 0 and j < M:
            sb = zero
            for s in range(nr):
                sb += Ph[r, s, j] - Qh[r, s, j]
            b[r, j] -= lr * (-(sb / rows))

    return SimpleNamespace(gather=gather, tile_rows=tile_rows, hidden=hidden, visible=visible, labels=labels,
                           currents=currents, rank=rank, kh_c=kh_c, kh_ds=kh_ds, kh_apply=kh_apply,
                           gradient=gradient, tx=tx, ty=ty)
