"""The sidebar's settings: one table saying how each config field is shown, the widget factory, and
:class:`Controls`, which holds a widget per field of ``khrbm.config.FIELDS``.

Widgets are grouped by *when a setting applies* (UX.md): live KH settings, live RBM settings, model
settings that need a Reset, more model settings, live diagnostics. Hard limits always come from FIELDS;
this table only says how a field looks (label, row, slider range, button labels).
"""
from __future__ import annotations

import contextlib
import functools
import html
from dataclasses import dataclass

import panel as pn
import param

from .. import data as kdata
from ..config import FIELD, FIELDS, RunConfig

GROUPS = ("kh", "rbm", "model", "more", "diag")


@dataclass(frozen=True)
class Control:
    """How one config field is shown: ``label`` (its meaning is the FIELDS help, in the tooltip),
    ``group`` (see GROUPS), ``half`` (two settings share a row), ``slider`` (lo, hi, step of the
    visible range of a float's slider), ``buttons`` (value -> button label of a choice field)."""
    label: str
    group: str
    half: bool = False
    slider: tuple | None = None
    buttons: dict | None = None


CONTROLS: dict[str, Control] = {
    "kh_mode": Control("KH mode", "kh", buttons={"off": "off", "td": "TD", "bu": "BU"}),
    "eps0": Control("ε0 KH step", "kh", slider=(0.0, 0.1, 0.0005)),
    "delta": Control("Δ anti-Hebb", "kh", slider=(0.0, 1.5, 0.05)),
    "ell": Control("ℓ inhibited rank", "kh"),
    "radius": Control("R radius", "kh", slider=(0.05, 2.0, 0.05)),
    "p": Control("p exponent", "kh", slider=(1.0, 4.0, 0.25)),
    "horizon": Control("S fade-out", "kh", slider=(1.0, 500.0, 1.0)),
    "ell_band": Control("band 1..ℓ", "kh"),
    "shuffle_xi": Control("shuffled ξ", "kh"),
    "lr": Control("η learning rate", "rbm", slider=(0.0, 0.5, 0.005)),
    "k": Control("k Gibbs steps", "rbm"),
    "epochs": Control("epochs", "rbm"),
    "dataset": Control("dataset", "model"),
    "task": Control("task", "model", buttons={"reconstruction": "reconstruct", "classification": "classify"}),
    "n_hidden": Control("M", "model", half=True),
    "batch_size": Control("B", "model", half=True),
    "init": Control("init", "model", half=True),
    "sampler": Control("sampler", "model", half=True, buttons={"cd": "CD", "pcd": "PCD"}),
    "seed": Control("seed", "model", half=True),
    "label_sampling": Control("label sampling", "more"),
    "train_size": Control("train images", "more"),
    "val_size": Control("val images", "more"),
    "dtype": Control("dtype", "more"),
    "backend": Control("backend", "more"),
    "probe_every": Control("ξ probe every", "diag"),
    "probe_trials": Control("ξ probe trials", "diag"),
    "eval_size": Control("eval images", "diag"),
}
COMPARE_LABEL = "Compare"
COMPARE_HELP = ("Train two models side by side from the same initialisation and data order: A with the "
                "settings shown, B the same with KH off (the plain RBM). Needs Reset once started.")

FULL_LABEL, FULL_W = 100, 176      # sidebar row: label | widget | tooltip icon
HALF_LABEL, HALF_W = 50, 82        # two settings side by side
ROW_H = 31
NUM_CSS = ".bk-spin-btn { display: none !important; } .bk-input { padding: 1px 5px !important; height: 26px; }"
LABEL_CSS = """
.khrbm-label { font-size: 13px; line-height: 1.1; white-space: nowrap; cursor: help; }
.khrbm-pill { display: block; width: fit-content; margin-top: 1px; font-size: 10px; font-weight: 600;
  color: #8a4b00; background: #fff1d6; border: 1px solid #e7b35a; border-radius: 7px; padding: 0 4px; }
"""
RADIO_CSS = ".bk-btn { padding: 4px 6px !important; }"


def group_fields(group: str) -> tuple[str, ...]:
    return tuple(name for name, c in CONTROLS.items() if c.group == group)


def label_html(name: str, needs_reset: bool = False) -> str:
    """A setting's label; its tooltip is the field's help; a pill when a change waits for Reset."""
    f = FIELD.get(name)
    text = CONTROLS[name].label if name in CONTROLS else COMPARE_LABEL
    tip = html.escape(f.help if f else COMPARE_HELP, quote=True)
    pill = "<span class='khrbm-pill'>needs Reset</span>" if needs_reset else ""
    return f"<div class='khrbm-label' title='{tip}'>{text}{pill}</div>"


def dataset_options() -> dict:
    """Drop-down entries of the dataset field, saying which datasets are here."""
    opts = {}
    for name in kdata.DATASETS:
        ok, _msg = kdata.dataset_status(name)
        shown = kdata.DISPLAY_NAMES.get(name, name)
        opts[f"{shown} ✓" if ok else f"{shown} (not downloaded)"] = name
    return opts


class SliderBox(pn.viewable.Viewer):
    """Label, exact-value box and slider for one float setting.

    The slider spans a display range; the box accepts any value within the field's hard bounds
    (FIELDS) and widens the slider if needed. ``value_throttled`` changes only on a person's action
    (slider released, box edited), so setting ``value`` from code never triggers a run update.
    """

    value = param.Number(default=0.0, allow_None=True)
    value_throttled = param.Number(default=None, allow_None=True)

    def __init__(self, value, start, end, step, fixed_start, fixed_end, css_class, width):
        super().__init__(value=value)
        self._sync = False
        v = value if value is not None else start
        self._slider = pn.widgets.FloatSlider(start=start, end=max(end, v), step=step, value=v, show_value=False,
                                              width=width - 70, margin=(10, 4, 0, 2),
                                              css_classes=[css_class + "-slider"])
        self._box = pn.widgets.FloatInput(value=value, start=fixed_start, end=fixed_end, step=step, width=58,
                                          margin=(2, 2), css_classes=[css_class, "khrbm-num"],
                                          stylesheets=[NUM_CSS])
        self._layout = pn.Row(self._slider, self._box, width=width, margin=0)
        self._slider.param.watch(self._from_slider, "value")
        self._slider.param.watch(self._from_slider_done, "value_throttled")
        self._box.param.watch(self._from_box, "value")
        self.param.watch(self._from_code, "value")

    def __panel__(self):
        return self._layout

    @contextlib.contextmanager
    def _syncing(self):
        """Changes made inside are this widget keeping its parts in step, not a person's action."""
        self._sync = True
        try:
            yield
        finally:
            self._sync = False

    def set_display_end(self, end: float):
        """Widen or narrow the slider's visible range (the value stays; the box still takes any value)."""
        with self._syncing():
            self._slider.end = max(float(end), float(self.value or 0.0), self._slider.start + self._slider.step)

    def _from_slider(self, event):          # dragging: show the number, do not apply yet
        if self._sync:
            return
        with self._syncing():
            self._box.value = round(event.new, 10)

    def _from_slider_done(self, event):     # released: apply
        if self._sync or event.new is None:
            return
        with self._syncing():
            self.value = round(event.new, 10)
        self.value_throttled = self.value

    def _from_box(self, event):             # typed: widen the slider if needed, apply
        if self._sync or event.new is None:
            return
        v = float(event.new)
        with self._syncing():
            self._show_on_slider(v)
            self.value = v
        self.value_throttled = v

    def _show_on_slider(self, v: float):
        """Move the slider to v, widening its visible range when v lies outside it."""
        self._slider.start = min(self._slider.start, v)
        self._slider.end = max(self._slider.end, v)
        self._slider.value = v

    def _from_code(self, event):
        if self._sync or event.new is None:
            return
        v = float(event.new)
        with self._syncing():
            self._show_on_slider(v)
            self._box.value = v
            with param.discard_events(self):
                self.value_throttled = v


def make_widget(f, value, datasets: dict):
    """A label-less widget for field ``f`` showing ``value``, sized for its sidebar row."""
    c = CONTROLS[f.name]
    width = HALF_W if c.half else FULL_W
    common = dict(css_classes=[f"khrbm-w-{f.name}"], margin=(2, 2), width=width)
    if f.name == "dataset":
        return pn.widgets.Select(options=datasets, value=value, **common)
    if f.kind is str:
        names = c.buttons or {v: v for v in f.choices}
        opts = {names[v]: v for v in f.choices}
        if len(f.choices) <= 3:
            return pn.widgets.RadioButtonGroup(options=opts, value=value, button_type="default",
                                               stylesheets=[RADIO_CSS], **common)
        return pn.widgets.Select(options=opts, value=value, **common)
    if f.kind is bool:
        return pn.widgets.Checkbox(value=value, name=c.label, css_classes=[f"khrbm-w-{f.name}"], margin=(8, 2, 2, 8))
    lo, hi = f.bounds
    if f.kind is float and c.slider:
        s_lo, s_hi, step = c.slider
        return SliderBox(value=value, start=max(s_lo, lo), end=min(s_hi, hi), step=step, fixed_start=lo,
                         fixed_end=hi, css_class=f"khrbm-w-{f.name}", width=width)
    if f.kind is float:
        return pn.widgets.FloatInput(value=value, start=lo, end=hi, stylesheets=[NUM_CSS], **common)
    # Bokeh numbers are doubles: keep the widget's own limit exact (FIELDS still validates the value)
    return pn.widgets.IntInput(value=value, start=lo, end=min(hi, 2**53 - 1), step=1, stylesheets=[NUM_CSS],
                               placeholder="all" if f.optional else "", **common)


def shown_value(cfg: RunConfig, name: str):
    """What a field's widget shows for ``cfg``: S is shown as the number of epochs it resolves to."""
    return cfg.kh_horizon if name == "horizon" else getattr(cfg, name)


class Controls:
    """One widget per config field plus the Compare switch, each in its sidebar row.

    ``on_change(name, value)`` is called on a person's edit only: values set through :meth:`show` (or
    inside :meth:`quiet`) are the program's and call nothing.
    """

    def __init__(self, cfg: RunConfig, on_change):
        self._quiet = False
        self._on_change = on_change
        self.widgets: dict[str, pn.viewable.Viewable] = {}
        self.rows: dict[str, pn.viewable.Viewable] = {}
        self.labels: dict[str, pn.pane.HTML] = {}        # settings that need a Reset: their labels carry a pill
        datasets = dataset_options()
        for f in FIELDS:
            w = make_widget(f, shown_value(cfg, f.name), datasets)
            self.widgets[f.name] = w
            self.rows[f.name] = self._row(f, w)
            watch = "value_throttled" if isinstance(w, SliderBox) else "value"
            w.param.watch(functools.partial(self._changed, f.name), watch)
        self.compare = pn.widgets.Switch(value=False, css_classes=["khrbm-compare"], width=40, margin=(9, 4, 4, 4))
        self.compare.param.watch(functools.partial(self._changed, "compare"), "value")
        self.labels["compare"] = pn.pane.HTML(label_html("compare"), margin=(6, 2, 0, 6), width=66,
                                              stylesheets=[LABEL_CSS], css_classes=["khrbm-label-compare"])
        self.compare_row = pn.Row(
            self.labels["compare"], self.compare,
            pn.pane.HTML("A: your settings · B: same with KH off", margin=(10, 0, 0, 2), width=210,
                         styles={"font-size": "11.5px", "color": "#444", "white-space": "nowrap"}),
            margin=0)

    def _row(self, f, w):
        """One sidebar row: label (with a 'needs Reset' pill for model settings), widget, tooltip icon."""
        if isinstance(w, pn.widgets.Checkbox):
            return pn.Row(w, pn.widgets.TooltipIcon(value=f.help, margin=(6, 0, 0, -4), width=18, height=20),
                          margin=0, height=30)
        half = CONTROLS[f.name].half
        label = pn.pane.HTML(label_html(f.name), width=HALF_LABEL if half else FULL_LABEL,
                             margin=(4, 2, 0, 6), stylesheets=[LABEL_CSS], css_classes=[f"khrbm-label-{f.name}"])
        if not f.live:
            self.labels[f.name] = label
        tip = pn.widgets.TooltipIcon(value=f.help, margin=(8, 0, 0, 0), width=18, height=20)
        return pn.Row(label, w, tip, margin=0, height=ROW_H, css_classes=[f"khrbm-row-{f.name}"])

    def _changed(self, name, event):
        if not self._quiet:
            self._on_change(name, event.new)

    def watch(self, widget, fn, what: str = "value"):
        """Call ``fn(event)`` when a person (not the program, see :meth:`quiet`) changes ``widget``."""
        widget.param.watch(lambda event: None if self._quiet else fn(event), what)

    @contextlib.contextmanager
    def quiet(self):
        """Widget values set inside are the program's, not a person's: no ``on_change``."""
        before, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = before

    def value(self, name: str):
        return self.compare.value if name == "compare" else self.widgets[name].value

    def show(self, cfg: RunConfig, compare: bool | None = None, names=None):
        """Show ``cfg`` (every field, or only ``names``) and the Compare switch, quietly."""
        with self.quiet():
            for name in (names if names is not None else FIELD):
                w = self.widgets[name]
                if name == "horizon":
                    w.set_display_end(2 * cfg.epochs)
                w.value = shown_value(cfg, name)
            if compare is not None:
                self.compare.value = compare

    def set_disabled(self, disabled: bool):
        """Every setting read-only (a tab that follows another's run, or waits for a trainer) or editable."""
        for w in (*self.widgets.values(), self.compare):
            for part in (w._slider, w._box) if isinstance(w, SliderBox) else (w,):
                if part.disabled != disabled:
                    part.disabled = disabled

    def mark_needs_reset(self, names):
        """A 'needs Reset' pill on the labels of ``names`` (and on no other)."""
        for name, label in self.labels.items():
            text = label_html(name, name in names)
            if label.object != text:
                label.object = text
