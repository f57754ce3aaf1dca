"""One training step on one minibatch: the KH modulation, then the CD/PCD step from the modulated W (Eq. 9).

``StepSettings`` holds everything a step reads (ε already scheduled); ``numpy_step`` is the
reference implementation; :mod:`khrbm.kernels` provides the fast one with the same contract:
it updates ``params`` in place and returns a :class:`StepResult`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import rng
from ..config import FIELD, RunConfig
from .kh import kh_delta, kh_epsilon
from .rbm import Params, cd_gradient


@dataclass(frozen=True)
class StepSettings:
    """What one step reads; the defaults are the config's (``FIELD``), ε the scheduled KH step size."""
    lr: float = FIELD["lr"].default
    k: int = FIELD["k"].default
    kh_mode: str = FIELD["kh_mode"].default
    eps: float = 0.0
    delta: float = FIELD["delta"].default
    ell: int = FIELD["ell"].default
    ell_band: bool = FIELD["ell_band"].default
    radius: float = FIELD["radius"].default
    p: float = FIELD["p"].default
    shuffle_xi: bool = FIELD["shuffle_xi"].default
    persistent: bool = False
    n_labels: int = 0
    label_sampling: str = FIELD["label_sampling"].default

    @classmethod
    def from_config(cls, cfg: RunConfig, epoch: float, n_labels: int) -> "StepSettings":
        """The settings of a step taken at fractional ``epoch`` (ε follows the schedule of SPEC)."""
        return cls(lr=cfg.lr, k=cfg.k, kh_mode=cfg.kh_mode,
                   eps=kh_epsilon(cfg.eps0, epoch, cfg.kh_horizon) if cfg.kh_mode != "off" else 0.0,
                   delta=cfg.delta, ell=cfg.ell, ell_band=cfg.ell_band, radius=cfg.radius, p=cfg.p,
                   shuffle_xi=cfg.shuffle_xi, persistent=cfg.sampler == "pcd", n_labels=n_labels,
                   label_sampling=cfg.label_sampling)

    @property
    def kh_active(self) -> bool:
        return self.kh_mode != "off" and self.eps > 0.0


@dataclass
class StepResult:
    chain: np.ndarray | None       # the persistent chain after the step (PCD), else None
    ranked: np.ndarray | None      # B × (ℓ+1) KH ranking (winner first), None when KH is inactive


def kh_step_delta(X, params: Params, st: StepSettings, key: int):
    return kh_delta(X, params, st.kh_mode, st.eps, st.delta, st.ell, st.radius, st.p, key, st.ell_band)


def gradient(X, params: Params, st: StepSettings, key: int, chain):
    return cd_gradient(X, params, st.k, key, chain if st.persistent else None, st.n_labels, st.label_sampling)


def numpy_step(params: Params, X: np.ndarray, st: StepSettings, key: int, chain=None) -> StepResult:
    """θ^KH = θ + δθ^KH, then θ ← θ^KH - η∇L(θ^KH) (Eq. 9), in place; the NumPy reference."""
    ranked = None
    if st.kh_active and st.shuffle_xi:
        return shuffled_xi_step(params, X, st, key, chain)
    if st.kh_active:
        dW, ranked = kh_step_delta(X, params, st, key)
        params.W += dW
    gW, ga, gb, vk = gradient(X, params, st, key, chain)
    params.W -= st.lr * gW
    params.a -= st.lr * ga
    params.b -= st.lr * gb
    return StepResult(vk if st.persistent else None, ranked)


def xi_terms(X, params: Params, st: StepSettings, key: int, chain, dW):
    """∇L(θ) and ξ = ∇L(θ + δθ) - ∇L(θ) - δθ/η on the same random numbers (SPEC, Fig. 2), each as
    the tuple (W, a, b) of arrays, plus the chain after the unmodulated gradient."""
    g0 = gradient(X, params, st, key, chain)
    shifted = Params(params.W + dW, params.a, params.b)
    g1 = gradient(X, shifted, st, key, chain)
    xi = (g1[0] - g0[0] - dW / st.lr, g1[1] - g0[1], g1[2] - g0[2])
    return g0[:3], xi, g0[3]


def shuffled_xi_step(params: Params, X, st: StepSettings, key: int, chain=None) -> StepResult:
    """Shuffled control (Suppl. A): θ ← θ - η[∇L(θ) + π(ξ)], π a fresh random permutation of all
    components of ξ over (W, a, b)."""
    dW, ranked = kh_step_delta(X, params, st, key)
    g0, xi, vk = xi_terms(X, params, st, key, chain, dW)
    flat = np.concatenate([x.ravel() for x in xi])
    flat = flat[rng.generator(key, rng.SHUFFLE).permutation(flat.size)]
    W_xi, rest = np.split(flat, [params.W.size])
    a_xi, b_xi = np.split(rest, [params.a.size])
    params.W -= (st.lr * (g0[0] + W_xi.reshape(params.W.shape))).astype(params.W.dtype)
    params.a -= (st.lr * (g0[1] + a_xi)).astype(params.a.dtype)
    params.b -= (st.lr * (g0[2] + b_xi)).astype(params.b.dtype)
    return StepResult(vk if st.persistent else None, ranked)
