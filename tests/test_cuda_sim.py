"""The CUDA kernels' checks (tests/cuda_checks.py), run through Numba's CUDA simulator.

The simulator must be chosen before ``numba.cuda`` is first imported, and the rest of the suite must see
the real CUDA target (no GPU: ``backend="cuda"`` is refused), so in the normal suite this file runs
the checks in a pytest process of their own with ``NUMBA_ENABLE_CUDASIM=1``. Inside that process (or on
a GPU machine with ``KHRBM_CUDA_DEVICE=1``, where the same checks run on the device) the checks are
collected here directly:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_sim.py      # each check on its own line
    KHRBM_CUDA_DEVICE=1 python -m pytest tests/test_cuda_sim.py         # on a real GPU
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("KHRBM_CUDA_DEVICE") == "1":
    from cuda_checks import *  # noqa: F401,F403  (collected as this file's tests)
else:
    def test_cuda_checks_pass_in_the_simulator():
        env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
        env.pop("KHRBM_CUDA_DEVICE", None)
        done = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
                               "-o", "addopts="], env=env, capture_output=True, text=True, timeout=900,
                              cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
        assert " passed" in done.stdout and " failed" not in done.stdout and " skipped" not in done.stdout
