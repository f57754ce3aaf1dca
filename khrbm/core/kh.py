"""Krotov–Hopfield modulation (Eqs. 5–8) and its ε schedule, as plain NumPy (the reference).

One KH step per minibatch, before the CD step (Eq. 9). Two modes (SPEC):

=====  ============================  =======================  =================
mode   presynaptic activity x (B×P)  postsynaptic units (K)   synapses S (K×P)
=====  ============================  =======================  =================
bu     the data batch X              hidden, K = M            S = Wᵀ
td     h ~ Bern(σ(XW+b)), sampled    visible, K = N           S = W
=====  ============================  =======================  =================

Ranking: currents are ranked in descending order; ties go to the lower unit index.
"""
from __future__ import annotations

import numpy as np

from . import rng
from .rbm import Params, sample_hidden


def kh_epsilon(eps0: float, epoch: float, horizon: float) -> float:
    """ε(epoch) = ε0 (1 - epoch/S)^(3/2) for epoch < S, and 0 from epoch S on (SPEC, schedule)."""
    if epoch >= horizon:
        return 0.0
    return float(eps0 * (1.0 - epoch / horizon) ** 1.5)


def kh_presynaptic(X, params: Params, mode: str, key: int) -> np.ndarray:
    """x of the KH step: the data (bu) or h ~ Bern(σ(XW+b)) from stream ``KH_HIDDEN`` of ``key`` (td)."""
    if mode == "bu":
        return X
    u = rng.uniforms(rng.stream(key, rng.KH_HIDDEN), (len(X), params.n_hidden))
    return sample_hidden(X, params.W, params.b, u)


def kh_currents(S: np.ndarray, x: np.ndarray, p: float) -> np.ndarray:
    """I[:, s] = (sign(S)·|S|^(p-1)) x[s] (Eq. 5 with the Lebesgue exponent p); K × B."""
    Sp = S if p == 2 else np.sign(S) * np.abs(S) ** (p - 1)
    return Sp @ x.T


def kh_ranking(I: np.ndarray, ell: int) -> np.ndarray:
    """The ℓ+1 best postsynaptic units of each sample, best first (B × (ℓ+1)); ties → lower index."""
    order = np.argsort(-I, axis=0, kind="stable")
    return order[: ell + 1].T.copy()


def kh_modulator(ranked: np.ndarray, K: int, delta: float, band: bool = False) -> np.ndarray:
    """g (K × B) of Eq. 8: +1 for the winner, -Δ for the unit ranked ℓ below it (or, with ``band``,
    for every unit ranked 1..ℓ below it), 0 elsewhere."""
    B, ell1 = ranked.shape
    g = np.zeros((K, B))
    cols = np.arange(B)
    g[ranked[:, 0], cols] = 1.0
    for r in (range(1, ell1) if band else (ell1 - 1,)):
        g[ranked[:, r], cols] = -delta
    return g


def kh_delta(X, params: Params, mode: str, eps: float, delta: float, ell: int, radius: float, p: float,
             key: int, band: bool = False):
    """The KH change of W for one minibatch (Eqs. 6–8, SPEC).

    ds = R^p · g xᵀ - (Σ_s g⊙I)[:, None] ⊙ S,  δS = ε · ds / max(|ds|)  (max floored at 1e-50).
    Returns ``(dW, ranked)``: dW has W's shape and dtype; ``ranked`` (B × (ℓ+1)) lists each sample's
    winner and the units ranked below it (for the competition counts)."""
    W = params.W
    x = kh_presynaptic(X, params, mode, key).astype(np.float64)
    S = (W.T if mode == "bu" else W).astype(np.float64)
    K = S.shape[0]
    if not 1 <= ell < K:
        raise ValueError(f"ℓ must be in [1, {K - 1}] for {K} postsynaptic units, got {ell}")
    I = kh_currents(S, x, p)
    ranked = kh_ranking(I, ell)
    g = kh_modulator(ranked, K, delta, band)
    ds = radius**p * (g @ x) - (g * I).sum(axis=1)[:, None] * S
    dS = eps * ds / max(np.abs(ds).max(), 1e-50)
    dW = dS.T if mode == "bu" else dS
    return dW.astype(W.dtype), ranked
