"""examples/lab.ipynb executed headless (nbclient): khrbm.lab() builds the lab in a kernel, its trainer
trains on its background thread when driven from Python, and the link of its setup is readable."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "lab.ipynb"


@pytest.mark.timeout(600)
def test_lab_notebook_runs_headless(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = ["".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)
               for cell in nb.cells if cell.cell_type == "code"]
    assert "at step 3" in outputs[2], outputs[2]                 # the trainer trained three minibatches
    assert "arm A:" in outputs[2]
    assert outputs[3].strip("'").startswith("preset="), outputs[3]
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert errors == []
