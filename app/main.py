"""Entry point of `panel serve app`: Bokeh executes this file once per browser tab (session).

Everything lives in :mod:`app.lab` (imported once per server process); each run of this file builds a
fresh :class:`app.lab.Lab` with its own Trainer, closed again when the tab's session is destroyed.
"""
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from app.lab import build  # noqa: E402

build().servable()
