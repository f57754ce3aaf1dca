"""khrbm: Restricted Boltzmann Machines with Krotov–Hopfield modulation (Tambaş, Subaşı, Kabakçıoğlu 2025).

Layers, data flowing one way: :mod:`khrbm.data` → :mod:`khrbm.rbm`, :mod:`khrbm.kh`, :mod:`khrbm.step`
(pure NumPy reference) and :mod:`khrbm.kernels` (Numba) → :mod:`khrbm.run` (one model's state) →
:mod:`khrbm.trainer` (threaded, snapshots) → the Panel app (:mod:`khrbm.app`, :func:`lab`) and the CLI
(:mod:`khrbm.cli`). Importing khrbm does not import Panel.
"""
from .config import ConfigError, RunConfig

__version__ = "0.1.0"
__all__ = ["ConfigError", "RunConfig", "__version__", "lab"]


def lab(preset: str | None = None):
    """The interactive lab as a Panel object (call ``pn.extension()`` first): show it in a notebook, or
    ``.servable()`` it in a notebook served by `panel serve`. The trainer runs on its background thread;
    ``.stop()`` ends it. ``preset``: a preset id (``"story"``, ``"bars"``, …; see khrbm.app.presets)."""
    from .app.lab import lab as make
    return make(preset)
