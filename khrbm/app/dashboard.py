"""The main area's figures: building them for a snapshot's structure, rebuilding them when that structure
changes (arms, M, task, KH mode, image shape), and updating their data from every new snapshot.

The sizes (px) are chosen for one 1440×900 screen; see tests/artifacts/*.png.
"""
from __future__ import annotations

import panel as pn

from ..tiles import MAX_TILES, competition_images, probe_mosaic
from ..train.snapshot import checksum
from . import feed, lessons, views

COLORS = views.ARM_COLORS
PAST = "past"              # the series name of a past run overlaid on the curves (Recent runs)
PAST_COLOR = "#555555"
MOSAIC_FRAME = dict(frame=262)
MOSAIC_BOX = dict(height=290, width=350)
CURVE_SIZE = dict(height=205, width=345)
PROBE_SIZE = dict(frame=250)
PROBE_COLS = 8
COMP_IMG = dict(frame=128)
COMP_BARS = dict(height=290, width=360)


def _boxed(fig, css: str):
    """A Bokeh figure in a Column carrying a stable css class (for tests and styling)."""
    return pn.Column(pn.pane.Bokeh(fig, margin=0), margin=(0, 2), css_classes=[css])


def structure_key(snap) -> tuple:
    """What decides which figures exist: when it changes, the figures are rebuilt."""
    a = snap.arms[0]
    return (tuple((r.name, r.config.kh_mode, r.W.shape) for r in snap.arms), a.config.task, a.counts_mode,
            tuple(a.image_shape))


def mosaic_title(arm) -> str:
    m = arm.W.shape[1]
    extra = f" (first {MAX_TILES} of {m})" if m > MAX_TILES else f" · {m} units"
    return f"Receptive fields {views.arm_label(arm.name, arm.config)}{extra}"


def _series(names, key, with_train=True, past: str = "") -> list[dict]:
    """The curves of one metric: per arm its validation (solid) and, if asked, training (dashed) values; and
    with ``past`` (its label) a past run's validation values (dotted grey)."""
    out = []
    for name in names:
        c = COLORS.get(name, "#333333")
        out.append(dict(key=f"{name}:val_{key}" if with_train else f"{name}:{key}",
                        label=f"{name} validation" if with_train else name, color=c))
        if with_train:
            out.append(dict(key=f"{name}:train_{key}", label=f"{name} train", color=c, dash="dashed"))
    if past:
        out.append(dict(key=f"{PAST}:val_{key}" if with_train else f"{PAST}:{key}", label=past, color=PAST_COLOR,
                        dash="dotted"))
    return out


class Dashboard:
    """The panes of the main area and the views drawn in them (``self.v``: name -> view)."""

    def __init__(self):
        bp = dict(margin=(0, 2))
        self.p_mosaic_a = pn.pane.Bokeh(None, css_classes=["khrbm-mosaic", "khrbm-mosaic-a"], **bp)
        self.p_mosaic_b = pn.pane.Bokeh(None, css_classes=["khrbm-mosaic", "khrbm-mosaic-b"], **bp)
        self.p_comp = pn.Row(margin=0, css_classes=["khrbm-competition"])
        self.p_mse = pn.pane.Bokeh(None, css_classes=["khrbm-mse"], **bp)
        self.p_ce = pn.pane.Bokeh(None, css_classes=["khrbm-ce"], **bp)
        self.p_third = pn.pane.Bokeh(None, css_classes=["khrbm-third"], **bp)
        self.p_ratio = pn.pane.Bokeh(None, css_classes=["khrbm-fig2"], **bp)
        self.p_cos = pn.pane.Bokeh(None, css_classes=["khrbm-cos"], **bp)
        self.p_probe = pn.pane.Bokeh(None, css_classes=["khrbm-probe"], **bp)
        self.v: dict = {}
        self.structure = None
        self.past: tuple | None = None     # (label, history columns) of a past run overlaid on the curves

    def overlay(self, label: str | None, history: dict | None = None):
        """Draw a past run's curves (``history``: columns as ``ArmSnapshot.history``) on the current ones, or
        none (``label`` None); the figures are rebuilt at the next redraw."""
        self.past = (label, history) if label is not None else None
        self.structure = None

    def rows(self) -> list:
        """The three rows of figures, in screen order."""
        return [pn.Row(self.p_mosaic_a, self.p_mosaic_b, self.p_comp, margin=0),
                pn.Row(self.p_mse, self.p_ce, self.p_third, margin=0),
                pn.Row(self.p_ratio, self.p_cos, self.p_probe, margin=0)]

    def needs_rebuild(self, snap) -> bool:
        return structure_key(snap) != self.structure

    # --- building --------------------------------------------------------------------------------------
    def rebuild(self, snap):
        """(Re)create every figure for the structure of ``snap``."""
        self.structure = structure_key(snap)
        v: dict = {}
        self._build_mosaics(snap, v)
        self._build_curves(snap, v)
        self._build_probe(snap, v)
        self._build_competition(snap, v)
        self.v = v

    def _build_mosaics(self, snap, v):
        shape = tuple(snap.arms[0].image_shape)
        for idx, pane in ((0, self.p_mosaic_a), (1, self.p_mosaic_b)):
            if idx < len(snap.arms):
                arm = snap.arms[idx]
                v[f"mosaic{idx}"] = views.MosaicView(mosaic_title(arm), arm.W.shape[1], shape, **MOSAIC_FRAME)
                pane.object = v[f"mosaic{idx}"].fig
            else:
                pane.object = views.placeholder_figure(
                    "Receptive fields B · plain RBM",
                    ["Compare is off.", "Switch it on to train the plain RBM (B)", "beside your settings (A)."],
                    **MOSAIC_BOX)

    def _build_curves(self, snap, v):
        a = snap.arms[0]
        names = [arm.name for arm in snap.arms]
        past = self.past[0] if self.past else ""
        also = f" · grey: {past}" if past else ""
        v["mse"] = views.CurvesView("Reconstruction error" + also, "epoch", "MSE per pixel (log)",
                                    _series(names, "mse", past=past), log_y=True, **CURVE_SIZE)
        v["ce"] = views.CurvesView("Cross-entropy" + also, "epoch", "cross-entropy per pixel (nats, log)",
                                   _series(names, "ce", past=past), log_y=True, **CURVE_SIZE)
        if a.config.task == "classification":
            v["third"] = views.CurvesView("Classification accuracy (validation)", "epoch", "accuracy (fraction)",
                                          _series(names, "accuracy", with_train=False, past=past), **CURVE_SIZE)
        else:
            v["third"] = views.CurvesView("Receptive-field overlap", "step (minibatches)",
                                          "mean max cosine to another unit",
                                          _series(names, "overlap", with_train=False, past=past), **CURVE_SIZE)
        v["ratio"] = views.CurvesView(
            "Fig. 2: |ξ|/|∇L| (A) and ε(t)", "step (minibatches)", "|ξ| / |∇L|",
            [dict(key="ratio", label="|ξ|/|∇L|", color=COLORS["A"]),
             dict(key="eps", label="ε", color="#666666", dash="dashed", axis="right")],
            ylabel_right="ε (KH step size)", now_point="#666666", **CURVE_SIZE)
        v["cos"] = views.CurvesView("Fig. 2: cosine between ξ and ∇L (A)", "step (minibatches)", "cos(ξ, ∇L)",
                                    [dict(key="cos", label="cos", color=COLORS["A"])], **CURVE_SIZE)
        self.p_mse.object, self.p_ce.object, self.p_third.object = v["mse"].fig, v["ce"].fig, v["third"].fig
        self.p_ratio.object, self.p_cos.object = v["ratio"].fig, v["cos"].fig

    def _build_probe(self, snap, v):
        a = snap.arms[0]
        shape = tuple(a.image_shape)
        h = shape[0]
        rows = ["input"] + [f"recon {arm.name}" for arm in snap.arms]
        H = len(rows) * (h + 1) - 1
        ticks = [(H - i * (h + 1) - h / 2, lab) for i, lab in enumerate(rows)]
        n_cols = min(PROBE_COLS, len(a.probe_input)) or 1
        v["probe"] = views.ImageView("Input vs reconstruction P(v|h)", (H, n_cols * (shape[1] + 1) - 1), "grey",
                                     "P(pixel on)", row_labels=ticks, hover="P(on)", **PROBE_SIZE)
        self.p_probe.object = v["probe"].fig

    def _build_competition(self, snap, v):
        a = snap.arms[0]
        shape = tuple(a.image_shape)
        if a.counts_mode == "td":
            v["wins"] = views.ImageView("TD: pixels that win", shape, "counts", "wins", hover="wins", **COMP_IMG)
            v["inh"] = views.ImageView("TD: pixels inhibited", shape, "counts", "inhibited", hover="inhibited",
                                       **COMP_IMG)
            self.p_comp[:] = [_boxed(v["wins"].fig, "khrbm-comp-wins"), _boxed(v["inh"].fig, "khrbm-comp-inhibited")]
        elif a.counts_mode == "bu":
            v["bars"] = views.BarsView("BU: hidden units that win / are inhibited", len(a.win_counts), COLORS["A"],
                                       **COMP_BARS)
            self.p_comp[:] = [_boxed(v["bars"].fig, "khrbm-comp-bars")]
        else:
            self.p_comp[:] = [_boxed(views.placeholder_figure(
                "Competition: who wins, who is inhibited",
                ["KH is off in arm A: no competition.", "KH mode TD: visible pixels compete;",
                 "BU: hidden units compete."], **COMP_BARS), "khrbm-comp-off")]

    # --- updating --------------------------------------------------------------------------------------
    def update(self, snap, heavy: bool):
        """New data into the figures; the mosaics and the probe images only when ``heavy``."""
        if heavy:
            self._update_images(snap)
        self._update_curves(snap)
        self._update_competition(snap)

    def _update_images(self, snap):
        arms, a = snap.arms, snap.arms[0]
        for idx, arm in enumerate(arms[:2]):
            view = self.v.get(f"mosaic{idx}")
            if view is not None:
                bu = arm.counts_mode == "bu"
                view.update(arm.W, arm.n_pixels, arm.win_counts if bu else None,
                            arm.inhibit_counts if bu else None, title=mosaic_title(arm), key=arm.checksum or None)
        rows = [a.probe_input] + [r.probe_recon for r in arms]
        key = ("probe", checksum(*rows), tuple(r.shape for r in rows), tuple(a.image_shape))   # alike in any tab
        self.v["probe"].update(feed.SHARED.get(key, lambda: probe_mosaic(rows, a.image_shape, max_cols=PROBE_COLS)))

    def _update_curves(self, snap):
        v, a = self.v, snap.arms[0]
        live = feed.SHARED.get(feed.frame_key(snap, "curves"), lambda: _curve_arrays(snap))
        data = dict(live["data"])
        if self.past:
            data.update(_history_series(PAST, self.past[1]))
        m_epoch, m_step, t_epoch, t_step = live["m_epoch"], live["m_step"], live["t_epoch"], live["t_step"]
        v["mse"].update(data, m_epoch, timeline=t_epoch)
        v["ce"].update(data, m_epoch, timeline=t_epoch)
        if a.config.task != "classification":
            v["third"].update(data, m_step, timeline=t_step)
        else:
            v["third"].update(data, m_epoch, timeline=t_epoch)
        if a.config.probe_every:
            t = f"Fig. 2: |ξ|/|∇L| (A) · ε(t) = {a.eps:.3g} now"
        else:
            t = f"Fig. 2: ξ probe off (Diagnostics) · ε = {a.eps:.3g}"
        v["ratio"].update({"ratio": live["ratio"], "eps": live["eps"]}, m_step, now=(a.step, a.eps), title=t,
                          timeline=t_step)
        v["cos"].update({"cos": live["cos"]}, m_step, timeline=t_step)

    def _update_competition(self, snap):
        v, a = self.v, snap.arms[0]
        if "wins" in v:
            key = feed.frame_key(snap, "competition")
            w, i = feed.SHARED.get(key, lambda: competition_images(a.win_counts, a.inhibit_counts, a.n_pixels,
                                                                   a.image_shape))
            v["wins"].update(w, key=key)
            v["inh"].update(i, key=key)
        elif "bars" in v:
            v["bars"].update(a.win_counts, a.inhibit_counts)


def _history_series(name: str, history: dict) -> dict:
    """The curves' (x, y) arrays of one arm's (or a past run's) ``history``, by series key."""
    data = {f"{name}:{key}": views.history_arrays(history, "epoch", key)
            for key in ("val_mse", "train_mse", "val_ce", "train_ce", "accuracy")}
    data[f"{name}:overlap"] = views.history_arrays(history, "step", "overlap")
    return data


def _curve_arrays(snap) -> dict:
    """What the curves of ``snap`` are drawn from (alike in every tab drawing it): the series' arrays, the change
    markers and the lesson's timeline against epoch and step, and the Fig. 2 series of arm A."""
    a = snap.arms[0]
    data = {}
    for arm in snap.arms:
        data.update(_history_series(arm.name, arm.history))
    return dict(data=data, m_epoch=views.change_markers(snap.changes, "epoch"),
                m_step=views.change_markers(snap.changes, "step"),
                t_epoch=lessons.timeline(snap.lesson, "epoch", a.step),
                t_step=lessons.timeline(snap.lesson, "step", a.step),
                ratio=views.history_arrays(a.xi or {}, "step", "ratio"),
                eps=views.history_arrays(a.history, "step", "eps"),      # ε now: the dot at (step, ε)
                cos=views.history_arrays(a.xi or {}, "step", "cosine"))
