"""The Fig. 2 diagnostic: how large the KH contribution ξ is, and which way it points (SPEC, "Fig. 2
diagnostics").

From Eq. 9, ``θ_{t+1} = θ_t - η[∇L(θ_t) + ξ_t]`` with, exactly, ``ξ_t = ∇L(θ_t + δθ_t) - ∇L(θ_t) - δθ_t/η``.
"""
from __future__ import annotations

import numpy as np

from . import rng
from .rbm import Params
from .step import StepSettings, kh_step_delta, xi_terms

PROBE_TRIAL = 7000   # trial t of a probe with key ``key`` uses ``rng.stream(key, PROBE_TRIAL + t)``


def xi_probe(X, params: Params, st: StepSettings, key: int, trials: int, chain=None):
    """``(ratio, cosine)`` of the KH contribution ξ at this minibatch, over all of θ = (W, a, b).

    δθ is the KH change of this minibatch (``kh_step_delta`` with ``key``; only W changes). Trial t
    estimates ∇L(θ) and ∇L(θ + δθ) with the same random numbers (``xi_terms`` with key
    ``rng.stream(key, 7000 + t)``); both are averaged over the trials and
    ``ξ = mean ∇L(θ+δθ) - mean ∇L(θ) - δθ/η``. Then ``ratio = |ξ| / |∇L(θ)|`` and
    ``cosine = ∇L(θ)·ξ / (|∇L(θ)| |ξ|)`` (the paper finds it small and negative).

    ``params`` (and ``chain``) are not modified. When KH is inactive (mode off or ε = 0) ξ is 0 by
    definition: the result is ``(0.0, nan)``. A zero ∇L gives nan ratio and cosine."""
    if not st.kh_active:
        return 0.0, float("nan")
    if trials < 1:
        raise ValueError(f"xi_probe needs at least one trial, got {trials}")
    dW, _ = kh_step_delta(X, params, st, key)
    g_sum = [np.zeros(params.W.shape), np.zeros(params.a.shape), np.zeros(params.b.shape)]
    xi_sum = [np.zeros(params.W.shape), np.zeros(params.a.shape), np.zeros(params.b.shape)]
    for t in range(trials):
        g0, xi, _ = xi_terms(X, params, st, rng.stream(key, PROBE_TRIAL + t), chain, dW)
        for acc, x in zip(g_sum, g0):
            acc += x
        for acc, x in zip(xi_sum, xi):
            acc += x
    g = np.concatenate([x.ravel() for x in g_sum]) / trials
    xi = np.concatenate([x.ravel() for x in xi_sum]) / trials
    g_norm, xi_norm = np.linalg.norm(g), np.linalg.norm(xi)
    if g_norm == 0.0:
        return float("nan"), float("nan")
    ratio = xi_norm / g_norm
    cosine = float(g @ xi / (g_norm * xi_norm)) if xi_norm > 0 else float("nan")
    return float(ratio), cosine
