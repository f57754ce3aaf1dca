"""The report of ``khrbm repro``: ``report.html`` (self-contained: every script and stylesheet inline, works
offline), a PNG per figure and ``results.json`` (every claim with its verdict and numbers), built from a sweep's
table and checkpoints with the :mod:`khrbm.viz` figures."""
from __future__ import annotations

import html
import json
import math
import re
import time
from pathlib import Path

import numpy as np

from .. import viz
from ..train.outputs import write_text_atomic
from . import claims as checks
from . import repro
from .sweep import read_plan, read_table, run_folder

AIS_FILE = "ais.json"
VERDICT_COLORS = {checks.HOLDS: "#1a7f37", checks.FAILS: "#cf222e", checks.OPEN: "#9a6700"}


# --------------------------------------------------------------------------------------------------
# the likelihood target's measurement: AIS on each finished run
# --------------------------------------------------------------------------------------------------
def ais_test_loglik(folder: Path, betas: int, chains: int) -> dict:
    """Mean log p(v) over the run's validation images, with log Z by AIS (Salakhutdinov & Murray 2008; base
    model: the training data's base rates), cached in ``ais.json`` of the run folder per (betas, chains)."""
    from ..core.metrics import ais_log_partition, base_rate_biases, log_likelihood
    from ..store.folder import CHECKPOINT
    from ..train.run import Run
    cache = folder / AIS_FILE
    setting = f"{betas}x{chains}"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if setting not in known:
        run = Run.load(folder / CHECKPOINT)
        x_train, _ = run.split("train")
        x_val, _ = run.split("val")
        t0 = time.perf_counter()
        log_z, lo, hi = ais_log_partition(run.params, chains, betas, seed=run.config.seed,
                                          base_a=base_rate_biases(x_train))
        known[setting] = {"log_z": log_z, "log_z_lo": lo, "log_z_hi": hi, "betas": betas, "chains": chains,
                          "test_ll": log_likelihood(np.asarray(x_val, np.float64), run.params, log_z),
                          "seconds": round(time.perf_counter() - t0, 2)}
        write_text_atomic(cache, json.dumps(known, indent=1) + "\n")
    return known[setting]


def likelihoods(out: Path, table, budget: repro.Budget) -> dict:
    """{run key: AIS result} for the finished runs of the likelihood target."""
    keys = set()
    for v in repro.target_variants("likelihood", budget):
        keys |= set(checks.select(table, v, budget, "likelihood")["run"])
    return {k: ais_test_loglik(run_folder(out, k), budget.ais_betas, budget.ais_chains) for k in sorted(keys)}


# --------------------------------------------------------------------------------------------------
# figures per target
# --------------------------------------------------------------------------------------------------
def target_rows(table, target: str, budget):
    """The rows of the finished runs of ``target`` in a sweep table (a DataFrame)."""
    import pandas as pd
    return pd.concat([checks.select(table, v, budget, target) for v in repro.target_variants(target, budget)])


def first_seed_folder(out, table, variant: dict, budget, target: str) -> Path | None:
    """The folder of the finished run with the lowest seed of one setting of ``target``."""
    rows = checks.select(table, variant, budget, target)
    if rows.empty:
        return None
    return run_folder(out, rows.sort_values("seed")["run"].iloc[0])


def figures(target: str, out: Path, table, budget, numbers: dict) -> list[tuple[str, object]]:
    """[(name, HoloViews object)] of a target (none before any of its runs finished); the name is its PNG's stem."""
    rows = target_rows(table, target, budget)
    if rows.empty:
        return []
    if target == "table1":
        return [("table1", viz.table1(numbers["cells"]))]
    if target == "fig2":
        return [("fig2", viz.fig2(rows, per_point=budget.probes_per_point))]
    if target == "fig3":
        figs = [("fig3_mse", viz.curves(rows, "val_mse", ("init", "kh_mode"), logy=True,
                                          title="Fig. 3a: validation MSE, M = 100, CD-1")),
                ("fig3_ce", viz.curves(rows, "val_ce", ("init", "kh_mode"), logy=True,
                                         title="Fig. 3b: validation cross-entropy"))]
        kh_std = repro.target_variants("fig3", budget)[1]
        folder = first_seed_folder(out, table, kh_std, budget, "fig3")
        if folder:
            figs.append(("competition", viz.competition(folder / "checkpoint.npz")))
        return figs
    if target == "fig4":
        ends = sorted({float(h) for h in rows["horizon"].dropna()})
        return [("fig4", viz.curves(rows, "val_mse", ("kh_mode", "horizon"), marks=ends, logy=True,
                                    title="Fig. 4: validation MSE for KH windows S (dotted: ends of the windows)"))]
    if target == "fig5":
        return [("fig5", viz.curves(rows, "accuracy", ("init", "kh_mode"), scale=100,
                                    title="Fig. 5: validation accuracy, cRBM M = 500, CD-1"))]
    if target == "overlap":
        items = [{"label": viz.describe({"kh_mode": m}), **numbers[m]} for m in ("off", "td", "bu") if m in numbers]
        figs = [("overlap", viz.estimates(items, "receptive-field overlap", "Receptive-field overlap after training "
                                          "(black diamonds: the paper)"))]
        for v in repro.target_variants("overlap", budget):
            folder = first_seed_folder(out, table, v, budget, "overlap")
            kept = sorted((folder / "checkpoints").glob("epoch-*.npz")) if folder else []
            if kept:
                name = viz.describe({"kh_mode": v["kh_mode"]})
                figs.append((f"mosaic_{v['kh_mode']}", viz.mosaics(kept, title=f"{name}, seed 1")))
        return figs
    if target == "shuffled":
        return [("shuffled", viz.curves(rows, "val_mse", ("init", "kh_mode", "shuffle_xi"), logy=True,
                                        title="Suppl. A: KH_TD against its shuffled-ξ control, validation MSE"))]
    if target == "likelihood":
        items = [{"label": name, **numbers[key]} for key, name in (("plain", "plain RBM"), ("kh_td", "KH_TD"))]
        return [("likelihood", viz.estimates(items, "test log-likelihood (nats)", "AIS test log-likelihood, M = 500, CD-1",
                                             reference=checks.SM2008_CD1,
                                             reference_label="Salakhutdinov & Murray 2008, CD-1 (≈ -125)"))]
    raise ValueError(target)


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------
TITLES = {"table1": "Table I: cRBM classification accuracy", "fig2": "Fig. 2: the KH contribution ξ",
          "fig3": "Fig. 3: reconstruction, plain vs KH_TD, two initialisations", "fig4": "Fig. 4: length S of the KH window",
          "fig5": "Fig. 5: overfitting of the cRBM", "overlap": "Receptive-field overlap",
          "shuffled": "Suppl. A: the shuffled-ξ control", "likelihood": "Beyond the paper: AIS test log-likelihood"}


def analyse(out: Path, target: str, budget: repro.Budget) -> tuple[dict, object]:
    """{target: {"claims": [...], "numbers": {...}}} and the table, from the sweep in ``out``."""
    table = read_table(out)
    results = {}
    for t in repro.selected(target):
        extra = likelihoods(out, table, budget) if t == "likelihood" else {}
        found, numbers = checks.check(t, table, budget, extra)
        results[t] = {"claims": found, "numbers": numbers}
    return results, table


def build(out: str | Path, target: str, budget_name: str, seeds: int | None = None,
          wall_seconds: float | None = None) -> dict:
    """Write report.html, the PNGs and results.json into ``out``; return the results."""
    import holoviews as hv
    out = Path(out)
    budget = repro.BUDGETS[budget_name]
    results, table = analyse(out, target, budget)
    plan = read_plan(out)
    runs = table.groupby("run")["status"].first()
    sections, pngs = [], []
    for t, res in results.items():
        figs = figures(t, out, table, budget, res["numbers"])
        for name, obj in figs:
            pngs.append(viz.save_png(obj, out / f"{name}.png").name)
        sections.append((t, res["claims"], [obj for _, obj in figs]))
    summary = {"target": target, "budget": budget_name, "budget_note": budget.note, "seeds_override": seeds,
               "runs": len(plan), "runs_done": int((runs == "done").sum()),
               "runs_failed": sorted(runs[runs == "failed"].index), "sweep_wall_seconds": wall_seconds,
               "pngs": pngs,
               "targets": {t: {"claims": [vars(c) for c in res["claims"]], "numbers": _json_safe(res["numbers"])}
                           for t, res in results.items()}}
    write_text_atomic(out / "results.json", json.dumps(summary, indent=1) + "\n")
    write_html(out / "report.html", summary, sections, hv)
    return summary


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _verdict_html(claim) -> str:
    color = VERDICT_COLORS[claim.verdict]
    paper = f" <i>Paper: {html.escape(claim.paper)}.</i>" if claim.paper else ""
    return (f'<li class="verdict"><b style="color:{color}">{html.escape(claim.verdict)}</b> · '
            f"{html.escape(claim.text)}. {html.escape(claim.measured)}{paper}</li>")


def write_html(path: Path, summary: dict, sections, hv) -> None:
    """One page: a header, then per target its figures (Bokeh, interactive) and its verdict lines."""
    import panel as pn
    from bokeh.resources import INLINE
    hv.renderer("bokeh")
    wall = summary["sweep_wall_seconds"]
    head = (f"<h1>khrbm repro {html.escape(summary['target'])} · budget {html.escape(summary['budget'])}</h1>"
            f"<p>{html.escape(summary['budget_note'])}.</p><p>{summary['runs_done']} of {summary['runs']} runs "
            f"finished{'; failed: ' + ', '.join(summary['runs_failed']) if summary['runs_failed'] else ''}"
            f"{f'; sweep wall time {wall / 60:.1f} min' if wall else ''}. Paper: Tambaş, Subaşı, Kabakçıoğlu 2025 "
            "(arXiv:2505.06902). Verdicts: a claim <i>holds</i> when the measured difference exceeds t·SE (Student's "
            "t, 95 %, over seeds, paired by seed where the arms share seeds), <i>does not hold</i> when the opposite "
            "does, and is <i>inconclusive at this budget</i> otherwise.</p>")
    parts = [pn.pane.HTML(head, sizing_mode="stretch_width")]
    for target, found, objs in sections:
        waiting = "" if objs else "<p>No run of this target has finished yet.</p>"
        parts.append(pn.pane.HTML(f'<h2 id="{target}">{html.escape(TITLES[target])}</h2>{waiting}<ul>'
                                  + "".join(_verdict_html(c) for c in found) + "</ul>", sizing_mode="stretch_width"))
        parts += [pn.panel(obj, backend="bokeh", linked_axes=False, widget_location="bottom") for obj in objs]
    pn.Column(*parts, width=1100).save(str(path), resources=INLINE, embed=True, title="khrbm repro report",
                                       progress=False)
    path.write_text(inline_panel_styles(path.read_text()))


def inline_panel_styles(text: str) -> str:
    """Panel's saved pages still point at a few of its stylesheets and icons on its CDN; put the local copies of
    the stylesheets inline (as Bokeh InlineStyleSheets) and drop the icon links, so the page needs no network."""
    import panel
    dist = Path(panel.__file__).parent / "dist"
    cdn = re.escape(f"https://cdn.holoviz.org/panel/{panel.__version__}/dist/")

    def inline(match):
        local = dist / match.group(2).split("?")[0]
        if not local.is_file():
            return match.group(0)
        css = json.dumps(local.read_text()).replace("</", "<\\/")
        return f'{{"type":"object","name":"InlineStyleSheet","id":"{match.group(1)}","attributes":{{"css":{css}}}}}'

    text = re.sub(r'\{"type":"object","name":"ImportedStyleSheet","id":"([^"]+)","attributes":\{"url":"' + cdn
                  + r'([^"]+)"\}\}', inline, text)
    return re.sub(r'<link rel="(?:apple-touch-)?icon"[^>]*>', "", text)
