"""khrbm: Restricted Boltzmann Machines with Krotov–Hopfield modulation (Tambaş, Subaşı, Kabakçıoğlu 2025).

Layers, data flowing one way: :mod:`khrbm.data` → :mod:`khrbm.rbm`, :mod:`khrbm.kh`, :mod:`khrbm.step`
(pure NumPy reference) and :mod:`khrbm.kernels` (Numba) → :mod:`khrbm.run` (one model's state) →
:mod:`khrbm.trainer` (threaded, snapshots) → the Panel app (``app/``) and the CLI (:mod:`khrbm.cli`).
"""
from .config import ConfigError, RunConfig

__version__ = "0.1.0"
__all__ = ["ConfigError", "RunConfig", "__version__"]
