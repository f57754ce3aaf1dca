"""`khrbm repro`: the paper's protocol at the paper budget, the verdict rule, the viz statistics, and the smoke
budget end to end on real MNIST (a 2-worker sweep, the report's files read back, the notebook executed)."""
import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from khrbm.experiments import claims, repro
from khrbm.experiments.sweep import read_table, run_key

REPO = Path(__file__).resolve().parents[1]


# --- the protocol ------------------------------------------------------------------------------------
def test_paper_budget_is_the_papers_protocol():
    paper = repro.BUDGETS["paper"]
    plan = repro.plan_configs("all", paper)
    every = [c for cs in plan.values() for c in cs]
    # 60,000 training images, the 10,000 test images as validation, 500 epochs, B = 100, η = 0.1, CD (the paper)
    assert all(c.dataset == "mnist" and c.train_size is None and c.val_size is None and c.epochs == 500
               and c.batch_size == 100 and c.lr == 0.1 and c.sampler == "cd" for c in every)
    # Table I: M ∈ {100, 500} × {LeCun, std} × {CD-1, KH_TD-CD-1, CD-10, KH_TD-CD-10}, cRBM, R by init (SPEC)
    t1 = plan["table1"]
    assert {(c.n_hidden, c.init, c.k, c.kh_mode) for c in t1} == {
        (m, i, k, mode) for m in (100, 500) for i in ("lecun", "std") for k in (1, 10) for mode in ("off", "td")}
    assert all(c.task == "classification" for c in t1) and len(t1) == 16 * 10
    kh = {(c.n_hidden, c.init): (c.eps0, c.delta, c.radius) for c in t1 if c.kh_mode == "td"}
    assert kh == {(100, "lecun"): (0.002, 0.7, 0.1), (100, "std"): (0.001, 0.8, 1.0),
                  (500, "lecun"): (0.002, 0.0, 0.1), (500, "std"): (0.02, 1.0, 1.0)}      # SPEC's table
    # Fig. 4: 10 runs per S ∈ {50, ..., 500} (S = 500 is the default schedule) and the plain RBM
    fig4 = plan["fig4"]
    assert sorted({c.kh_horizon for c in fig4 if c.kh_mode == "td"}) == [50, 100, 200, 300, 400, 500]
    assert all(sum(1 for c in fig4 if c.kh_mode == m and c.kh_horizon == s) == 10
               for m, s in [("off", 500)] + [("td", s) for s in (50, 100, 200, 300, 400, 500)])
    assert all((c.n_hidden, c.init, c.task, c.k) == (100, "lecun", "reconstruction", 1) for c in fig4)
    # Fig. 2: one run, KH phased out at 300 epochs, probes of 3000 trials
    (fig2,) = plan["fig2"]
    assert (fig2.kh_mode, fig2.kh_horizon, fig2.probe_trials) == ("td", 300, 3000) and fig2.probe_every > 0
    # the shuffled control is KH_TD with ξ permuted; Fig. 3's runs are shared, not run twice
    assert {c.shuffle_xi for c in plan["shuffled"]} == {False, True}
    assert {run_key(c) for c in plan["fig3"]} <= {run_key(c) for c in plan["shuffled"]}
    assert len(plan["fig3"]) == 2 * 2 * 10 and len(plan["likelihood"]) == 2 * 5


def test_verdict_is_a_students_t_test_over_seeds():
    # paired differences 1, 2, 3: mean 2, SE 1/√3 = 0.577; t(2) = 4.303 -> margin 2.48 > 2: inconclusive
    c = claims.compare({1: 3.0, 2: 4.0, 3: 5.0}, {1: 2.0, 2: 2.0, 3: 2.0}, "higher")
    assert c.paired and c.verdict == claims.OPEN and c.diff == pytest.approx(2.0)
    assert c.se == pytest.approx(1 / math.sqrt(3))
    # differences 1.9, 2.0, 2.1: SE 0.0577, margin 0.248 < 2: holds; the other way round: does not hold
    a, b = {1: 3.9, 2: 4.0, 3: 4.1}, {1: 2.0, 2: 2.0, 3: 2.0}
    assert claims.compare(a, b, "higher").verdict == claims.HOLDS
    assert claims.compare(a, b, "lower").verdict == claims.FAILS
    # unpaired (different seeds): Welch's SE √(s_a²/n_a + s_b²/n_b), df = min(n) - 1 = 1, t = 12.706
    w = claims.compare({1: 1.0, 2: 2.0}, {3: 0.0, 4: 0.5}, "higher")
    assert not w.paired and w.se == pytest.approx(math.sqrt(0.5 / 2 + 0.125 / 2)) and w.verdict == claims.OPEN
    # one seed per arm: no standard error, never a verdict
    assert claims.compare({1: 5.0}, {1: 1.0}, "higher").verdict == claims.OPEN


def test_curves_are_the_mean_and_standard_error_over_seeds():
    from khrbm import viz
    rows = [{"run": f"r{s}", "seed": s, "kh_mode": "td", "epoch": e, "val_mse": v}
            for s, vals in ((1, (0.5, 0.2)), (2, (0.7, 0.3)), (3, (0.6, 0.1))) for e, v in enumerate(vals)]
    overlay = viz.curves(pd.DataFrame(rows), "val_mse", ("kh_mode",))
    spread, curve = overlay.get(0), overlay.get(1)
    assert np.allclose(curve.dimension_values(1), [0.6, 0.2])
    assert np.allclose(spread.dimension_values(1), [0.6, 0.2])
    assert np.allclose(spread.dimension_values(2), [np.std([0.5, 0.7, 0.6], ddof=1) / np.sqrt(3),
                                                    np.std([0.2, 0.3, 0.1], ddof=1) / np.sqrt(3)])
    assert "n = 3" in curve.label


# --- the smoke budget end to end ---------------------------------------------------------------------
def page_texts(page: str) -> str:
    """Every string of the Bokeh documents embedded in a saved page (HTML panes' markup unescaped), joined."""
    texts = []

    def walk(x):
        if isinstance(x, str):
            texts.append(html.unescape(html.unescape(x)))
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S):
        walk(json.loads(block))
    return "\n".join(texts)



@pytest.fixture(scope="module")
def smoke(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("repro") / "smoke"
    proc = subprocess.run([sys.executable, "-m", "khrbm", "repro", "all", "--budget", "smoke", "--workers", "2",
                           "--no-progress", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stderr


def test_smoke_budget_runs_every_target_into_one_table(smoke):
    out, log = smoke
    budget = repro.BUDGETS["smoke"]
    planned = {run_key(c) for cs in repro.plan_configs("all", budget).values() for c in cs}
    assert re.search(rf"projected: {len(planned)} runs to go, .* wall on 2 workers", log)
    table = read_table(out)
    assert set(table["run"]) == planned and set(table["status"]) == {"done"}
    per_run = table.groupby("run")["epoch"].apply(list)
    assert all(epochs == [0.0, 1.0, 2.0] for epochs in per_run)          # 2 epochs, and the point at 0
    assert table["val_mse"].notna().all() and table["overlap"].between(0, 1).all()
    crbm = table[table["task"] == "classification"]
    assert crbm["accuracy"].between(0, 1).all() and table[table["task"] == "reconstruction"]["accuracy"].isna().all()
    probed = table[table["probe_every"] > 0]
    assert probed["xi_probes"].sum() > 0 and probed["xi_ratio"].dropna().gt(0).all()


def test_smoke_report_has_every_claim_figure_and_png_and_needs_no_network(smoke):
    from PIL import Image
    out, log = smoke
    results = json.loads((out / "results.json").read_text())
    assert set(results["targets"]) == set(repro.TARGETS) and results["runs_failed"] == []
    found = [c for t in results["targets"].values() for c in t["claims"]]
    assert len(found) >= 8 + 2 + 5 + 2 + 2 + 2 + 2 + 1
    verdicts = (claims.HOLDS, claims.FAILS, claims.OPEN)
    assert all(c["verdict"] in verdicts and re.search(r"n = \d|1 seed|no finished", c["measured"]) for c in found)
    cells = results["targets"]["table1"]["numbers"]["cells"]
    assert {(c["method"], c["M"], c["init"], c["paper"]) for c in cells} >= {("KH_TD-CD1", 500, "std", 96.5),
                                                                            ("CD1", 500, "std", 92.0)}
    assert results["targets"]["overlap"]["numbers"]["off"]["paper"] == 0.41
    page = (out / "report.html").read_text()
    shown = page_texts(page)
    for c in found:                                                     # every verdict line is on the page
        assert f"{c['verdict']}</b> · {html.escape(c['text'])}. {html.escape(c['measured'])}" in shown
    for title in ("Fig. 3a: validation MSE", "Fig. 4: validation MSE", "Fig. 5: validation accuracy",
                  "Table I: max validation accuracy", "|ξ| / |∇L|", "Receptive-field overlap after training",
                  "KH_TD, seed 1", "AIS test log-likelihood", "wins (+1) per pixel"):
        assert title in shown, title
    assert page.count('"name":"Figure"') >= 12 and '"name":"Slider"' in page   # Bokeh plots, epoch slider
    assert not re.search(r'<script[^>]+src="https?:|"url":"https?:|<link[^>]+href="https?:', page)
    for png in results["pngs"]:
        with Image.open(out / png) as im:
            lo, hi = im.convert("L").getextrema()
            assert im.format == "PNG" and im.size[0] > 200 and hi - lo > 100, png          # not a blank image
    assert any(line.startswith("[fig3] ") for line in log.splitlines())


def test_notebook_shows_every_figure_of_the_sweep(smoke):
    import nbformat
    from nbclient import NotebookClient
    out, _ = smoke
    nb = nbformat.read(REPO / "examples" / "reproduce.ipynb", as_version=4)
    os.environ["KHRBM_SWEEP"] = str(out)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    finally:
        del os.environ["KHRBM_SWEEP"]
    shown = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
             if "application/vnd.holoviews_exec.v0+json" in o.get("data", {})]
    assert len(shown) >= 10                      # Table I, Fig. 2-5, competition, overlap, mosaics, shuffled, AIS
    printed = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "[fig4] S = " in printed and "[likelihood]" in printed
