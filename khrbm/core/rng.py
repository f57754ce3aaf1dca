"""Counter-based random numbers: every uniform of a run is a pure function of (seed, step, purpose, index).

``u = splitmix64(stream + index) >> 40 · 2^-24`` is an exact float32 in [0, 1). Because each number
depends only on its coordinates, Numba threads can draw them in any order and the NumPy reference
draws the very same numbers; a resumed run needs nothing but the step counter.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

# purposes: one independent stream per use inside a step
KH_HIDDEN = 1          # TD: h ~ Bern(σ(XW+b)) that feeds the KH currents
GIBBS_HIDDEN = 10      # + 2t: h sample at Gibbs step t
GIBBS_VISIBLE = 11     # + 2t: v sample at Gibbs step t
GIBBS_LABEL = 5000     # + t: label sample at Gibbs step t (cRBM, softmax mode)
SHUFFLE = 9000         # permutation of ξ (shuffled control)


def _mix(z: int) -> int:
    z = (z + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def stream(seed: int, *coords: int) -> int:
    """A 64-bit stream key for ``seed`` and any number of integer coordinates (step, purpose, …)."""
    key = _mix(int(seed) & _MASK)
    for c in coords:
        key = _mix(key ^ (int(c) & _MASK))
    return key


def uniforms(key: int, shape, dtype=np.float32) -> np.ndarray:
    """The uniforms of stream ``key`` at indices 0..prod(shape)-1, C order."""
    out = np.empty(int(np.prod(shape)), np.float32)
    _fill_uniforms(np.uint64(key), out)
    return out.astype(dtype, copy=False).reshape(shape)


@njit(cache=True, inline="always")
def uniform_at(key, index):
    """The uniform of stream ``key`` at ``index`` (Numba; equals ``uniforms(key, n)[index]``)."""
    z = np.uint64(key) + np.uint64(_GOLDEN) * (np.uint64(index) + np.uint64(1))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.float32(z >> np.uint64(40)) * np.float32(2.0**-24)


def generator(seed: int, *coords: int) -> np.random.Generator:
    """A NumPy Generator for draws that are not per-element uniforms (init, data order, permutations)."""
    return np.random.Generator(np.random.PCG64(stream(seed, *coords)))


@njit(cache=True)
def _fill_uniforms(key, out):
    # serial on purpose: khrbm.kernels owns the parallel launches (one threading runtime, one lock)
    for i in range(out.size):
        out[i] = uniform_at(key, i)
