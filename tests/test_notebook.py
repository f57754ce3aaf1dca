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


def test_importing_khrbm_leaves_panel_out_and_lab_names_a_bad_preset():
    import subprocess
    import sys

    code = ("import sys, khrbm, khrbm.app.urlstate, khrbm.app.presets, khrbm.app.feed; "
            "assert 'panel' not in sys.modules and 'bokeh' not in sys.modules, 'imported panel'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    import khrbm
    with pytest.raises(ValueError, match="unknown preset 'nope'; one of story, fig3, bars"):
        khrbm.lab("nope")
