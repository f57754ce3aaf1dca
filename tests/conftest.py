"""Shared test setup.

Real MNIST: ``KHRBM_DATA_DIR`` if set, else ``../shared/data`` beside the repository when it exists, else
the user cache (``khrbm data fetch mnist``). Tests that need it ask for the ``mnist_dir`` fixture, which
skips with one line saying how to get the data, or fails when ``KHRBM_REQUIRE_REAL_DATA=1`` (set by
``.ci/run``) so that a skip can never hide a regression in CI.
"""
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

# scikit-learn's check_array_api_input (numpy namespace) runs only with SciPy's array-API mode, which must be on
# before SciPy is first imported; without it the estimator checks would skip that check.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
if "KHRBM_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["KHRBM_DATA_DIR"] = str(SHARED_DATA)

# Tests never write to the user's run registry: every khrbm process they start records into this one.
os.environ["KHRBM_REGISTRY"] = str(Path(tempfile.mkdtemp(prefix="khrbm-test-registry-")) / "registry.sqlite")

HOW_TO_GET_MNIST = ("real MNIST not found: run `khrbm data fetch mnist` (needs internet once) or set "
                    "KHRBM_DATA_DIR to a folder holding its IDX files")


def real_mnist_or_skip() -> Path:
    """The folder real MNIST is read from; skip (or, in CI, fail) the calling test when there is none."""
    from khrbm import data

    try:
        directory, _files = data.locate("mnist")
        return directory
    except data.DataError as err:
        if os.environ.get("KHRBM_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"KHRBM_REQUIRE_REAL_DATA=1 but {HOW_TO_GET_MNIST} ({str(err)[:300]})")
        pytest.skip(HOW_TO_GET_MNIST)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return real_mnist_or_skip()


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server a test started; kill it if it does not end within 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def trainers():
    """Make Trainers (``trainers(config_a, ...)``); all closed afterwards even if the test fails."""
    from khrbm.train.trainer import Trainer

    made = []

    def make(*args, **kw):
        t = Trainer(*args, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()
