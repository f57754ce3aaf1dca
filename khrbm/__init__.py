"""khrbm: Restricted Boltzmann Machines with Krotov–Hopfield modulation (Tambaş, Subaşı, Kabakçıoğlu 2025).

Layers, data flowing one way: :mod:`khrbm.data` → :mod:`khrbm.core` (rbm, kh, step: the pure NumPy
reference; kernels: Numba; metrics) → :mod:`khrbm.train` (run: one model's state; trainer: threaded,
snapshots) → the Panel app (``app/``), the CLI (:mod:`khrbm.cli`) and the scikit-learn estimators
(:mod:`khrbm.estimators`: ``khrbm.KHBernoulliRBM``, ``khrbm.KHClassRBM``, imported on first use so that
``import khrbm`` needs no scikit-learn).
"""
from .config import ConfigError, RunConfig

__version__ = "0.1.0"
_ESTIMATORS = ("KHBernoulliRBM", "KHClassRBM")
__all__ = ["ConfigError", "RunConfig", "__version__", *_ESTIMATORS]


def __getattr__(name: str):
    if name in _ESTIMATORS:
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'khrbm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ESTIMATORS))
