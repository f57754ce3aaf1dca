"""HoloViews figures of runs, sweep tables and checkpoints, for reports and notebooks.

Every function returns a HoloViews object that renders with the Bokeh backend (interactive, in Jupyter and in
``report.html``) and the matplotlib backend (the report's PNGs). The live app does not use this module: it
updates Bokeh figures in place, which is 10-100x faster per redraw; the array helpers both share are in
:mod:`khrbm.tiles`.

Inputs: a sweep table is a pandas DataFrame (:func:`khrbm.experiments.sweep.read_table`) with a row per run and
evaluated epoch; a checkpoint is a ``.npz`` written by :meth:`khrbm.train.run.Run.save`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401 - registers the options of both backends; renders nothing
import holoviews.plotting.mpl  # noqa: F401
import numpy as np

from . import tiles
from .config import RunConfig

IMAGE_SHAPE = (28, 28)
MODE_NAMES = {"off": "plain RBM", "td": "KH_TD", "bu": "KH_BU"}
MODE_COLORS = {"off": "#0072B2", "td": "#D55E00", "bu": "#009E73", "shuffled": "#CC79A7"}   # Okabe-Ito
CYCLE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
METRIC_LABELS = {"val_mse": "validation MSE per pixel (Eq. 11)", "val_ce": "validation cross-entropy per pixel (Eq. 12)",
                 "accuracy": "validation accuracy", "overlap": "receptive-field overlap", "train_mse": "training MSE per pixel",
                 "eps": "KH step size ε"}
BOKEH_SIZE = {"width": 520, "height": 300}


# --------------------------------------------------------------------------------------------------
# labels and statistics
# --------------------------------------------------------------------------------------------------
def describe(values: dict) -> str:
    """A short label of a group of runs from its config fields, e.g. ``KH_TD · std · CD-10 · S=50``."""
    parts = []
    for name, v in values.items():
        if name == "kh_mode":
            parts.append(MODE_NAMES.get(v, v) + (" (shuffled ξ)" if values.get("shuffle_xi") is True else ""))
        elif name == "init":
            parts.append({"lecun": "LeCun", "std": "std"}.get(v, v) + " init")
        elif name == "k":
            parts.append(f"CD-{int(v)}")
        elif name == "horizon":
            parts.append("S = all epochs" if v is None or (isinstance(v, float) and math.isnan(v)) else f"S = {v:g}")
        elif name == "n_hidden":
            parts.append(f"M = {int(v)}")
        elif name != "shuffle_xi":
            parts.append(f"{name} = {v}")
    return " · ".join(parts)


def color_of(values: dict, i: int) -> str:
    if set(values) <= {"kh_mode", "shuffle_xi"} and "kh_mode" in values:
        return MODE_COLORS["shuffled" if values.get("shuffle_xi") is True else values["kh_mode"]]
    return CYCLE[i % len(CYCLE)]


def mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error (sample std / √n; nan for n < 2) and n of the finite values."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan, n


def _groups(table, by: Sequence[str]):
    """(values dict, sub-table) per distinct combination of the ``by`` columns (missing values grouped too)."""
    table = table[np.isfinite(table["epoch"].astype(float))]
    keys = table[list(by)].astype(object).where(table[list(by)].notna(), None)
    for combo in dict.fromkeys(map(tuple, keys.values.tolist())):
        mask = np.all([(keys[c].values == v) if v is not None else keys[c].isna().values
                       for c, v in zip(by, combo)], axis=0)
        yield dict(zip(by, combo)), table[mask]


def _both(obj, bokeh: dict, matplotlib: dict):
    """``obj`` with options per element type for each backend ({"Curve": {...}, ...}; no hv.extension needed)."""
    return obj.opts(bokeh, backend="bokeh").opts(matplotlib, backend="matplotlib")


def _titled(obj, title: str):
    return obj.opts(title=title, backend="bokeh").opts(title=title, backend="matplotlib") if title else obj


def _sized(obj, legend: bool = True):
    return _both(obj, {"Curve": {**BOKEH_SIZE, "tools": ["hover"], "line_width": 2},
                       "Spread": {"line_alpha": 0, "fill_alpha": 0.22},
                       "Overlay": {**BOKEH_SIZE, "legend_position": "top_right", "show_legend": legend}},
                 {"Curve": {"linewidth": 2}, "Spread": {"alpha": 0.22, "linewidth": 0},
                  "Overlay": {"fig_size": 250, "aspect": 1.3, "legend_position": "right", "show_legend": legend}})


# --------------------------------------------------------------------------------------------------
# curves over epochs
# --------------------------------------------------------------------------------------------------
def curves(table, y: str = "val_mse", by: Sequence[str] = ("kh_mode",), x: str = "epoch", title: str = "",
           scale: float = 1.0, marks: Iterable[float] = (), logy: bool = False) -> hv.Overlay:
    """``y`` against ``x``: per group of runs (the ``by`` config fields) the mean over the runs (seeds) and a
    band of ± one standard error. ``scale`` multiplies ``y`` (e.g. 100 for accuracy in %); ``marks`` are
    dotted vertical lines (e.g. Fig. 4's ends of the KH windows); ``logy`` draws y on a log scale."""
    layers = []
    for i, (values, sub) in enumerate(_groups(table, by)):
        stats = sub.groupby(x)[y].agg(lambda s: mean_se(s * scale))
        xs = stats.index.to_numpy(np.float64)
        mean = np.array([m for m, _, _ in stats])
        se = np.nan_to_num(np.array([s for _, s, _ in stats]))
        n = max(n for _, _, n in stats) if len(stats) else 0
        label = f"{describe(values)} (n = {n})"
        color = color_of(values, i)
        ylabel = METRIC_LABELS.get(y, y) + (" (%)" if scale == 100 else "")
        layers.append(hv.Spread((xs, mean, se), x, [hv.Dimension(y, label=ylabel), "se"], label=label)
                      .opts(color=color).opts(color=color, backend="matplotlib"))
        layers.append(hv.Curve((xs, mean), x, hv.Dimension(y, label=ylabel), label=label)
                      .opts(color=color).opts(color=color, backend="matplotlib"))
    layers += [hv.VLine(float(v)).opts(color="#555555", line_dash="dotted", backend="bokeh")
               .opts(color="#555555", linestyle=":", backend="matplotlib") for v in marks]
    overlay = _sized(hv.Overlay(layers))
    if logy:
        overlay = _both(overlay, {"Overlay": {"logy": True}}, {"Overlay": {"logy": True}})
    return _titled(overlay, title)


# --------------------------------------------------------------------------------------------------
# Fig. 2: the KH contribution ξ
# --------------------------------------------------------------------------------------------------
def fig2(table, per_point: int = 20, title: str = "Fig. 2: the KH contribution ξ against the RBM gradient") -> hv.Layout:
    """Magnitude ratio |ξ|/|∇L| (red) and cosine ∇L·ξ/(|∇L||ξ|) (black) against epoch, from the table's per-epoch
    ξ-probe means (``xi_ratio``, ``xi_cosine``, ``xi_probes``). Consecutive epochs are pooled until a point holds
    ``per_point`` probes (the paper averages 20 steps per point), then averaged over runs with ± one SE."""
    rows = table[(table["xi_probes"].fillna(0) > 0)]
    points = []
    for _, run in rows.groupby("run"):
        run = run.sort_values("epoch")
        acc, members = 0, []
        for _, r in run.iterrows():
            members.append(r)
            acc += int(r["xi_probes"])
            if acc >= per_point:
                w = np.array([m["xi_probes"] for m in members], np.float64)
                points.append({"run": r["run"], "epoch": float(np.average([m["epoch"] for m in members], weights=w)),
                               "ratio": float(np.average([m["xi_ratio"] for m in members], weights=w)),
                               "cosine": weighted_mean([m["xi_cosine"] for m in members], w)})
                acc, members = 0, []
    import pandas as pd
    pts = pd.DataFrame(points, columns=["run", "epoch", "ratio", "cosine"])
    pts["point"] = pts.groupby("run").cumcount()
    panels = []
    for name, color, label in (("ratio", "#D55E00", "|ξ| / |∇L|"), ("cosine", "#000000", "cosine(∇L, ξ)")):
        stats = pts.groupby("point").agg(epoch=("epoch", "mean"), **{name: (name, lambda s: mean_se(s))})
        xs = stats["epoch"].to_numpy(np.float64)
        mean = np.array([m for m, _, _ in stats[name]])
        se = np.nan_to_num(np.array([s for _, s, _ in stats[name]]))
        panel = (hv.Spread((xs, mean, se), "epoch", [hv.Dimension(name, label=label), "se"])
                 * hv.Curve((xs, mean), "epoch", hv.Dimension(name, label=label))
                 * hv.Scatter((xs, mean), "epoch", hv.Dimension(name, label=label)))
        panel = _both(panel, {t: {"color": color} for t in ("Spread", "Curve", "Scatter")},
                      {t: {"color": color} for t in ("Spread", "Curve", "Scatter")})
        if name == "cosine":
            panel = panel * hv.HLine(0.0).opts(color="#888888", line_dash="dashed", backend="bokeh").opts(
                color="#888888", linestyle="--", backend="matplotlib")
        panels.append(_titled(_sized(panel, legend=False), label))
    return _titled(hv.Layout(panels), title).cols(2)


def weighted_mean(values, weights) -> float:
    """The weighted mean of the finite values (nan if there are none)."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    return float(np.average(v[ok], weights=np.asarray(weights)[ok])) if ok.any() else math.nan


# --------------------------------------------------------------------------------------------------
# tables beside the paper
# --------------------------------------------------------------------------------------------------
def table1(cells: list[dict], title: str = "Table I: max validation accuracy (%) of the cRBM; T: seconds per "
                                          "60,000-image training epoch (here: one thread)") -> hv.Table:
    """Table I as measured beside the paper: ``cells`` are dicts with keys method, M, init, ours (mean), se, n,
    paper, t_epoch (measured seconds per 60,000-image epoch, training only, one thread) and paper_t; a row each."""
    def fmt(c):
        return "–" if not c["n"] else (f"{c['ours']:.2f} ± {c['se']:.2f}" if c["n"] > 1 else f"{c['ours']:.2f}")
    def seconds(t):
        return "–" if not np.isfinite(t) else f"{t:.1f}"
    data = {"method": [c["method"] for c in cells], "M": [int(c["M"]) for c in cells],
            "init": [c["init"] for c in cells], "accuracy (mean ± SE)": [fmt(c) for c in cells],
            "seeds": [int(c["n"]) for c in cells], "paper": [f"{c['paper']:.1f}" for c in cells],
            "T (s)": [seconds(c["t_epoch"]) for c in cells], "paper T (s)": [f"{c['paper_t']:.1f}" for c in cells]}
    vdims = ["accuracy (mean ± SE)", "seeds", "paper", "T (s)", "paper T (s)"]
    table = hv.Table(data, ["method", "M", "init"], vdims)
    return _titled(_both(table, {"Table": {"width": 820, "height": 40 + 26 * len(cells)}},
                         {"Table": {"fig_size": 260, "max_rows": 100}}), title)


def estimates(items: list[dict], ylabel: str, title: str, reference: float | None = None,
              reference_label: str = "") -> hv.Overlay:
    """Mean ± SE per group (dicts with label, mean, se, n, and optionally paper) as points with error bars; the
    paper's value (if any) as a black diamond beside each, and an optional reference line."""
    labels = [f"{it['label']} (n = {it['n']})" for it in items]
    means = [it["mean"] for it in items]
    ses = [0.0 if not np.isfinite(it["se"]) else it["se"] for it in items]
    layers = [hv.ErrorBars((labels, means, ses), "group", [ylabel, "se"]),
              hv.Scatter((labels, means), "group", ylabel, label="measured").opts(color="#D55E00", size=9, backend="bokeh")
              .opts(color="#D55E00", s=60, backend="matplotlib")]
    paper = [(lab, it["paper"]) for lab, it in zip(labels, items) if it.get("paper") is not None]
    if paper:
        layers.append(hv.Scatter(paper, "group", ylabel, label="paper").opts(
            color="black", marker="diamond", size=9, backend="bokeh").opts(color="black", marker="D", s=50,
                                                                             backend="matplotlib"))
    if reference is not None:
        layers.append(hv.HLine(reference, label=reference_label).opts(color="#555555", line_dash="dashed",
                                                                      backend="bokeh")
                      .opts(color="#555555", linestyle="--", backend="matplotlib"))
    return _both(hv.Overlay(layers), {"Overlay": {"width": 560, "height": 300, "title": title,
                                                  "legend_position": "bottom_right"}, "ErrorBars": {"xrotation": 12}},
                 {"Overlay": {"fig_size": 220, "aspect": 1.7, "title": title}})


# --------------------------------------------------------------------------------------------------
# weights and competition, from checkpoints
# --------------------------------------------------------------------------------------------------
def _checkpoint(path):
    from .train.run import HISTORY_KEYS, read_checkpoint
    from .train.checkpoint import history_rows
    arrays = read_checkpoint(path)
    history = history_rows(arrays["history"], HISTORY_KEYS)
    return arrays, RunConfig.from_json(str(arrays["config_json"])), (history[-1]["epoch"] if history else 0.0)


def mosaic(W: np.ndarray, n_pixels: int | None = None, image_shape=IMAGE_SHAPE, title: str = "") -> hv.Image:
    """Receptive fields ``W[:n_pixels, j]`` of the hidden units as a near-square mosaic, each tile scaled by its
    own max |w| (at most ``tiles.MAX_TILES`` units)."""
    n_pixels = n_pixels or int(np.prod(image_shape))
    rf = tiles.receptive_fields(W, n_pixels, image_shape)
    h, w = rf["mosaic"].shape
    shown = f"{rf['shown']} of {rf['n_units']} units" if rf["shown"] < rf["n_units"] else f"{rf['n_units']} units"
    image = hv.Image(rf["mosaic"], bounds=(0, 0, w, h), kdims=["x", "y"], vdims=[hv.Dimension("w", label="w / max|w|")],
                    label=title or f"receptive fields ({shown})")
    common = {"cmap": "RdBu_r", "clim": (-1, 1), "xaxis": None, "yaxis": None, "colorbar": True,
              "clipping_colors": {"NaN": "#f2f2f2"}}
    return _both(image, {"Image": {**common, "width": 400, "height": max(100, round(300 * h / w) + 50)}},
                 {"Image": {**common, "fig_size": 150}})


def mosaics(checkpoints: Iterable, image_shape=IMAGE_SHAPE, title: str = "") -> hv.HoloMap:
    """A mosaic per checkpoint (paths of ``.npz`` files of one run, e.g. ``checkpoints/epoch-*.npz``), with an
    epoch slider."""
    frames = {}
    for path in checkpoints:
        arrays, _cfg, epoch = _checkpoint(path)
        frames[round(float(epoch), 3)] = mosaic(arrays["W"], int(np.prod(image_shape)), image_shape, title)
    return hv.HoloMap(dict(sorted(frames.items())), kdims=["epoch"])


def competition(checkpoint, image_shape=IMAGE_SHAPE, title: str = "") -> hv.Layout:
    """Who won the KH competition: TD mode, per visible unit, how often it got the largest current (+1) and how
    often it was the inhibited runner-up (-Δ), as images; BU mode, the same per hidden unit, as bars."""
    arrays, cfg, epoch = _checkpoint(checkpoint)
    mode = cfg.kh_mode if cfg.kh_mode != "off" else "td"
    wins, inhibited = arrays[f"win_{mode}"], arrays[f"inhibit_{mode}"]
    head = title or f"KH_{mode.upper()} competition after {epoch:g} epochs"
    if mode == "td":
        win_img, inh_img = tiles.competition_images(wins, inhibited, int(np.prod(image_shape)), image_shape)
        h, w = image_shape
        common = {"cmap": "viridis", "colorbar": True, "xaxis": None, "yaxis": None}
        panels = [_both(hv.Image(img, bounds=(0, 0, w, h), vdims=[hv.Dimension("count")], label=lab),
                        {"Image": {**common, "width": 320, "height": 270}}, {"Image": common})
                  for img, lab in ((win_img, "wins (+1) per pixel"), (inh_img, "inhibited (-Δ) per pixel"))]
    else:
        units = np.arange(len(wins))
        panels = [hv.Bars((units, wins), "hidden unit", "count", label="wins (+1)"),
                  hv.Bars((units, inhibited), "hidden unit", "count", label="inhibited (-Δ)")]
    return _titled(hv.Layout(panels), head).cols(2)


def save_png(obj, path: str | Path) -> Path:
    """``obj`` as a PNG through the matplotlib backend (the last frame of a HoloMap)."""
    if isinstance(obj, hv.HoloMap):
        obj = obj.last
    hv.save(obj, str(path), backend="matplotlib", fmt="png")
    return Path(path)
