"""Pure view functions: arrays / snapshot pieces -> numbers and Bokeh figures.

Nothing here holds Panel state or talks to a Trainer; ``khrbm/app/lab.py`` builds each figure once and, on
every new ``Trainer.snapshot``, sends only what changed (feed.py), so a redraw sends just new data to the
browser. (Plain Bokeh rather than HoloViews DynamicMaps: measured ~7 ms per tick for all views against
~60 ms per plot with ``hv.streams.Pipe``, on a machine that is training at the same time.)
The array helpers (``change_markers``, ``status_text``, …) are what ``tests/test_views.py`` checks value
by value; the mosaic helpers live in :mod:`khrbm.tiles`, shared with the HoloViews figures of ``khrbm.viz``.
"""
from __future__ import annotations

import html
import math
from typing import Iterable, Sequence

import numpy as np

from ..core.metrics import BAR_MATCH, bar_selectivity
from ..tiles import MAX_TILES, grid_shape, receptive_fields, tile_boxes
from ..train.snapshot import checksum
from . import feed

ARM_COLORS = {"A": "#D55E00", "B": "#0072B2"}   # Okabe-Ito vermillion / blue: one colour per arm
WEIGHT_CMAP = "RdBu_r"                          # diverging, colour-blind safe
COUNT_CMAP = "viridis"                          # sequential, colour-blind safe
MARKER_COLOR = "#555555"
LESSON_COLOR = "#CC79A7"                        # Okabe-Ito reddish purple: a lesson's events on the curves
LESSON_TEXT = "#8E3B74"
TIMELINE_RIGHT = 0.6                            # a lesson's labels right of this share of the x axis: to the left
TIMELINE_ROW = 0.1                              # every other label one row lower (share of the frame's height)

MODE_LABEL = {"off": "plain RBM", "td": "KH_TD", "bu": "KH_BU"}


# --------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------
def change_markers(changes: Iterable, x: str = "epoch") -> np.ndarray:
    """Sorted distinct positions (``x`` = 'epoch' or 'step') of the setting changes.

    One change applied to both arms is logged once per arm; it is one marker. Two changes at the
    same step (two fields) are also one marker position.
    """
    pos = sorted({float(getattr(c, x)) for c in changes})
    return np.asarray(pos, dtype=np.float64)


def count_changes(changes: Iterable) -> int:
    """Distinct changes a person made: same (step, field, new value) in both arms counts once."""
    return len({(c.step, c.field, repr(c.new)) for c in changes})


def describe_change(c) -> str:
    return f"step {c.step:,} (epoch {c.epoch:.2f}): {c.field} {c.old} → {c.new}"


def arm_label(name: str, config) -> str:
    mode = MODE_LABEL.get(getattr(config, "kh_mode", "off"), "?")
    return f"{name} · {mode}"


def fmt_rate(x: float) -> str:
    if not x or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}"


def status_text(snapshot) -> str:
    """One line: state · epoch · samples/s · ε (for the KH arm) · step."""
    arms = snapshot.arms
    a = arms[0] if arms else None
    parts = [snapshot.state]
    if a is not None:
        parts.append(f"epoch {a.epoch:.2f} / {a.config.epochs}")
        parts.append(f"step {a.step:,}")
    if snapshot.state == "running" or (snapshot.samples_per_s or 0) > 0:
        parts.append(f"{fmt_rate(snapshot.samples_per_s)} samples/s")
    if a is not None and a.config.kh_mode != "off":
        parts.append(f"ε={a.eps:.3g}")
    return " · ".join(parts)


def bars_line(snapshot) -> str:
    """What the bars preset promises, measured (metrics.bar_selectivity): per arm, the share of hidden units
    whose receptive field matches one bar, as a line for the class; '' unless the data are the bars."""
    arms = snapshot.arms
    if not arms or arms[0].config.dataset != "bars":
        return ""
    parts, shares = [], []
    for arm in arms:
        sel = bar_selectivity(arm.W, arm.n_pixels)
        m, n_bars = arm.W.shape[1], 2 * int(round(arm.n_pixels ** 0.5))
        shares.append(f"{sel['share']:.3f}")
        parts.append(f"<b>{arm_label(arm.name, arm.config)}: {sel['share']:.0%}</b> ({round(sel['share'] * m)} of "
                     f"{m} units; {sel['bars']} of the {n_bars} bars have one)")
    return (f"<div class='khrbm-promise' data-shares='{','.join(shares)}'>Units that own one bar (receptive "
            f"field matches a single bar, cosine ≥ {BAR_MATCH:g}): {' · '.join(parts)}</div>")


def status_html(snapshot, busy: str = "", loaded_msg: str = "", mosaic_version: int = -1) -> str:
    """The status line (``status_text`` plus what is going on, the arms' legend and the change count) and a
    hint below it (``loaded_msg``, what was loaded, until the run goes on; else the dataset's notice), and for
    the bars the share of units that own one bar (``bars_line``). Its numbers are also data attributes, which
    the browser tests read. ``snapshot`` None: the lab is starting, or ``busy`` says why not (e.g. "queued")."""
    if snapshot is None:
        why = busy or "starting"
        return (f"<div class='khrbm-statusline' data-state='{why}' data-step='0' data-changes='0'>"
                f"<span class='khrbm-state state-compiling'>{why}…</span></div>")
    a = snapshot.arms[0]
    n_changes = count_changes(snapshot.changes)
    state, line = snapshot.state, status_text(snapshot)
    extra = ""
    msg = (snapshot.message or "").strip()
    if state == "compiling":
        extra = f" — {msg or 'preparing'}…"
    elif msg and msg not in ("ready", "running") and not msg.startswith(("paused at", "finished")):
        extra = f" — {html.escape(msg)}"
    elif state == "finished":
        extra = " — raise epochs to train on"
    if busy:
        extra += f" — {html.escape(busy)}"
    wsig = getattr(a, "checksum", 0) or f"{float(np.abs(np.asarray(a.W, dtype=np.float64)).sum()):.9g}"
    legend = " &nbsp; ".join(f"<span class='khrbm-chip' style='background:{ARM_COLORS.get(arm.name, '#333')}'>"
                             f"</span>{arm_label(arm.name, arm.config)}" for arm in snapshot.arms)
    changes_title = ("&#10;".join(html.escape(describe_change(c), quote=True) for c in snapshot.changes[-12:])
                     or "no changes yet")
    hint = ""
    if state in ("idle", "paused") and loaded_msg:
        hint = f"<div class='khrbm-hint'>{html.escape(loaded_msg)}</div>"
    elif snapshot.notice:
        hint = f"<div class='khrbm-hint'>{html.escape(snapshot.notice)}</div>"
    head, _, rest = line.partition(" · ")
    return (f"<div class='khrbm-statusline' data-state='{state}' data-step='{a.step}' "
            f"data-version='{snapshot.version}' data-changes='{n_changes}' data-wsig='{wsig}' "
            f"data-mosaic-version='{mosaic_version}' data-arms='{len(snapshot.arms)}'>"
            f"<span class='khrbm-state state-{state}'>{head}</span>"
            f"<span class='khrbm-line'>{rest}{extra}</span>"
            f"<span class='khrbm-legend'>{legend} · <i>solid</i> validation, <i>dashed</i> train · "
            f"<span class='khrbm-changes' title='{changes_title}'>┆ setting changes: {n_changes}</span>"
            f"</span></div>{hint}{bars_line(snapshot)}")


def history_arrays(history: dict, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from a history dict of 1-D arrays, dropping non-finite y."""
    if not history or y not in history or x not in history:
        return np.zeros(0), np.zeros(0)
    xs = np.asarray(history[x], dtype=np.float64)
    ys = np.asarray(history[y], dtype=np.float64)
    n = min(len(xs), len(ys))
    xs, ys = xs[:n], ys[:n]
    ok = np.isfinite(ys) & np.isfinite(xs)
    return xs[ok], ys[ok]


def history_csv(arms) -> str:
    """Metric history of every arm as CSV (one row per evaluation, column 'arm' first)."""
    keys = ["step", "epoch", "eps", "val_mse", "val_ce", "train_mse", "train_ce", "accuracy", "overlap"]
    lines = ["arm,kh_mode," + ",".join(keys)]
    for arm in arms:
        hist = arm.history or {}
        n = max((len(hist.get(k, ())) for k in keys), default=0)
        for i in range(n):
            vals = []
            for k in keys:
                col = hist.get(k)
                v = col[i] if col is not None and i < len(col) else float("nan")
                vals.append(str(int(v)) if k == "step" else repr(float(v)))
            lines.append(f"{arm.name},{arm.config.kh_mode}," + ",".join(vals))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Bokeh views: each builds its figure once (per structure: arms, M, task, KH mode) and afterwards sends
# only what changed (feed.py: curve increments, 8-bit images), so a redraw sends little, not a new plot.
# (HoloViews DynamicMaps were measured here at ~60 ms of server time per plot update; these take a few ms.)
# --------------------------------------------------------------------------------------------
FONT = {"title": "12.5px", "axis": "11.5px", "ticks": "10.5px"}


def frame_size(h: int, w: int, frame: int) -> dict:
    """frame_width / frame_height keeping one data unit square, the longer side ``frame`` pixels."""
    h, w = max(int(h), 1), max(int(w), 1)
    if w >= h:
        return {"frame_width": frame, "frame_height": max(20, round(frame * h / w))}
    return {"frame_width": max(20, round(frame * w / h)), "frame_height": frame}


def _palettes():
    from bokeh.palettes import Greys256, RdBu11, Viridis256, interp_palette
    return {"weights": interp_palette(RdBu11, 255), "counts": Viridis256, "grey": Greys256[::-1]}


def _figure(title: str, **kw):
    from bokeh.plotting import figure
    fig = figure(title=title, toolbar_location=None, tools="", **kw)
    fig.title.text_font_size = FONT["title"]
    fig.title.text_font_style = "bold"
    fig.min_border_left = fig.min_border_right = 4
    fig.background_fill_color = "#ffffff"
    fig.outline_line_color = "#cccccc"
    for ax in (*fig.xaxis, *fig.yaxis):
        ax.axis_label_text_font_size = FONT["axis"]
        ax.axis_label_text_font_style = "normal"
        ax.major_label_text_font_size = FONT["ticks"]
    return fig


def _hide_axes(fig):
    fig.xaxis.visible = False
    fig.yaxis.visible = False
    fig.xgrid.visible = False
    fig.ygrid.visible = False


def _colorbar(fig, mapper, title):
    from bokeh.models import ColorBar
    bar = ColorBar(color_mapper=mapper, title=title, width=8, title_text_font_size="10px",
                   title_text_font_style="normal", major_label_text_font_size="10px", padding=3)
    fig.add_layout(bar, "right")
    return bar


def _code_mappers(palette, lo: float, hi: float, missing: str):
    """The mapper that colours an image of 8-bit codes (feed.codes over [lo, hi]) and the one whose colour
    bar shows the values themselves."""
    from bokeh.models import LinearColorMapper
    image = LinearColorMapper(palette=palette, low=0, high=feed.CODES, high_color=missing)
    return image, LinearColorMapper(palette=palette, low=lo, high=hi)


class MosaicView:
    """Receptive fields of the hidden units: tile j is W[:n_pixels, j] / max|W[:n_pixels, j]|, sent as 8-bit
    codes of the colour map (a quarter of float32), and only when the weights changed."""

    def __init__(self, title: str, n_units: int, image_shape: Sequence[int], frame: int = 250, gap: int = 1):
        from bokeh.models import ColumnDataSource, HoverTool
        self.image_shape, self.gap = tuple(image_shape), gap
        m = min(int(n_units), MAX_TILES)
        rows, cols = grid_shape(m)
        h, w = self.image_shape
        self.H, self.W = rows * (h + gap) - gap, cols * (w + gap) - gap
        self.image = ColumnDataSource({"image": [np.full((self.H, self.W), feed.NAN_CODE, np.uint8)]})
        boxes = tile_boxes(m, image_shape, cols, gap)
        self.boxes = ColumnDataSource({"left": boxes[:, 0], "bottom": boxes[:, 1], "right": boxes[:, 2],
                                       "top": boxes[:, 3], "unit": np.arange(m), "wins": ["–"] * m,
                                       "inhibited": ["–"] * m, "maxw": np.zeros(m)})
        self.fig = fig = _figure(title, x_range=(0, self.W), y_range=(0, self.H), **frame_size(self.H, self.W, frame))
        _hide_axes(fig)
        mapper, shown = _code_mappers(_palettes()["weights"], -1.0, 1.0, "#f2f2f2")
        fig.image(image="image", x=0, y=0, dw=self.W, dh=self.H, source=self.image, color_mapper=mapper)
        quads = fig.quad(left="left", right="right", bottom="bottom", top="top", source=self.boxes, fill_alpha=0,
                         line_alpha=0, hover_fill_alpha=0.12, hover_fill_color="black", hover_line_alpha=1,
                         hover_line_color="black")
        fig.add_tools(HoverTool(renderers=[quads], tooltips=[("hidden unit", "@unit"), ("wins (BU)", "@wins"),
                                                            ("inhibited (BU)", "@inhibited"),
                                                            ("max |w|", "@maxw{0.000}")]))
        _colorbar(fig, shown, "w / max|w| of the tile")
        self.n_tiles = m
        self.sent = feed.Changes()

    def update(self, W: np.ndarray, n_pixels: int, wins=None, inhibited=None, title: str | None = None,
               key=None):
        """Show the receptive fields of ``W`` unless ``key`` (e.g. the weights' checksum) is the one shown."""
        if title is not None and self.fig.title.text != title:
            self.fig.title.text = title
        if key is not None and not self.sent.new("W", key):
            return

        m = self.n_tiles

        def compute():
            rf = receptive_fields(W, n_pixels, self.image_shape, max_units=m, gap=self.gap)
            image = np.ascontiguousarray(np.flipud(feed.codes(rf["mosaic"], -1.0, 1.0)))  # Bokeh: row 0 at the bottom
            patch = {"maxw": np.round(rf["peak"][:m], 3)}
            if wins is not None and len(wins) >= m:
                patch["wins"] = [str(int(v)) for v in np.asarray(wins)[:m]]
                patch["inhibited"] = [str(int(v)) for v in np.asarray(inhibited)[:m]]
            else:
                patch["wins"] = patch["inhibited"] = ["n/a in TD / off"] * m
            return image, patch
        counts = None if wins is None or inhibited is None else checksum(np.asarray(wins), np.asarray(inhibited))
        inputs = ("mosaic", key, counts, n_pixels, tuple(self.image_shape), m, self.gap)
        image, patch = compute() if key is None else feed.SHARED.get(inputs, compute)
        self.image.data = {"image": [image]}
        if self.sent.new("boxes", inputs if key is not None else repr(patch)):
            self.boxes.data = {**dict(self.boxes.data), **patch}


class ImageView:
    """One image with a colour bar, sent only when it changed: TD win / inhibition counts (viridis on a log
    scale, so that one or two saturated pixels do not hide the rest) or probabilities in [0, 1] (grey, as
    8-bit codes)."""

    def __init__(self, title: str, shape: Sequence[int], kind: str, bar_title: str, frame: int = 150,
                 row_labels: Sequence[tuple[float, str]] | None = None, hover: str = "value"):
        from bokeh.models import ColumnDataSource, CustomJSHover, FixedTicker, HoverTool, LogColorMapper
        h, w = int(shape[0]), int(shape[1])
        self.shape = (h, w)
        self.kind = kind
        if kind == "counts":
            pal = _palettes()["counts"]
            self.mapper = LogColorMapper(palette=pal, low=1, high=10, low_color=pal[0], nan_color="#ffffff")
            shown, first = self.mapper, np.zeros((h, w), np.float32)
            tip, formatters = "@image{0,0}", {}
        else:
            self.mapper, shown = _code_mappers(_palettes()["grey"], 0.0, 1.0, "#ffffff")
            first = np.full((h, w), feed.NAN_CODE, np.uint8)
            tip = "@image{p}"
            formatters = {"@image": CustomJSHover(code=f"return value >= {feed.NAN_CODE} ? '–' : "
                                                       f"(value / {feed.CODES}).toFixed(2)")}
        self.src = ColumnDataSource({"image": [first]})
        self.fig = fig = _figure(title, x_range=(0, w), y_range=(0, h), **frame_size(h, w, frame))
        fig.image(image="image", x=0, y=0, dw=w, dh=h, source=self.src, color_mapper=self.mapper)
        fig.add_tools(HoverTool(tooltips=[(hover, tip)], formatters=formatters))
        _hide_axes(fig)
        if row_labels:
            fig.yaxis.visible = True
            fig.yaxis.ticker = FixedTicker(ticks=[t for t, _ in row_labels])
            fig.yaxis.major_label_overrides = {t: lab for t, lab in row_labels}
            fig.yaxis.major_tick_line_color = None
            fig.yaxis.axis_line_color = None
        _colorbar(fig, shown, bar_title)
        self.sent = feed.Changes()

    def update(self, image: np.ndarray, title: str | None = None, key=None):
        """Show ``image`` unless it is the one shown (``key``: what names it, e.g. ``feed.frame_key``; else its
        values are compared)."""
        if title is not None and self.fig.title.text != title:
            self.fig.title.text = title
        img = np.asarray(image, dtype=np.float32)
        if not self.sent.new("image", img if key is None else key):
            return
        if self.kind == "counts":
            top = float(np.nanmax(img)) if img.size else 0.0
            self.mapper.high = max(top, 10.0)          # log scale from 1 (0: the lowest colour) to the top
            shown = img
        else:
            shown = feed.codes(img, 0.0, 1.0)
        self.src.data = {"image": [np.ascontiguousarray(np.flipud(shown))]}   # (else Bokeh copies it per tab)


class BarsView:
    """BU competition: wins (up, arm colour) and inhibitions (down, grey) of every hidden unit."""

    def __init__(self, title: str, n_units: int, color: str, width: int = 390, height: int = 280):
        from bokeh.models import ColumnDataSource, HoverTool
        m = int(n_units)
        self.src = ColumnDataSource({"unit": np.arange(m), "wins": np.zeros(m), "neg": np.zeros(m),
                                     "inhibited": np.zeros(m)})
        self.fig = fig = _figure(title, width=width, height=height, x_range=(-0.5, m - 0.5))
        up = fig.vbar(x="unit", top="wins", width=0.8, source=self.src, color=color, line_alpha=0)
        down = fig.vbar(x="unit", top="neg", width=0.8, source=self.src, color="#8c8c8c", line_alpha=0)
        fig.add_tools(HoverTool(renderers=[up, down], tooltips=[("hidden unit", "@unit"), ("wins", "@wins"),
                                                               ("inhibited", "@inhibited")]))
        fig.xaxis.axis_label = "hidden unit j"
        fig.yaxis.axis_label = "count (wins ↑, inhibited ↓)"
        for ax in (*fig.xaxis, *fig.yaxis):
            ax.axis_label_text_font_size = FONT["axis"]
            ax.axis_label_text_font_style = "normal"
        self.sent = feed.Changes()

    def update(self, wins, inhibited):
        w = np.asarray(wins, dtype=np.float64)
        i = np.asarray(inhibited, dtype=np.float64)
        if self.sent.new("counts", np.concatenate([w, i])):
            self.src.data = {"unit": np.arange(len(w)), "wins": w, "neg": -i, "inhibited": i}


class CurvesView:
    """Curves vs step or epoch, optional twin right axis, and a dotted vertical line at every change.

    ``series``: list of dicts with key, label, color, dash ('solid'/'dashed'), axis ('left'/'right').
    Each curve is sent as its new points (feed.SeriesFeed), never its whole history again. ``log_y``: a log
    left axis, for positive quantities that fall by orders of magnitude (MSE, cross-entropy): the first
    point and the late separation of two curves both stay in view.
    """

    def __init__(self, title: str, xlabel: str, ylabel: str, series: Sequence[dict], width: int = 345,
                 height: int = 205, ylabel_right: str | None = None, now_point: str | None = None,
                 log_y: bool = False):
        from bokeh.core.properties import field
        from bokeh.models import ColumnDataSource, HoverTool, LabelSet, LinearAxis, LinearScale, Range1d
        # ranges are set from the data on every update (no client-side auto-ranging of empty plots)
        self.log_y = log_y
        self.fig = fig = _figure(title, width=width, height=height, x_range=Range1d(0, 1),
                                 y_range=Range1d(0.1, 1) if log_y else Range1d(0, 1),
                                 y_axis_type="log" if log_y else "linear")
        fig.xaxis.axis_label = xlabel
        fig.yaxis.axis_label = ylabel
        self.sources, self.axis_of, self.feeds = {}, {}, {}
        renderers = []
        if ylabel_right:
            fig.extra_y_ranges = {"right": Range1d(0, 1)}
            ax = LinearAxis(y_range_name="right", axis_label=ylabel_right)
            ax.axis_label_text_font_size = FONT["axis"]
            ax.axis_label_text_font_style = "normal"
            ax.major_label_text_font_size = FONT["ticks"]
            fig.add_layout(ax, "right")
        for s in series:
            src = ColumnDataSource({"x": np.zeros(0), "y": np.zeros(0)})
            side = "right" if s.get("axis") == "right" and ylabel_right else "left"
            kw = {"y_range_name": "right"} if side == "right" else {}
            r = fig.line("x", "y", source=src, color=s["color"], line_width=2, line_dash=s.get("dash", "solid"),
                         name=s["label"], **kw)
            renderers.append(r)
            if s.get("dash", "solid") == "solid":     # dots: a lone first point is visible too
                fig.scatter("x", "y", source=src, color=s["color"], size=3.5, **kw)
            self.sources[s["key"]] = src
            self.axis_of[s["key"]] = side
            self.feeds[s["key"]] = feed.SeriesFeed()
        self.now = None
        if now_point and ylabel_right:       # the right axis' value now: a dot, dashed from its last point
            self.now = ColumnDataSource({"x": [], "y": [], "size": []})
            fig.line("x", "y", source=self.now, color=now_point, line_width=2, line_dash="dashed",
                     y_range_name="right")
            fig.scatter("x", "y", source=self.now, size="size", color=now_point, y_range_name="right")
        self.markers = ColumnDataSource({"x": []})
        fig.vspan(x="x", source=self.markers, line_color=MARKER_COLOR, line_dash="dotted", line_width=1.5)
        self.timeline = ColumnDataSource({"x": [], "y": [], "label": [], "align": [], "dx": []})  # a lesson's events
        fig.vspan(x="x", source=self.timeline, line_color=LESSON_COLOR, line_dash="dashed", line_width=1.5,
                  line_alpha=0.8)
        fig.extra_y_ranges = {**fig.extra_y_ranges, "timeline": Range1d(0, 1)}    # 1: the frame's top
        fig.extra_y_scales = {**fig.extra_y_scales, "timeline": LinearScale()}    # also beside a log y axis
        fig.add_layout(LabelSet(x="x", y=field("y"), y_range_name="timeline", text=field("label"), source=self.timeline,
                                x_offset=field("dx"), text_align=field("align"), text_baseline="top",
                                text_font_size="10.5px", text_color=LESSON_TEXT,
                                text_font_style="bold", background_fill_color="white", background_fill_alpha=0.75))
        fig.add_tools(HoverTool(renderers=renderers, tooltips=[("", "$name"), (xlabel, "@x{0,0.[00]}"),
                                                              ("value", "@y{0.[0000]}")]))

    def update(self, data: dict, markers=(), now=None, title: str | None = None, timeline=None):
        """New points of the curves in ``data`` (key -> (x, y)), the change ``markers``, the right axis' value
        ``now`` as (x, y), and ``timeline``: a lesson's events as (positions, short labels), or None."""
        xs, ys = [], {"left": [], "right": []}
        for key, (x, y) in data.items():
            if key in self.sources:
                x = np.asarray(x, np.float64)
                y = np.asarray(y, np.float64)
                step = self.feeds[key].next(x, y)
                if step is not None:
                    op, new = step
                    if op == "stream":
                        self.sources[key].stream(new)
                    else:
                        self.sources[key].data = new
                xs.append(x)
                ys[self.axis_of[key]].append(y)
        m = np.asarray(markers, np.float64)
        if len(m) != len(self.markers.data["x"]) or not np.array_equal(m, self.markers.data["x"]):
            self.markers.data = {"x": m}
        if self.now is not None and now is not None:
            right = [f.last for k, f in self.feeds.items() if self.axis_of[k] == "right" and f.last is not None]
            x0, y0 = right[0] if right else (float(now[0]), float(now[1]))
            point = {"x": [x0, float(now[0])], "y": [y0, float(now[1])], "size": [0, 7]}
            if self.now.data != point:
                self.now.data = point
            xs.append(np.array(point["x"]))
            ys["right"].append(np.array(point["y"]))
        xs.append(m)
        t_x, t_labels = timeline if timeline is not None else ((), ())
        t_x = np.asarray(t_x, np.float64)
        xs.append(t_x)
        lo, hi = x_range_from(xs)
        set_range(self.fig.x_range, (lo, hi))
        right = t_x > lo + TIMELINE_RIGHT * (hi - lo)          # labels of the right part end at their line
        marks = {"x": t_x, "y": 0.99 - TIMELINE_ROW * (np.arange(len(t_x)) % 2), "label": list(t_labels),
                 "align": np.where(right, "right", "left").tolist(), "dx": np.where(right, -3.0, 3.0)}
        if not np.array_equal(t_x, self.timeline.data["x"]) or marks["label"] != list(self.timeline.data["label"]) \
                or marks["align"] != list(self.timeline.data["align"]):
            self.timeline.data = marks
        set_range(self.fig.y_range, log_range(ys["left"]) if self.log_y else axis_range(ys["left"]))
        if "right" in self.fig.extra_y_ranges:
            set_range(self.fig.extra_y_ranges["right"], axis_range(ys["right"], zero=True))
        if title is not None and self.fig.title.text != title:
            self.fig.title.text = title


def log_range(arrays, pad: float = 0.06) -> tuple[float, float]:
    """(lo, hi) of a log axis covering the positive finite values of ``arrays``, padded by ``pad`` of the
    span in decades; (0.1, 1) when there is nothing to show."""
    vals = [np.asarray(a, np.float64).ravel() for a in arrays]
    vals = [v[np.isfinite(v) & (v > 0)] for v in vals]
    vals = [np.log10(v) for v in vals if v.size]
    if not vals:
        return (0.1, 1.0)
    lo, hi = axis_range(vals, pad)
    return (10.0 ** lo, 10.0 ** hi)


def axis_range(arrays, pad: float = 0.06, zero: bool = False) -> tuple[float, float]:
    """(lo, hi) covering the finite values of ``arrays`` with ``pad`` of the span added on both sides;
    (0, 1) when there is nothing to show; ``zero`` includes 0."""
    vals = [np.asarray(a, np.float64).ravel() for a in arrays]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if v.size]
    if not vals:
        return (0.0, 1.0)
    lo = min(float(v.min()) for v in vals)
    hi = max(float(v.max()) for v in vals)
    if zero:
        lo = min(lo, 0.0)
    if hi - lo < 1e-12:
        d = abs(hi) * 0.05 or 0.5
        return (lo - d, hi + d)
    d = (hi - lo) * pad
    return (lo - d, hi + d)


def x_range_from(arrays, min_span: float = 1.0, pad: float = 0.02) -> tuple[float, float]:
    """x axis from 0 (step / epoch 0) to the largest finite value, at least ``min_span`` wide."""
    vals = [np.asarray(a, np.float64).ravel() for a in arrays]
    vals = np.concatenate([v[np.isfinite(v)] for v in vals] + [np.zeros(1)])
    lo = min(0.0, float(vals.min()))
    hi = max(float(vals.max()), lo + min_span)
    d = (hi - lo) * pad
    return (lo - d, hi + d)


def set_range(rng, lo_hi):
    lo, hi = lo_hi
    if rng.start != lo or rng.end != hi:
        rng.update(start=lo, end=hi)


def placeholder_figure(title: str, lines: Sequence[str], width: int = 330, height: int = 285):
    """An empty plot area with a short explanation (e.g. Compare off, KH off)."""
    from bokeh.models import Label
    fig = _figure(title, width=width, height=height, x_range=(0, 1), y_range=(0, 1))
    _hide_axes(fig)
    fig.outline_line_color = "#dddddd"
    for i, line in enumerate(lines):
        fig.add_layout(Label(x=0.5, y=0.62 - 0.1 * i, text=line, text_align="center", text_font_size="12px",
                             text_color="#555555"))
    return fig
