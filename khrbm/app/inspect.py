"""Inspect one unit: click a tile of a receptive-field mosaic (a hidden unit) or, in TD mode, a pixel of the
competition maps (a visible unit), and an overlay over the curves shows it:

- the competition matrix as a heat map (rows: winners, columns: the units they inhibited; both in the
  clustered order of :func:`khrbm.inspection.cluster_order`, so groups of units that compete show as blocks),
  with the unit's row and column marked; a click on it inspects the winner of that row;
- a hidden unit's receptive field now and at earlier metric points (the history strip), the units it inhibits
  most often and those that inhibit it most often (their receptive fields, BU), and p(h=1|v) on the probe
  images; a pixel's "inhibits" / "inhibited by" maps and P(v=1|h) of the probe reconstructions (TD);
- its wins and inhibitions over time, as shares of the samples between two metric points.

The overlay floats over the lower two rows of views (the mosaics stay visible, so another tile can be clicked)
and ✕ closes it. The trainer publishes the matrix at a bounded rate (``snapshot.CompetitionRecord``); what is
drawn here is computed from the snapshot, only while the overlay is open, and sent only when it changed.
"""
from __future__ import annotations

import functools
import html
import math

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource

from ..inspection import (binned, cluster_order, counts_until, hidden_activation, shares_over_time,
                          top_partners)
from ..tiles import scale_tiles, tile_mosaic
from . import feed, views

MATRIX_BINS = 160          # the heat map shows at most this many bins a side (sums of neighbours in the order)
REORDER_GROWTH = 1.25      # the clustered order is recomputed when the matrix's total count grew by this factor
#                            (~0.1 s at K = 784, ~1 s at K = 2,048 on a loaded 2-core machine); between, it is kept
TOP_K = 5                  # partners listed each way
STRIP_SLOTS = 9            # receptive fields in the history strip: the kept ones (at most 8) and now
OVERLAY_STYLE = {"position": "fixed", "right": "8px", "bottom": "6px", "width": "1070px", "z-index": "900",
                 "background": "#ffffff", "border": "1px solid #9fb0c2", "border-radius": "8px",
                 "box-shadow": "0 6px 24px rgba(0,0,0,.25)", "padding": "4px 6px"}
HEAD_CSS = """
.khrbm-inspect-head { display: flex; gap: 14px; align-items: baseline; font-size: 13px; color: #1f3b57;
  white-space: nowrap; overflow: hidden; }
.khrbm-inspect-head b { font-size: 15px; }
.khrbm-inspect-note { font-size: 12px; color: #666; overflow: hidden; text-overflow: ellipsis; }
.khrbm-partners { font-size: 12px; line-height: 1.5; color: #222; }
.khrbm-partners td { padding: 0 6px 0 0; font-variant-numeric: tabular-nums; }
"""


def on_tap(fig, callback):
    """Call ``callback(event)`` with the data coordinates (``event.x``, ``event.y``) of a click on ``fig``. Bokeh
    subscribes a model's event callbacks when it joins a document, so a figure already shown is subscribed here."""
    from bokeh.events import Tap
    fig.on_event(Tap, callback)
    if fig.document is not None:
        fig.document.callbacks.subscribe(Tap.event_name, fig)


def _code_image(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """8-bit codes of ``image`` (row 0 on top) flipped for Bokeh (row 0 at the bottom)."""
    return np.flipud(feed.codes(image, lo, hi))


def log_codes(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts as 8-bit codes on a log scale from 1 (code 0) to the largest count (code CODES); zero counts get
    NAN_CODE (drawn white). Returns (codes, largest count)."""
    C = np.asarray(counts, np.float64)
    top = float(C.max()) if C.size else 0.0
    out = np.full(C.shape, feed.NAN_CODE, np.uint8)
    on = C > 0
    if top <= 1:
        out[on] = feed.CODES
    else:
        out[on] = np.rint(np.log(C[on]) / math.log(top) * feed.CODES).astype(np.uint8)
    return out, int(top)


class MatrixView:
    """The competition matrix over the units that competed (a row or a column with a count), in clustered order,
    summed into at most MATRIX_BINS bins a side, sent as 8-bit log codes only when the matrix changed; the
    inspected unit's row and column are outlined. The x axis says how many of the K units (``what``) competed."""

    def __init__(self, K: int, title: str, what: str, frame: int = 262):
        from bokeh.models import ColumnDataSource, LogColorMapper
        self.K, self.what = K, what
        self.ordered = (-1, 0)                   # (units that competed, total count) when the order was computed
        self.order = np.arange(K)
        self.position = np.arange(K)
        self.active, self.size, self.n = 0, 1, 1   # units shown, units per bin, bins a side
        self.fig = fig = views._figure(title, x_range=(0, 1), y_range=(0, 1), frame_width=frame, frame_height=frame)
        views._hide_axes(fig)
        fig.xaxis.visible = fig.yaxis.visible = True
        fig.xaxis.ticker = fig.yaxis.ticker = []
        fig.xaxis.axis_label = "inhibited →"
        fig.yaxis.axis_label = "winner ↓"
        self.image = ColumnDataSource({"image": [np.full((1, 1), feed.NAN_CODE, np.uint8)], "n": [1]})
        mapper, _ = views._code_mappers(views._palettes()["counts"], 1.0, 10.0, "#ffffff")
        fig.image(image="image", x=0, y=0, dw="n", dh="n", source=self.image, color_mapper=mapper)
        self.bar = LogColorMapper(palette=views._palettes()["counts"], low=1, high=10)
        views._colorbar(fig, self.bar, "count (log)")
        self.marks = ColumnDataSource({"left": [], "right": [], "bottom": [], "top": []})
        fig.quad(left="left", right="right", bottom="bottom", top="top", source=self.marks, fill_alpha=0,
                 line_color="#D55E00", line_width=1.5)
        self.sent = feed.Changes()

    def update(self, matrix: np.ndarray, key):
        """Show ``matrix`` unless ``key`` (e.g. its record's version) is the one shown. The order is kept until
        more units compete or the total count has grown by REORDER_GROWTH (so the picture does not jump)."""
        if not self.sent.new("matrix", key):
            return
        C = np.asarray(matrix)
        active = int(((C.sum(axis=0) + C.sum(axis=1)) > 0).sum())
        total = int(C.sum(dtype=np.int64))
        if active != self.ordered[0] or not self.ordered[1] <= total <= REORDER_GROWTH * self.ordered[1]:
            self.order = cluster_order(C)                     # the units that competed first
            self.position = np.argsort(self.order)
            self.ordered = (active, total)
        self.active = active
        self.size = max(1, -(-active // MATRIX_BINS))
        shown = self.order[:active]
        codes, top = log_codes(binned(C[np.ix_(shown, shown)], MATRIX_BINS)) if active else \
            (np.full((1, 1), feed.NAN_CODE, np.uint8), 0)
        self.n = len(codes)
        self.image.data = {"image": [np.flipud(codes)], "n": [self.n]}
        self.bar.high = max(top, 2)
        views.set_range(self.fig.x_range, (0, self.n))
        views.set_range(self.fig.y_range, (0, self.n))
        self.fig.xaxis.axis_label = f"inhibited → ({active:,} of {self.K:,} {self.what} competed)"

    def mark(self, unit: int | None):
        """Outline the row and the column of ``unit`` (None, or a unit that never competed: no outline)."""
        if unit is None or unit >= self.K or self.position[unit] >= self.active:
            data = {"left": [], "right": [], "bottom": [], "top": []}
        else:
            p = int(self.position[unit]) // self.size
            y = self.n - 1 - p
            data = {"left": [0, p], "right": [self.n, p + 1], "bottom": [y, 0], "top": [y + 1, self.n]}
        if self.sent.new("mark", repr(data)):
            self.marks.data = data

    def unit_at(self, y: float, wins: np.ndarray | None) -> int | None:
        """The winner of the row at plot height ``y``: in a bin of several units, the one that won most."""
        row = self.n - 1 - int(math.floor(y))
        units = self.order[:self.active][row * self.size:(row + 1) * self.size]
        if not len(units) or row < 0:
            return None
        if wins is not None and len(wins) == self.K:
            return int(units[np.argmax(np.asarray(wins)[units])])
        return int(units[0])


class StripView:
    """One unit's receptive field at the kept metric points and now, side by side (each tile scaled to [-1, 1]
    by its own max |w|), labelled with their epochs."""

    def __init__(self, image_shape, title: str, frame: int = 430):
        from bokeh.models import ColumnDataSource, FixedTicker
        self.shape = h, w = tuple(int(s) for s in image_shape)
        self.width = STRIP_SLOTS * (w + 1) - 1
        self.fig = fig = views._figure(title, x_range=(0, self.width), y_range=(0, h),
                                       **views.frame_size(h, self.width, frame))
        views._hide_axes(fig)
        fig.xaxis.visible = True
        fig.xaxis.ticker = FixedTicker(ticks=[])
        fig.xaxis.major_tick_line_color = None
        fig.xaxis.axis_line_color = None
        self.image = ColumnDataSource({"image": [np.full((h, self.width), feed.NAN_CODE, np.uint8)]})
        mapper, _ = views._code_mappers(views._palettes()["weights"], -1.0, 1.0, "#f2f2f2")
        fig.image(image="image", x=0, y=0, dw=self.width, dh=h, source=self.image, color_mapper=mapper)
        self.sent = feed.Changes()

    def update(self, tiles: np.ndarray, labels: list[str], title: str):
        tiles = np.asarray(tiles)[-STRIP_SLOTS:]
        labels = labels[-STRIP_SLOTS:]
        self.fig.title.text = title
        if not self.sent.new("strip", np.r_[tiles.ravel(), len(tiles)]):
            return
        h, w = self.shape
        canvas = np.full((h, self.width), np.nan)
        if len(tiles):
            mosaic, _ = tile_mosaic(scale_tiles(tiles), self.shape, cols=len(tiles))
            canvas[:, :mosaic.shape[1]] = mosaic
        self.image.data = {"image": [_code_image(canvas, -1.0, 1.0)]}
        ticks = [i * (w + 1) + w / 2 for i in range(len(labels))]
        self.fig.xaxis.ticker.ticks = ticks
        self.fig.xaxis.major_label_overrides = dict(zip(ticks, labels))


class PartnersView:
    """The receptive fields of the units a hidden unit inhibits most often (top row) and of those that inhibit
    it most often (bottom row), each labelled with its index and count (BU)."""

    LABEL = 9        # plot units under a tile for its label

    def __init__(self, image_shape, title: str, frame: int = 240):
        from bokeh.models import ColumnDataSource, FixedTicker
        self.shape = h, w = tuple(int(s) for s in image_shape)
        self.width, self.height = TOP_K * (w + 1) - 1, 2 * (h + self.LABEL)
        self.fig = fig = views._figure(title, x_range=(0, self.width), y_range=(0, self.height),
                                       **views.frame_size(self.height, self.width, frame))
        views._hide_axes(fig)
        fig.yaxis.visible = True
        rows = [(self.height - h / 2, "inhibits →"), (self.height - (h + self.LABEL) - h / 2, "inhibited by ←")]
        fig.yaxis.ticker = FixedTicker(ticks=[t for t, _ in rows])
        fig.yaxis.major_label_overrides = dict(rows)
        fig.yaxis.major_tick_line_color = None
        fig.yaxis.axis_line_color = None
        self.image = ColumnDataSource({"image": [np.full((self.height, self.width), feed.NAN_CODE, np.uint8)]})
        mapper, _ = views._code_mappers(views._palettes()["weights"], -1.0, 1.0, "#ffffff")
        fig.image(image="image", x=0, y=0, dw=self.width, dh=self.height, source=self.image, color_mapper=mapper)
        self.labels = ColumnDataSource({"x": [], "y": [], "text": []})
        fig.text(x="x", y="y", text="text", source=self.labels, text_align="center", text_baseline="middle",
                 text_font_size="10px", text_color="#333333")
        self.sent = feed.Changes()

    def update(self, W: np.ndarray, n_pixels: int, inhibits: list, inhibited_by: list):
        h, w = self.shape
        key = (repr(inhibits), repr(inhibited_by), W[:n_pixels, [u for u, _ in inhibits + inhibited_by]].tobytes())
        if not self.sent.new("partners", repr(key)):
            return
        canvas = np.full((self.height, self.width), np.nan)
        xs, ys, texts = [], [], []
        for r, pairs in enumerate((inhibits, inhibited_by)):
            top = r * (h + self.LABEL)
            if pairs:
                tiles = scale_tiles(W[:n_pixels, [u for u, _ in pairs]].T)
                for c, ((unit, count), tile) in enumerate(zip(pairs, tiles)):
                    canvas[top:top + h, c * (w + 1):c * (w + 1) + w] = tile.reshape(h, w)
                    xs.append(c * (w + 1) + w / 2)
                    ys.append(self.height - top - h - self.LABEL / 2)
                    texts.append(f"{unit} · {count:,}×")
            else:
                xs.append(self.width / 2)
                ys.append(self.height - top - h / 2)
                texts.append("none yet")
        self.image.data = {"image": [_code_image(canvas, -1.0, 1.0)]}
        self.labels.data = {"x": xs, "y": ys, "text": texts}


class ActivationView:
    """A unit's response to each probe image: bars (hidden: p(h=1|v); pixel: P(v=1|h) of the reconstruction,
    with the input's value as a dot) above the probe images themselves."""

    def __init__(self, n_probes: int, image_shape, title: str, ylabel: str, width: int = 330, height: int = 150):
        from bokeh.models import ColumnDataSource, HoverTool
        self.shape = h, w = tuple(int(s) for s in image_shape)
        self.n = n = max(1, int(n_probes))
        self.width = n * (w + 1) - 1
        tile_px = w * width / self.width
        strip = tile_px * 1.08 / (height - tile_px)            # tile height in y units, for square pixels
        self.fig = fig = views._figure(title, x_range=(0, self.width), y_range=(-strip - 0.02, 1.06),
                                       frame_width=width, frame_height=height)
        fig.xaxis.visible = False
        fig.xgrid.visible = False
        fig.yaxis.axis_label = ylabel
        fig.yaxis.bounds = (0, 1)
        self.x = np.arange(n) * (w + 1) + w / 2
        self.bars = ColumnDataSource({"x": self.x, "p": np.zeros(n), "probe": np.arange(n)})
        bars = fig.vbar(x="x", top="p", width=w * 0.8, source=self.bars, color=views.ARM_COLORS["A"], line_alpha=0)
        self.dots = ColumnDataSource({"x": [], "v": []})
        fig.scatter(x="x", y="v", source=self.dots, size=6, color="#222222", marker="diamond")
        fig.add_tools(HoverTool(renderers=[bars], tooltips=[("probe image", "@probe"), ("value", "@p{0.000}")]))
        self.image = ColumnDataSource({"image": [np.full((h, self.width), feed.NAN_CODE, np.uint8)]})
        mapper, _ = views._code_mappers(views._palettes()["grey"], 0.0, 1.0, "#ffffff")
        fig.image(image="image", x=0, y=-strip - 0.01, dw=self.width, dh=strip, source=self.image, color_mapper=mapper)
        self.sent = feed.Changes()

    def update(self, p: np.ndarray, images: np.ndarray, title: str, inputs: np.ndarray | None = None):
        self.fig.title.text = title
        p = np.asarray(p, np.float64)[: self.n]
        if self.sent.new("p", p):
            self.bars.data = {"x": self.x[: len(p)], "p": p, "probe": np.arange(len(p))}
        dots = {"x": self.x[: len(inputs)], "v": np.asarray(inputs, np.float64)} if inputs is not None else \
            {"x": [], "v": []}
        if self.sent.new("dots", repr(dots)):
            self.dots.data = dots
        images = np.asarray(images)[: self.n]
        if self.sent.new("images", images):
            mosaic, _ = tile_mosaic(images, self.shape, cols=len(images))
            canvas = np.full((self.shape[0], self.width), np.nan)
            canvas[:, :mosaic.shape[1]] = mosaic
            self.image.data = {"image": [_code_image(canvas, 0.0, 1.0)]}


class InspectPanel:
    """The unit inspector of one tab (module docstring). ``view``: the overlay (hidden until a click);
    ``open_button``: opens it on the unit that wins most. The Lab calls :meth:`attach` after the dashboard is
    (re)built and :meth:`update` with every new snapshot; ``report`` shows a message to the person."""

    def __init__(self, report=None):
        self.report = report or (lambda msg: None)
        self.arm = 0
        self.kind: str | None = None         # "hidden" | "pixel"
        self.unit: int | None = None
        self.snap = None
        self._built = None                   # what the figures were built for
        self.v: dict = {}
        self._tiles: dict = {}               # arm index -> its mosaic's tile boxes (a Bokeh data source)
        self.head = pn.pane.HTML("", css_classes=["khrbm-inspect-title"], sizing_mode="stretch_width",
                                 margin=(2, 4), stylesheets=[HEAD_CSS])
        self.close_button = pn.widgets.Button(name="✕ Close", css_classes=["khrbm-inspect-close"], width=80,
                                              margin=(0, 4), button_type="light",
                                              description="Close the unit panel and return to the views.")
        self.close_button.on_click(lambda _e: self.close())
        self.open_button = pn.widgets.Button(name="Inspect units", css_classes=["khrbm-inspect-open"], width=104,
                                             margin=(8, 4), button_type="light",
                                             description="The competition matrix and one unit in detail (or click "
                                             "a tile of a mosaic, or in TD a pixel of the competition maps).")
        self.open_button.on_click(lambda _e: self._guard(self.open_top))
        self.p_matrix = pn.pane.Bokeh(None, margin=0, css_classes=["khrbm-inspect-matrix"])
        self.p_strip = pn.pane.Bokeh(None, margin=0, css_classes=["khrbm-inspect-strip"])
        self.p_partners = pn.pane.Bokeh(None, margin=0, css_classes=["khrbm-inspect-partners"])
        self.p_list = pn.pane.HTML("", margin=(0, 6), width=230, css_classes=["khrbm-inspect-list"],
                                   stylesheets=[HEAD_CSS])
        self.p_counts = pn.pane.Bokeh(None, margin=0, css_classes=["khrbm-inspect-counts"])
        self.p_probe = pn.pane.Bokeh(None, margin=0, css_classes=["khrbm-inspect-probe"])
        self.parts = pn.Row(self.p_strip, self.p_partners, self.p_list, margin=0)
        self.view = pn.Column(
            pn.Row(self.head, self.close_button, margin=0, sizing_mode="stretch_width"),
            pn.Row(self.p_matrix, pn.Column(self.parts, pn.Row(self.p_counts, self.p_probe, margin=0), margin=0),
                   margin=0),
            visible=False, css_classes=["khrbm-inspect"], styles=OVERLAY_STYLE, margin=0)

    # --- clicks --------------------------------------------------------------------------------------------
    def _guard(self, fn, *args):
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a click must never take the session down
            from .session import log
            log.exception("unit panel: %s failed", getattr(fn, "__name__", fn))
            self.report(f"unit panel: {type(exc).__name__}: {exc}")

    def attach(self, dashboard):
        """Make the dashboard's (new) figures clickable: the mosaics' tiles (hidden units) and the TD maps' pixels.
        The panel's own figures are rebuilt at the next :meth:`update` (which closes it if its unit is gone)."""
        from bokeh.models import GlyphRenderer, HoverTool, Quad
        self._tiles = {}
        for idx in (0, 1):
            view = dashboard.v.get(f"mosaic{idx}")
            if view is not None:
                on_tap(view.fig, functools.partial(self._tap_mosaic, idx, view))
                for hover in view.fig.select(type=HoverTool):
                    hover.tooltips = [*hover.tooltips, ("", "click: inspect this unit")]
                for r in view.fig.select(type=GlyphRenderer):      # the tiles' boxes: the inspected one outlined
                    if isinstance(r.glyph, Quad):
                        r.selection_glyph = Quad(fill_alpha=0, line_color=views.ARM_COLORS["A"], line_width=2.5)
                        r.nonselection_glyph = Quad(fill_alpha=0, line_alpha=0)
                self._tiles[idx] = view.boxes
        for name in ("wins", "inh"):
            view = dashboard.v.get(name)
            if view is not None:
                on_tap(view.fig, functools.partial(self._tap_pixel, view))
        self._built = None
        self._outline()

    def _outline(self):
        """Outline the inspected hidden unit's tile in its mosaic (nothing when closed or showing a pixel)."""
        for idx, boxes in self._tiles.items():
            hit = [self.unit] if (self.kind == "hidden" and idx == self.arm and self.unit is not None
                                  and self.unit < len(boxes.data["unit"])) else []
            if list(boxes.selected.indices) != hit:
                boxes.selected.indices = hit

    def _tap_mosaic(self, idx, view, event):
        data = view.boxes.data
        x, y = event.x, event.y
        hit = np.flatnonzero((np.asarray(data["left"]) <= x) & (x <= np.asarray(data["right"]))
                             & (np.asarray(data["bottom"]) <= y) & (y <= np.asarray(data["top"])))
        if len(hit):
            self._guard(self.show, idx, "hidden", int(data["unit"][hit[0]]))

    def _tap_pixel(self, view, event):
        h, w = view.shape
        r, c = h - 1 - int(math.floor(event.y)), int(math.floor(event.x))
        if 0 <= r < h and 0 <= c < w:
            self._guard(self.show, 0, "pixel", r * w + c)

    def _tap_matrix(self, event):
        if self.snap is None or "matrix" not in self.v:
            return
        arm = self.snap.arms[self.arm]
        unit = self.v["matrix"].unit_at(event.y, arm.win_counts)
        if unit is not None:
            kind = "pixel" if arm.counts_mode == "td" else "hidden"
            if kind == "pixel" and unit >= arm.n_pixels:
                return                                   # a label unit of the cRBM: not a pixel to show
            self._guard(self.show, self.arm, kind, unit)

    # --- opening and closing --------------------------------------------------------------------------------
    def open_top(self):
        """Open on arm A's unit that won most (hidden units in BU, pixels in TD; unit 0 without counts)."""
        if self.snap is None:
            return
        arm = self.snap.arms[0]
        kind = "pixel" if arm.counts_mode == "td" else "hidden"
        wins = np.asarray(arm.win_counts)[: arm.n_pixels] if kind == "pixel" else np.asarray(arm.win_counts)
        self.show(0, kind, int(np.argmax(wins)) if wins.size and wins.any() else 0)

    def show(self, arm: int, kind: str, unit: int):
        """Inspect ``unit`` (a hidden unit, or a pixel) of arm ``arm`` (0: A, 1: B)."""
        self.arm, self.kind, self.unit = arm, kind, unit
        self.view.visible = True
        self._outline()
        self.update(self.snap, heavy=True)

    def close(self):
        self.view.visible = False
        self.unit = self.kind = None
        self._outline()

    def _fits(self, snap) -> bool:
        if snap is None or self.arm >= len(snap.arms):
            return False
        arm = snap.arms[self.arm]
        return self.unit < (arm.W.shape[1] if self.kind == "hidden" else arm.n_pixels)

    # --- drawing ----------------------------------------------------------------------------------------------
    def update(self, snap, heavy: bool = True):
        """Keep ``snap``; while open, redraw what changed (the weights' parts only when ``heavy``)."""
        self.snap = snap
        if snap is None or not self.view.visible or self.unit is None:
            return
        if not self._fits(snap):
            self.close()
            return
        arm = snap.arms[self.arm]
        record = arm.competition
        key = (self.kind, arm.name, arm.W.shape, tuple(arm.image_shape), len(arm.probe_input), arm.counts_mode,
               record is not None and record.matrix is not None)
        if key != self._built:
            self._build(arm)
            self._built = key
            heavy = True
        self.head.object = self._head_html(arm)
        self._draw_matrix(arm, record)
        self._draw_counts(arm, record)
        if heavy:
            if self.kind == "hidden":
                self._draw_hidden(arm, record)
            else:
                self._draw_pixel(arm, record)

    def _build(self, arm):
        shape = tuple(arm.image_shape)
        v: dict = {}
        mode = arm.counts_mode
        record = arm.competition
        if record is not None and record.matrix is not None:
            K = record.matrix.shape[0]
            what = "pixels" if mode == "td" and arm.n_labels == 0 else "units"
            v["matrix"] = MatrixView(K, f"{views.MODE_LABEL[mode]}: who inhibits whom (clustered)", what)
            on_tap(v["matrix"].fig, self._tap_matrix)
            self.p_matrix.object = v["matrix"].fig
        else:
            from ..train.competition import MAX_MATRIX_UNITS
            K = len(arm.win_counts)
            why = (["KH has not run in this arm:", "no competition yet."] if mode == "off" else
                   [f"The matrix is kept for up to {MAX_MATRIX_UNITS:,} units;", f"this mode has {K:,}."]
                   if K > MAX_MATRIX_UNITS else ["Nothing counted yet:", "press ▶ Start or ⇥ Step."])
            self.p_matrix.object = views.placeholder_figure("Competition matrix", why, width=340, height=330)
        v["counts"] = views.CurvesView(
            "Wins and inhibitions over time", "step (minibatches)", "share of the samples (%)",
            [dict(key="won", label="won", color=views.ARM_COLORS.get(arm.name, "#333333")),
             dict(key="inhibited", label="inhibited", color="#777777", dash="dashed")], width=350, height=215)
        self.p_counts.object = v["counts"].fig
        n_probes = len(arm.probe_input)
        if self.kind == "hidden":
            v["strip"] = StripView(shape, "Receptive field over time")
            v["partners"] = PartnersView(shape, "Competitors (BU), most frequent first")
            v["probe"] = ActivationView(n_probes, shape, "p(h=1|v) on the probe images", "p(h = 1 | v)")
            self.p_strip.object, self.p_partners.object = v["strip"].fig, v["partners"].fig
            self.p_list.visible = False
        else:
            v["inhibits"] = views.ImageView("this pixel inhibits →", shape, "counts", "count", hover="count",
                                            frame=150)
            v["inhibited_by"] = views.ImageView("← inhibited by", shape, "counts", "count", hover="count", frame=150)
            v["marks"] = [self._pixel_mark(v[name]) for name in ("inhibits", "inhibited_by")]
            v["probe"] = ActivationView(n_probes, shape, "P(v=1|h) of the reconstructions", "P(v = 1 | h)")
            self.p_strip.object, self.p_partners.object = v["inhibits"].fig, v["inhibited_by"].fig
            self.p_list.visible = True
        self.p_probe.object = v["probe"].fig
        self.v = v

    @staticmethod
    def _pixel_mark(view):
        """An outline square on ``view``'s map, placed on the inspected pixel by :meth:`_draw_pixel` (moved in
        place when another pixel is inspected: the figures stay, no model is replaced)."""
        source = ColumnDataSource(dict(left=[], right=[], bottom=[], top=[]))
        view.fig.quad(left="left", right="right", bottom="bottom", top="top", source=source, fill_alpha=0,
                      line_color="#D55E00", line_width=2)
        return source

    def _head_html(self, arm) -> str:
        mode = views.MODE_LABEL.get(arm.config.kh_mode, "?")
        if self.kind == "hidden":
            w = arm.image_shape[1]
            name = f"Hidden unit {self.unit}"
            counts = ""
            if arm.counts_mode == "bu":
                counts = (f"won {int(arm.win_counts[self.unit]):,} · inhibited {int(arm.inhibit_counts[self.unit]):,}"
                          f" times (BU)")
        else:
            w = arm.image_shape[1]
            r, c = divmod(self.unit, w)
            name = f"Pixel ({r}, {c}) · visible unit {self.unit}"
            counts = (f"won {int(arm.win_counts[self.unit]):,} · inhibited {int(arm.inhibit_counts[self.unit]):,} "
                      f"times (TD)" if arm.counts_mode == "td" else "")
        return (f"<div class='khrbm-inspect-head' data-kind='{self.kind}' data-unit='{self.unit}' "
                f"data-arm='{arm.name}'><b>{html.escape(name)}</b><span>arm {arm.name} · {mode} · step "
                f"{arm.step:,}</span><span>{counts}</span><span class='khrbm-inspect-note'>click another "
                f"{'tile' if self.kind == 'hidden' else 'pixel'} or a matrix row to switch</span></div>")

    def _draw_matrix(self, arm, record):
        view = self.v.get("matrix")
        if view is None or record is None or record.matrix is None or record.matrix.shape[0] != view.K:
            return
        view.update(record.matrix, record.version)
        own = (self.kind == "hidden") == (record.mode == "bu")      # the unit is one of the matrix's units
        view.mark(self.unit if own else None)

    @staticmethod
    def _counts_rows(arm, record):
        """The record's count history, ended by the counts now when they are of its mode."""
        if arm.counts_mode != record.mode or len(arm.win_counts) != record.count_wins.shape[1]:
            return record.count_steps, record.count_wins, record.count_inhibited
        return counts_until(record.count_steps, record.count_wins, record.count_inhibited, arm.step,
                            arm.win_counts, arm.inhibit_counts)

    def _draw_counts(self, arm, record):
        view = self.v["counts"]
        own = record is not None and (self.kind == "hidden") == (record.mode == "bu") and record.mode != "off"
        if own and record.count_wins.shape[1] > self.unit:
            x, won, lost = shares_over_time(*self._counts_rows(arm, record), self.unit)
            title = f"Won (solid), inhibited (dashed) over time ({'BU' if record.mode == 'bu' else 'TD'})"
            since = record.count_steps[:1] if len(record.count_steps) and record.count_steps[0] > 0 else ()
        else:
            x = won = lost = np.zeros(0)
            since = ()
            title = ("Wins and inhibitions: " + ("hidden units compete in BU mode" if self.kind == "hidden"
                                                  else "pixels compete in TD mode"))
        # the dotted line: the mode was switched on there, and its counts started from zero
        view.update({"won": (x, 100 * won), "inhibited": (x, 100 * lost)}, markers=since, title=title)

    def _draw_hidden(self, arm, record):
        j, n_pix, shape = self.unit, arm.n_pixels, tuple(arm.image_shape)
        tiles, labels = [], []
        if record is not None:
            for step, W in zip(record.rf_steps, record.rf_weights):
                if step < arm.step and W.shape == arm.W.shape:
                    tiles.append(W[:n_pix, j])
                    labels.append(f"ep {step / arm.batches_per_epoch:.3g}")
        tiles.append(arm.W[:n_pix, j])
        labels.append("now")
        self.v["strip"].update(np.array(tiles), labels,
                               f"Receptive field of unit {j} over time (each tile scaled to its max |w|)")
        if record is not None and record.mode == "bu" and record.matrix is not None:
            inhibits, inhibited_by = top_partners(record.matrix, j, TOP_K)
        else:
            inhibits, inhibited_by = [], []
        self.v["partners"].update(arm.W, n_pix, inhibits, inhibited_by)
        self.v["partners"].fig.title.text = ("Competitors (BU), most frequent first" if record is not None
                                             and record.mode == "bu" else "Competitors: BU mode only")
        V = arm.probe_visible if arm.probe_visible is not None else arm.probe_input
        p = hidden_activation(V, arm.W, arm.b, j)
        self.v["probe"].update(p, arm.probe_input, f"p(h{j}=1|v) on the probe images: mean {p.mean():.2f}")

    def _draw_pixel(self, arm, record):
        i, shape = self.unit, tuple(arm.image_shape)
        h, w = shape
        n_pix = arm.n_pixels
        if record is not None and record.mode == "td" and record.matrix is not None:
            row, col = record.matrix[i, :n_pix], record.matrix[:n_pix, i]
            inhibits, inhibited_by = top_partners(record.matrix[:n_pix, :n_pix], i, TOP_K)
        else:
            row = col = np.zeros(n_pix)
            inhibits = inhibited_by = []
        r, c = divmod(i, w)
        mark = dict(left=[c], right=[c + 1], bottom=[h - 1 - r], top=[h - r])
        for source in self.v["marks"]:
            if dict(source.data) != mark:
                source.data = mark
        self.v["inhibits"].update(np.asarray(row, np.float32).reshape(h, w))
        self.v["inhibited_by"].update(np.asarray(col, np.float32).reshape(h, w))

        def rows(pairs):
            return "".join(f"<tr><td>({u // w}, {u % w})</td><td>{c:,}×</td></tr>" for u, c in pairs) or \
                "<tr><td>none yet</td></tr>"
        self.p_list.object = (f"<div class='khrbm-partners' data-inhibits='{','.join(str(u) for u, _ in inhibits)}'>"
                              f"<b>inhibits most often</b><table>{rows(inhibits)}</table>"
                              f"<b>inhibited most often by</b><table>{rows(inhibited_by)}</table></div>")
        self.v["probe"].update(arm.probe_recon[:, i], arm.probe_input,
                               f"Pixel ({i // w}, {i % w}): reconstruction P(v=1|h) ▮, input ◆",
                               inputs=arm.probe_input[:, i])
