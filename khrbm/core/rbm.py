"""The RBM and its CD-k / PCD-k gradient, as plain NumPy: the reference transcription of SPEC.

Notation (SPEC): visible v ∈ {0,1}^N, hidden h ∈ {0,1}^M, W is N×M, a has N entries, b has M.
Energy E(v,h) = -vᵀWh - aᵀv - bᵀh (Eq. 1); free energy F(v) = -aᵀv - Σ_j softplus(b_j + (vW)_j).
For the cRBM the last ``n_labels`` visible units are a one-hot label block (Larochelle et al. 2012).

Random draws come from :mod:`khrbm.rng` streams so that the Numba kernels can reproduce them exactly:
a unit is on when its uniform is below its probability, ``h = u < p``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import rng


@dataclass
class Params:
    """θ = (W, a, b). Arrays are owned by whoever holds the Params and may be updated in place."""

    W: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def copy(self) -> "Params":
        return Params(self.W.copy(), self.a.copy(), self.b.copy())

    @property
    def n_visible(self) -> int:
        return self.W.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W.shape[1]


INIT_STREAM = 0x1417  # purpose id of the init stream, distinct from any step


def init_params(n_visible: int, n_hidden: int, init: str, seed: int, dtype=np.float32) -> Params:
    """``std``: W ~ N(0, 1); ``lecun``: W ~ N(0, 1/N) with N = n_visible; biases 0 (SPEC)."""
    scale = {"std": 1.0, "lecun": 1.0 / np.sqrt(n_visible)}[init]
    W = rng.generator(seed, INIT_STREAM).standard_normal((n_visible, n_hidden)) * scale
    return Params(W.astype(dtype), np.zeros(n_visible, dtype), np.zeros(n_hidden, dtype))


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype, copy=False)


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x), stable for large |x|."""
    return np.logaddexp(0.0, x).astype(x.dtype, copy=False)


def hidden_probs(V: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """p(h_j = 1 | v) = σ(vW + b)_j."""
    return sigmoid(V @ W + b)


def sample_hidden(V, W, b, u) -> np.ndarray:
    return (u < hidden_probs(V, W, b)).astype(W.dtype)


def sample_visible(H, W, a, u, n_labels=0, label_sampling="argmax", u_label=None) -> np.ndarray:
    """v ~ p(v|h). Pixels are Bernoulli(σ(hWᵀ + a)); a cRBM's label block is one-hot: the argmax
    of ``hW_yᵀ + a_y`` (the authors' code) or a sample of its softmax (needs ``u_label``, one per row)."""
    act = H @ W.T + a
    n_pix = W.shape[0] - n_labels
    V = np.empty_like(act)
    V[:, :n_pix] = u[:, :n_pix] < sigmoid(act[:, :n_pix])
    if n_labels:
        logits = act[:, n_pix:].astype(np.float64)
        if label_sampling == "argmax":
            y = logits.argmax(axis=1)
        else:
            prob = np.exp(logits - logits.max(axis=1, keepdims=True))
            cdf = np.cumsum(prob / prob.sum(axis=1, keepdims=True), axis=1)
            y = np.minimum((cdf < u_label[:, None]).sum(axis=1), n_labels - 1)
        V[:, n_pix:] = 0
        V[np.arange(len(V)), n_pix + y] = 1
    return V


def gibbs_chain(V, params: Params, k: int, key: int, n_labels=0, label_sampling="argmax") -> np.ndarray:
    """k alternating steps h ~ p(h|v), v ~ p(v|h) from ``V``; Gibbs step t draws from the streams
    ``GIBBS_HIDDEN + 2t``, ``GIBBS_VISIBLE + 2t`` and ``GIBBS_LABEL + t`` of ``key``."""
    W, a, b = params.W, params.a, params.b
    B, (N, M) = len(V), W.shape
    for t in range(k):
        H = sample_hidden(V, W, b, rng.uniforms(rng.stream(key, rng.GIBBS_HIDDEN + 2 * t), (B, M)))
        u_v = rng.uniforms(rng.stream(key, rng.GIBBS_VISIBLE + 2 * t), (B, N))
        u_y = rng.uniforms(rng.stream(key, rng.GIBBS_LABEL + t), (B,)) if n_labels else None
        V = sample_visible(H, W, a, u_v, n_labels, label_sampling, u_y)
    return V


def cd_gradient(X, params: Params, k: int, key: int, chain=None, n_labels=0, label_sampling="argmax"):
    """CD-k (``chain=None``: the chain starts at X) or PCD-k (starts at ``chain``) estimate of ∇L.

    Returns ``(gW, ga, gb, vk)`` with ∇_W L = -(XᵀPh - vᵏᵀQh)/B, ∇_a L = -mean(X - vᵏ),
    ∇_b L = -mean(Ph - Qh) (SPEC, CD-k step; the update is θ ← θ - η∇L, Eq. 3)."""
    W, b = params.W, params.b
    B = len(X)
    Ph = hidden_probs(X, W, b)
    vk = gibbs_chain(X if chain is None else chain, params, k, key, n_labels, label_sampling)
    Qh = hidden_probs(vk, W, b)
    gW = -(X.T @ Ph - vk.T @ Qh) / B
    ga = -(X - vk).mean(axis=0)
    gb = -(Ph - Qh).mean(axis=0)
    return gW.astype(W.dtype), ga.astype(W.dtype), gb.astype(W.dtype), vk


def free_energy(V, params: Params) -> np.ndarray:
    """F(v) = -aᵀv - Σ_j softplus(b_j + (vW)_j), one value per row of V (float64)."""
    V = np.asarray(V, np.float64)
    return -V @ params.a.astype(np.float64) - softplus(V @ params.W.astype(np.float64) + params.b).sum(axis=1)


def crbm_log_posterior(X, params: Params, n_labels: int) -> np.ndarray:
    """Exact log p(y|x) of the cRBM for each row of the pixel matrix X (B × N_pix) and each label:
    a_y + Σ_j softplus(b_j + (xW_x)_j + W_{y,j}) - logsumexp over y (SPEC, cRBM)."""
    W = params.W.astype(np.float64)
    n_pix = W.shape[0] - n_labels
    base = np.asarray(X, np.float64) @ W[:n_pix] + params.b
    logits = params.a[n_pix:].astype(np.float64) + np.stack(
        [softplus(base + W[n_pix + y]).sum(axis=1) for y in range(n_labels)], axis=1)
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
