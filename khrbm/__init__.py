"""khrbm: Restricted Boltzmann Machines with Krotov–Hopfield modulation (Tambaş, Subaşı, Kabakçıoğlu 2025).

Layers, data flowing one way: :mod:`khrbm.data` → :mod:`khrbm.core` (rbm, kh, step: the pure NumPy
reference; kernels: Numba; metrics) → :mod:`khrbm.train` (run: one model's state; trainer: threaded,
snapshots) → the Panel app (:mod:`khrbm.app`, :func:`lab`), the CLI (:mod:`khrbm.cli`) and the scikit-learn
estimators (:mod:`khrbm.estimators`: ``khrbm.KHBernoulliRBM``, ``khrbm.KHClassRBM``, imported on first use so
that ``import khrbm`` needs no scikit-learn). Importing khrbm imports neither Panel nor scikit-learn.
"""
from .config import ConfigError, RunConfig

__version__ = "0.1.0"
_ESTIMATORS = ("KHBernoulliRBM", "KHClassRBM")
__all__ = ["ConfigError", "RunConfig", "__version__", "lab", *_ESTIMATORS]


def lab(preset: str | None = None):
    """The interactive lab as a Panel object (call ``pn.extension()`` first): show it in a notebook, or
    ``.servable()`` it in a notebook served by `panel serve`. The trainer runs on its background thread;
    ``.stop()`` ends it. ``preset``: a preset id (``"story"``, ``"bars"``, …; see khrbm.app.presets)."""
    from .app.lab import lab as make
    return make(preset)


def __getattr__(name: str):
    if name in _ESTIMATORS:
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'khrbm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ESTIMATORS))
