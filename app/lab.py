"""The khrbm lab, built once per browser tab by ``app/main.py`` (which `panel serve app` runs per session).

This module is imported once per server process (so its globals survive a session's teardown, when
``on_session_destroyed`` callbacks run). Each session builds one :class:`Lab`: its own Trainer (background
thread), widgets generated from ``khrbm.config.FIELDS`` and Bokeh views (app/views.py) whose data sources
are replaced in place. A periodic callback reads ``trainer.snapshot`` and redraws only when
``snapshot.version`` changed. Closing the tab closes the trainer. Nothing here trains on the event loop;
calls that wait for the trainer's loop (loading a checkpoint, closing) run on worker threads.

Assets (CSS, favicon, logo) live in ``assets/`` at the repository root and are inlined into the page
(style.css as the stylesheet of the panes that use it, favicon and logo base64-encoded by the template),
so `panel serve app` needs no extra flags (no --static-dirs).
"""
from __future__ import annotations

import contextlib
import functools
import html
import io
import logging
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import panel as pn  # noqa: E402
import param  # noqa: E402

from app import presets, views  # noqa: E402
from khrbm import data as kdata  # noqa: E402
from khrbm.config import FIELD, FIELDS, LIVE_FIELDS, ConfigError, RunConfig, check_value  # noqa: E402

ASSETS = ROOT / "assets"
TICK_MS = 400                 # periodic callback period
MOSAIC_MIN_INTERVAL = 0.9     # seconds between mosaic redraws (the heaviest data to send)
REGISTRY_KEY = "khrbm_live_trainers"

log = logging.getLogger("khrbm.app")
if not log.handlers:
    _h = logging.StreamHandler(sys.stderr)
    _h.setFormatter(logging.Formatter("%(asctime)s khrbm.app %(levelname)s: %(message)s"))
    log.addHandler(_h)
    log.setLevel(logging.INFO)
    log.propagate = False

# --- which widget goes where: grouped by *when a setting applies* ---------------------------------
KH_FIELDS = ("kh_mode", "eps0", "delta", "ell", "radius", "p", "horizon", "ell_band", "shuffle_xi")
RBM_FIELDS = ("lr", "k", "epochs")
MODEL_FIELDS = ("dataset", "task", "n_hidden", "init", "sampler", "batch_size", "seed")
_listed = set(KH_FIELDS + RBM_FIELDS + MODEL_FIELDS)
DIAG_FIELDS = tuple(f.name for f in FIELDS if f.live and f.name not in _listed)           # probe, eval size
MORE_FIELDS = tuple(f.name for f in FIELDS if not f.live and f.name not in _listed)       # dtype, backend ...

# Display only: the slider's visible range and step (hard limits always come from FIELDS bounds).
SLIDER_RANGE = {"eps0": (0.0, 0.1, 0.0005), "delta": (0.0, 1.5, 0.05), "radius": (0.05, 2.0, 0.05),
                "p": (1.0, 4.0, 0.25), "horizon": (1.0, 500.0, 1.0), "lr": (0.0, 0.5, 0.005)}
# Short labels; the full meaning (FIELDS help) is in each widget's tooltip.
LABELS = {"compare": "Compare", "kh_mode": "KH mode", "eps0": "ε0 KH step", "delta": "Δ anti-Hebb", "ell": "ℓ inhibited rank",
          "radius": "R radius", "p": "p exponent", "horizon": "S fade-out",
          "ell_band": "band 1..ℓ", "shuffle_xi": "shuffled ξ",
          "lr": "η learning rate", "k": "k Gibbs steps", "dataset": "dataset", "task": "task",
          "n_hidden": "M", "init": "init", "sampler": "sampler", "batch_size": "B",
          "epochs": "epochs", "seed": "seed", "probe_every": "ξ probe every",
          "probe_trials": "ξ probe trials", "eval_size": "eval images", "label_sampling": "label sampling",
          "train_size": "train images", "val_size": "val images",
          "dtype": "dtype", "backend": "backend"}
CHOICE_LABELS = {"kh_mode": {"off": "off", "td": "TD", "bu": "BU"}, "sampler": {"cd": "CD", "pcd": "PCD"},
                 "task": {"reconstruction": "reconstruct", "classification": "classify"}}
COLORS = views.ARM_COLORS
# settings a running trainer accepts: the live fields, plus 'epochs' (the Trainer extends or shortens a run)
APP_LIVE = frozenset(LIVE_FIELDS) | frozenset({"epochs"})
SIDEBAR_WIDTH = 350
FULL_LABEL, FULL_W = 100, 176      # sidebar row: label | widget | tooltip icon
HALF_LABEL, HALF_W = 50, 82        # two settings side by side
ROW_H = 33
HALF_ROW = {"n_hidden", "batch_size", "seed", "init", "sampler"}
COMPARE_HELP = ("Train two models side by side from the same initialisation and data order: A with the "
                "settings shown, B the same with KH off (the plain RBM). Needs Reset once started.")
CARD_CSS = """
:host { border-radius: 6px; }
.card-header { padding: 1px 6px !important; min-height: 0 !important; }
.card-button { margin: 0 4px 0 0 !important; padding: 0 !important; }
"""
CARD_TITLE_CSS = ":host { text-align: left; } .khrbm-card-title { font-size: 13px; font-weight: 700; color: #1f3b57; }"
NUM_CSS = ".bk-spin-btn { display: none !important; } .bk-input { padding: 1px 5px !important; height: 26px; }"
LABEL_CSS = """
.khrbm-label { font-size: 13px; line-height: 1.1; white-space: nowrap; cursor: help; }
.khrbm-pill { display: block; width: fit-content; margin-top: 1px; font-size: 10px; font-weight: 600;
  color: #8a4b00; background: #fff1d6; border: 1px solid #e7b35a; border-radius: 7px; padding: 0 4px; }
"""
RADIO_CSS = ".bk-btn { padding: 4px 6px !important; }"


@functools.lru_cache(maxsize=1)
def _read_css() -> str:
    try:
        return (ASSETS / "style.css").read_text()
    except OSError:
        return ""


_REGISTRY_LOCK = threading.Lock()


def _registry() -> dict:
    """session id -> Trainer of every open tab in this server process (shared by all sessions)."""
    return pn.state.cache.setdefault(REGISTRY_KEY, {})


def live_trainers() -> int:
    with _REGISTRY_LOCK:
        return len(_registry())


def _close_in_background(trainer, session_id: str | None, why: str):
    """Close ``trainer`` off the event loop (close() joins its thread, which may be compiling), then drop
    it from the registry if it is still the one registered for ``session_id``."""
    def run():
        try:
            trainer.close(timeout=120)
        except Exception:  # noqa: BLE001
            log.error("closing a trainer failed:\n%s", traceback.format_exc())
        if session_id is not None:
            with _REGISTRY_LOCK:
                if _registry().get(session_id) is trainer:
                    del _registry()[session_id]
                n = len(_registry())
            log.info("session %s: trainer closed (%s); live trainers: %d", session_id, why, n)
    threading.Thread(target=run, name="khrbm-app-close", daemon=True).start()


def _session_id() -> str:
    try:
        return pn.state.curdoc.session_context.id
    except Exception:  # pragma: no cover - not served
        return f"local-{id(pn.state.curdoc)}"


def _trainer_module():
    from khrbm.train import trainer  # imported late: the app still renders its error if the import fails
    return trainer


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

    def set_display_end(self, end: float):
        """Widen or narrow the slider's visible range (the value stays; the box still takes any value)."""
        self._sync = True
        try:
            self._slider.end = max(float(end), float(self.value or 0.0), self._slider.start + self._slider.step)
        finally:
            self._sync = False

    def _from_slider(self, event):          # dragging: show the number, do not apply yet
        if self._sync:
            return
        self._sync = True
        try:
            self._box.value = round(event.new, 10)
        finally:
            self._sync = False

    def _from_slider_done(self, event):     # released: apply
        if self._sync or event.new is None:
            return
        self._sync = True
        try:
            self.value = round(event.new, 10)
        finally:
            self._sync = False
        self.value_throttled = self.value

    def _from_box(self, event):             # typed: widen the slider if needed, apply
        if self._sync or event.new is None:
            return
        v = float(event.new)
        self._sync = True
        try:
            self._show_on_slider(v)
            self.value = v
        finally:
            self._sync = False
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
        self._sync = True
        try:
            self._show_on_slider(v)
            self._box.value = v
            with param.discard_events(self):
                self.value_throttled = v
        finally:
            self._sync = False


def _boxed(fig, css: str):
    """A Bokeh figure in a Column carrying a stable css class (for tests and styling)."""
    return pn.Column(pn.pane.Bokeh(fig, margin=0), margin=(0, 2), css_classes=[css])


def short_message(msg: str, limit: int = 220) -> str:
    """One screen line or two: drop the list of searched folders of a data error, cap the length."""
    msg = str(msg).split("; searched:")[0].strip()
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


class UserError(Exception):
    """A message for the person at the screen (bad file, unavailable dataset ...)."""


def guarded(fn):
    """Never let a callback exception reach Bokeh: show it in the status area and the notifications."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the server must keep running
            known = (UserError, ConfigError, kdata.DataError, ValueError, KeyError)
            msg = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, known):
                log.error("callback %s failed:\n%s", fn.__name__, traceback.format_exc())
            self.error(msg)
    return wrapper


# ------------------------------------------------------------------------------------------------
class Lab:
    def __init__(self):
        self.trainer = None
        self.trainer_dataset = None
        self.compare = False
        self.cfg = RunConfig()
        self.pending: dict = {}            # model settings waiting for Reset
        self._suppress = False
        self._last_version = -1
        self._last_mosaic = 0.0
        self._mosaic_version = -1
        self._structure = None
        self._snap = None
        self._closed = False
        self._started = False
        self._jobs: list = []
        self._jobs_lock = threading.Lock()
        self._busy = ""
        self._error_until = 0.0
        self._loaded_msg = ""
        self.session_id = _session_id()

        css = _read_css()
        self.status = pn.pane.HTML(self._status_html(None, "starting…"), css_classes=["khrbm-status"],
                                   sizing_mode="stretch_width", margin=(0, 5), stylesheets=[css])
        self.banner = pn.pane.Alert("", alert_type="warning", visible=False, margin=(0, 5, 4, 5),
                                    css_classes=["khrbm-banner"], sizing_mode="stretch_width")
        self.errorbox = pn.pane.Alert("", alert_type="danger", visible=False, margin=(0, 5, 4, 5),
                                      css_classes=["khrbm-error"], sizing_mode="stretch_width")
        self.server_line = pn.pane.HTML("", css_classes=["khrbm-server"], margin=(4, 10), stylesheets=[css])
        self._build_widgets()
        self._build_views()

    # --- widgets ----------------------------------------------------------------------------------
    def _build_widgets(self):
        self.widgets: dict[str, pn.widgets.Widget] = {}
        self.badges: dict[str, pn.pane.HTML] = {}
        self.controls: dict[str, pn.viewable.Viewable] = {}
        for f in FIELDS:
            w = self._make_widget(f)
            self.widgets[f.name] = w
            self.controls[f.name] = self._wrap(f, w)
            watch = "value_throttled" if isinstance(w, SliderBox) else "value"
            w.param.watch(functools.partial(self._on_field, f.name), watch)

        self.preset = pn.widgets.Select(name="Preset", groups=presets.groups(), value=presets.INIT_ROBUSTNESS,
                                        description="Load a ready setup (not started). The authors' tuned "
                                        "settings come from their published configs.", css_classes=["khrbm-preset"],
                                        sizing_mode="stretch_width", margin=(0, 10, 2, 10))
        self.preset.param.watch(self._on_preset, "value")
        self.start_btn = pn.widgets.Button(name="▶ Start", button_type="primary", css_classes=["khrbm-start"],
                                           description="Train in the background; the views stream.", width=74,
                                           margin=(5, 2, 5, 10))
        self.pause_btn = pn.widgets.Button(name="❚❚ Pause", css_classes=["khrbm-pause"], width=78,
                                           description="Pause after the current minibatch.", margin=(5, 2))
        self.step_btn = pn.widgets.Button(name="⇥ Step", css_classes=["khrbm-step"], width=70,
                                          description="Train exactly one minibatch.", margin=(5, 2))
        self.reset_btn = pn.widgets.Button(name="⟲ Reset", css_classes=["khrbm-reset"], width=88,
                                           description="Start over from a fresh initialisation with the "
                                           "settings shown (applies model settings).", margin=(5, 2))
        self.start_btn.on_click(self._on_start)
        self.pause_btn.on_click(self._on_pause)
        self.step_btn.on_click(self._on_step)
        self.reset_btn.on_click(self._on_reset)
        self.compare_sw = pn.widgets.Switch(value=False, css_classes=["khrbm-compare"], width=40,
                                            margin=(9, 4, 4, 4))
        self.compare_sw.param.watch(self._on_compare, "value")
        self.compare_label = pn.pane.HTML(self._label_html("compare"), margin=(6, 2, 0, 6), width=66,
                                          stylesheets=[LABEL_CSS], css_classes=["khrbm-label-compare"])
        self.badges["compare"] = self.compare_label
        self.compare_row = pn.Row(
            self.compare_label, self.compare_sw,
            pn.pane.HTML("A: your settings · B: same with KH off", margin=(10, 0, 0, 2), width=210,
                         styles={"font-size": "11.5px", "color": "#444", "white-space": "nowrap"}),
            margin=0)

        self.dl_weights = pn.widgets.FileDownload(callback=self._export_weights, filename="khrbm-weights.npz",
                                                  label="weights .npz", button_type="light", width=110,
                                                  css_classes=["khrbm-export-weights"], margin=(4, 2))
        self.dl_metrics = pn.widgets.FileDownload(callback=self._export_metrics, filename="khrbm-metrics.csv",
                                                  label="metrics .csv", button_type="light", width=110,
                                                  css_classes=["khrbm-export-metrics"], margin=(4, 2))
        self.dl_config = pn.widgets.FileDownload(callback=self._export_config, filename="khrbm-config.json",
                                                 label="config .json", button_type="light", width=110,
                                                 css_classes=["khrbm-export-config"], margin=(4, 2))
        self.upload = pn.widgets.FileInput(accept=".json,.npz", multiple=False, css_classes=["khrbm-load"],
                                           width=250, margin=(6, 4))
        self.upload.param.watch(self._on_upload, "value")
        self.reset_hint = pn.pane.HTML("", width=150, margin=(8, 2, 0, 8), css_classes=["khrbm-reset-hint"],
                                       styles={"font-size": "11px", "color": "#8a4b00"})

    def _make_widget(self, f):
        """A label-less widget for field ``f``, sized for its sidebar row (label, widget, tooltip)."""
        value = getattr(self.cfg, f.name)
        half = f.name in HALF_ROW
        width = HALF_W if half else FULL_W
        common = dict(css_classes=[f"khrbm-w-{f.name}"], margin=(2, 2), width=width)
        if f.kind is str and f.name == "dataset":
            return pn.widgets.Select(options=self._dataset_options(), value=value, **common)
        if f.kind is str:
            names = CHOICE_LABELS.get(f.name, {c: c for c in f.choices})
            opts = {names[c]: c for c in f.choices}
            if len(f.choices) <= 3:
                return pn.widgets.RadioButtonGroup(options=opts, value=value, button_type="default",
                                                   stylesheets=[RADIO_CSS], **common)
            return pn.widgets.Select(options=opts, value=value, **common)
        if f.kind is bool:
            return pn.widgets.Checkbox(value=value, name=LABELS.get(f.name, f.name),
                                       css_classes=[f"khrbm-w-{f.name}"], margin=(8, 2, 2, 8))
        lo, hi = f.bounds
        if f.kind is float and f.name in SLIDER_RANGE:
            s_lo, s_hi, step = SLIDER_RANGE[f.name]
            v = self.cfg.kh_horizon if f.name == "horizon" else value
            return SliderBox(value=v, start=max(s_lo, lo), end=min(s_hi, hi), step=step, fixed_start=lo,
                             fixed_end=hi, css_class=f"khrbm-w-{f.name}", width=width)
        if f.kind is float:
            return pn.widgets.FloatInput(value=value, start=lo, end=hi, stylesheets=[NUM_CSS], **common)
        # Bokeh numbers are doubles: keep the widget's own limit exact (FIELDS still validates the value)
        return pn.widgets.IntInput(value=value, start=lo, end=min(hi, 2**53 - 1), step=1, stylesheets=[NUM_CSS],
                                   placeholder="all" if f.optional else "", **common)

    def _label_html(self, name: str, pending: bool = False) -> str:
        f = FIELD.get(name)
        text = LABELS.get(name, (f.symbol or name) if f else name)
        tip = html.escape(f.help if f else COMPARE_HELP, quote=True)
        pill = "<span class='khrbm-pill'>needs Reset</span>" if pending else ""
        return f"<div class='khrbm-label' title='{tip}'>{text}{pill}</div>"

    def _wrap(self, f, w):
        """One sidebar row: label (with a 'needs Reset' pill for model settings), widget, tooltip icon."""
        if isinstance(w, pn.widgets.Checkbox):
            return pn.Row(w, pn.widgets.TooltipIcon(value=f.help, margin=(6, 0, 0, -4), width=18, height=20),
                          margin=0, height=30)
        half = f.name in HALF_ROW
        label = pn.pane.HTML(self._label_html(f.name), width=HALF_LABEL if half else FULL_LABEL,
                             margin=(4, 2, 0, 6), stylesheets=[LABEL_CSS], css_classes=[f"khrbm-label-{f.name}"])
        if not f.live:
            self.badges[f.name] = label
        tip = pn.widgets.TooltipIcon(value=f.help, margin=(8, 0, 0, 0), width=18, height=20)
        return pn.Row(label, w, tip, margin=0, height=ROW_H, css_classes=[f"khrbm-row-{f.name}"])

    def _dataset_options(self) -> dict:
        opts = {}
        for name in kdata.DATASETS:
            ok, _msg = kdata.dataset_status(name)
            shown = kdata.DISPLAY_NAMES.get(name, name)
            opts[f"{shown} ✓" if ok else f"{shown} (not downloaded)"] = name
        return opts

    # --- views --------------------------------------------------------------------------------------
    def _build_views(self):
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
        self.v = {}

    def _rebuild_views(self, snap):
        """(Re)create the figures; only when the structure changes (arms, M, task, KH mode, image shape)."""
        a = snap.arms[0]
        names = [arm.name for arm in snap.arms]
        shape = tuple(a.image_shape)
        v = {}
        for idx, pane in ((0, self.p_mosaic_a), (1, self.p_mosaic_b)):
            if idx < len(snap.arms):
                arm = snap.arms[idx]
                v[f"mosaic{idx}"] = views.MosaicView(self._mosaic_title(arm), arm.W.shape[1], shape, **MOSAIC_FRAME)
                pane.object = v[f"mosaic{idx}"].fig
            else:
                pane.object = views.placeholder_figure(
                    "Receptive fields B · plain RBM",
                    ["Compare is off.", "Switch it on to train the plain RBM (B)", "beside your settings (A)."],
                    **MOSAIC_BOX)

        def series(key, with_train=True):
            out = []
            for name in names:
                c = COLORS.get(name, "#333333")
                out.append(dict(key=f"{name}:val_{key}" if with_train else f"{name}:{key}",
                                label=f"{name} validation" if with_train else name, color=c))
                if with_train:
                    out.append(dict(key=f"{name}:train_{key}", label=f"{name} train", color=c, dash="dashed"))
            return out

        v["mse"] = views.CurvesView("Reconstruction error", "epoch", "MSE per pixel", series("mse"), **CURVE_SIZE)
        v["ce"] = views.CurvesView("Cross-entropy", "epoch", "cross-entropy per pixel (nats)", series("ce"),
                                   **CURVE_SIZE)
        if a.config.task == "classification":
            v["third"] = views.CurvesView("Classification accuracy (validation)", "epoch", "accuracy (fraction)",
                                          series("accuracy", with_train=False), **CURVE_SIZE)
        else:
            v["third"] = views.CurvesView("Receptive-field overlap", "step (minibatches)",
                                          "mean max cosine to another unit", series("overlap", with_train=False),
                                          **CURVE_SIZE)
        v["ratio"] = views.CurvesView(
            "Fig. 2: |ξ|/|∇L| (A) and ε(t)", "step (minibatches)", "|ξ| / |∇L|",
            [dict(key="ratio", label="|ξ|/|∇L|", color=COLORS["A"]),
             dict(key="eps", label="ε", color="#666666", dash="dashed", axis="right")],
            ylabel_right="ε (KH step size)", now_point="#666666", **CURVE_SIZE)
        v["cos"] = views.CurvesView("Fig. 2: cosine between ξ and ∇L (A)", "step (minibatches)", "cos(ξ, ∇L)",
                                    [dict(key="cos", label="cos", color=COLORS["A"])], **CURVE_SIZE)
        h = shape[0]
        rows = ["input"] + [f"recon {n}" for n in names]
        n_rows = len(rows)
        H = n_rows * (h + 1) - 1
        ticks = [(H - i * (h + 1) - h / 2, lab) for i, lab in enumerate(rows)]
        n_cols = min(PROBE_COLS, len(a.probe_input)) or 1
        v["probe"] = views.ImageView("Input vs reconstruction P(v|h)", (H, n_cols * (shape[1] + 1) - 1), "grey",
                                     "P(pixel on)", row_labels=ticks, hover="P(on)", **PROBE_SIZE)
        self.p_mse.object, self.p_ce.object, self.p_third.object = v["mse"].fig, v["ce"].fig, v["third"].fig
        self.p_ratio.object, self.p_cos.object, self.p_probe.object = v["ratio"].fig, v["cos"].fig, v["probe"].fig

        mode = a.counts_mode
        if mode == "td":
            v["wins"] = views.ImageView("TD: pixels that win", shape, "counts", "wins", hover="wins", **COMP_IMG)
            v["inh"] = views.ImageView("TD: pixels inhibited", shape, "counts", "inhibited", hover="inhibited",
                                       **COMP_IMG)
            self.p_comp[:] = [_boxed(v["wins"].fig, "khrbm-comp-wins"), _boxed(v["inh"].fig, "khrbm-comp-inhibited")]
        elif mode == "bu":
            v["bars"] = views.BarsView("BU: hidden units that win / are inhibited", len(a.win_counts), COLORS["A"],
                                       **COMP_BARS)
            self.p_comp[:] = [_boxed(v["bars"].fig, "khrbm-comp-bars")]
        else:
            self.p_comp[:] = [_boxed(views.placeholder_figure(
                "Competition: who wins, who is inhibited",
                ["KH is off in arm A: no competition.", "KH mode TD: visible pixels compete;",
                 "BU: hidden units compete."], **COMP_BARS), "khrbm-comp-off")]
        self.v = v

    def _mosaic_title(self, arm):
        m = arm.W.shape[1]
        extra = f" (first {views.MAX_TILES} of {m})" if m > views.MAX_TILES else f" · {m} units"
        return f"Receptive fields {views.arm_label(arm.name, arm.config)}{extra}"

    def _update_views(self, snap, heavy: bool):
        v = self.v
        arms = snap.arms
        a = arms[0]
        if heavy:
            for idx, arm in enumerate(arms[:2]):
                view = v.get(f"mosaic{idx}")
                if view is not None:
                    bu = arm.counts_mode == "bu"
                    view.update(arm.W, arm.n_pixels, arm.win_counts if bu else None,
                                arm.inhibit_counts if bu else None, title=self._mosaic_title(arm))
            rows = [a.probe_input] + [r.probe_recon for r in arms]
            v["probe"].update(views.probe_mosaic(rows, a.image_shape, max_cols=PROBE_COLS))
        m_epoch = views.change_markers(snap.changes, "epoch")
        m_step = views.change_markers(snap.changes, "step")
        data = {}
        for arm in arms:
            for key in ("val_mse", "train_mse", "val_ce", "train_ce", "accuracy"):
                data[f"{arm.name}:{key}"] = views.history_arrays(arm.history, "epoch", key)
            data[f"{arm.name}:overlap"] = views.history_arrays(arm.history, "step", "overlap")
        v["mse"].update(data, m_epoch)
        v["ce"].update(data, m_epoch)
        v["third"].update(data, m_step if a.config.task != "classification" else m_epoch)
        xs, ys = views.history_arrays(a.xi or {}, "step", "ratio")
        es, ee = views.history_arrays(a.history, "step", "eps")
        if a.step > (es[-1] if len(es) else -1):
            es, ee = np.append(es, a.step), np.append(ee, a.eps)
        if a.config.probe_every:
            t = f"Fig. 2: |ξ|/|∇L| (A) · ε(t) = {a.eps:.3g} now"
        else:
            t = f"Fig. 2: ξ probe off (Diagnostics) · ε = {a.eps:.3g}"
        v["ratio"].update({"ratio": (xs, ys), "eps": (es, ee)}, m_step, now=(a.step, a.eps), title=t)
        v["cos"].update({"cos": views.history_arrays(a.xi or {}, "step", "cosine")}, m_step)
        if "wins" in v:
            w, i = views.competition_images(a.win_counts, a.inhibit_counts, a.n_pixels, a.image_shape)
            v["wins"].update(w)
            v["inh"].update(i)
        elif "bars" in v:
            v["bars"].update(a.win_counts, a.inhibit_counts)

    def _structure_key(self, snap):
        a = snap.arms[0]
        return (tuple((r.name, r.config.kh_mode, r.W.shape) for r in snap.arms), a.config.task, a.counts_mode,
                tuple(a.image_shape))

    # --- trainer lifecycle --------------------------------------------------------------------------
    def _configs(self, cfg, compare):
        return cfg, (cfg.replace(kh_mode="off") if compare else None)

    def _install(self, cfg: RunConfig, compare: bool):
        """A fresh Trainer for ``cfg`` (plus the plain twin when comparing): new init, not started.

        A new Trainer (instead of ``reset``) keeps the event loop free: construction returns at once and
        the loop thread compiles / evaluates step 0 while the page already shows the initial weights.
        """
        if self._closed:
            return
        ok, msg = kdata.dataset_status(cfg.dataset)
        if not ok:
            raise UserError(msg)
        cfg_a, cfg_b = self._configs(cfg, compare)
        tmod = _trainer_module()
        dataset = kdata.load_dataset(cfg.dataset)          # cached per process by khrbm.data
        new = tmod.Trainer(cfg_a, cfg_b, dataset=dataset)   # ConfigError (e.g. ℓ too large) leaves the old one
        old, self.trainer = self.trainer, new
        with _REGISTRY_LOCK:
            _registry()[self.session_id] = new
        if old is not None:
            _close_in_background(old, None, "replaced")
        self.cfg, self.compare = cfg, compare
        self.pending.clear()
        self._started = False
        self._show_badges()
        self._last_version = -1
        self._structure = None
        self.tick()

    def started(self) -> bool:
        """A run has begun (Start / Step pressed, or a loaded checkpoint past step 0)."""
        snap = self._snap_now()
        if snap is None:
            return False
        return self._started or snap.state == "running" or any(a.step > 0 for a in snap.arms)

    def _snap_now(self):
        return self.trainer.snapshot if self.trainer is not None else None

    def close(self):
        """Session destroyed: stop the periodic redraw and free the trainer (joined off the event loop)."""
        if self._closed:
            return
        self._closed = True
        t, self.trainer = self.trainer, None
        if t is not None:
            _close_in_background(t, self.session_id, "tab closed")
        else:
            with _REGISTRY_LOCK:
                _registry().pop(self.session_id, None)

    # --- callbacks ----------------------------------------------------------------------------------
    @guarded
    def onload(self):
        mnist_ok, mnist_msg = kdata.dataset_status("mnist")
        if mnist_ok:
            name = presets.INIT_ROBUSTNESS
        else:
            name = presets.BARS
            self.banner.object = ("**MNIST is not available here**, so the lab opened on the offline *bars* "
                                  "data. To get MNIST run `khrbm data fetch mnist` (needs internet once), or "
                                  "set `KHRBM_DATA_DIR` to a folder with the MNIST IDX files; then reload.")
            log.info("MNIST not available: %s", mnist_msg)
            self.banner.visible = True
        with self._quiet():
            self.preset.value = name
        t0 = time.perf_counter()
        self._load_preset(name)
        log.info("session %s opened (first frame in %.2f s); live trainers: %d", self.session_id,
                 time.perf_counter() - t0, live_trainers())

    @guarded
    def _on_preset(self, event):
        if self._suppress:
            return
        try:
            self._load_preset(event.new)
        except Exception:
            with self._quiet():
                self.preset.value = event.old
            raise

    @contextlib.contextmanager
    def _quiet(self):
        """Widget values set inside are the program's, not the user's: their watchers do nothing."""
        before, self._suppress = self._suppress, True
        try:
            yield
        finally:
            self._suppress = before

    def _load_preset(self, name):
        fields, compare = presets.split(presets.PRESETS[name])
        ok, msg = kdata.dataset_status(fields["dataset"])
        if not ok:
            raise UserError(f"preset '{name}' needs {fields['dataset']}: {msg}")
        cfg = RunConfig().replace(**fields)
        self._install(cfg, compare)
        self._set_widgets(cfg, compare)
        self._loaded_msg = f"Loaded “{name}”: {presets.description(name)}. Press ▶ Start."
        self.clear_error()
        self.tick(force=True)

    def _set_widgets(self, cfg, compare):
        with self._quiet():
            for f in FIELDS:
                w = self.widgets[f.name]
                v = getattr(cfg, f.name)
                if f.name == "horizon":
                    v = cfg.kh_horizon
                    w.set_display_end(2 * cfg.epochs)
                w.value = v
            self.compare_sw.value = compare

    def _widget_value(self, name):
        v = self.widgets[name].value
        if name == "horizon":
            # S shown as a number; it stays "follow epochs" (None) while it equals epochs and was None
            if self.cfg.horizon is None and v is not None and abs(v - self.cfg.epochs) < 1e-12:
                return None
        return v

    @guarded
    def _on_field(self, name, event):
        if self._suppress:
            return
        value = self._widget_value(name)
        try:
            value = check_value(FIELD[name], value)
        except ConfigError:
            self._revert(name)
            raise
        if name in APP_LIVE:
            self._apply_live(name, value)
        else:
            self._apply_model(name, value)

    def _revert(self, name):
        with self._quiet():
            v = self.pending.get(name, getattr(self.cfg, name))
            self.widgets[name].value = self.cfg.kh_horizon if name == "horizon" else v

    def _apply_live(self, name, value):
        if getattr(self.cfg, name) == value:
            return
        try:
            new = self.cfg.replace(**{name: value})
        except ConfigError:
            self._revert(name)
            raise
        try:
            if not self.started():      # nothing trained yet: a fresh trainer, no change marker
                self._install(new.replace(**self._pending_fields()), self._pending_compare())
            else:
                arm = "A" if (name == "kh_mode" and self.compare) else "both"   # arm B stays the plain RBM
                self.trainer.update(arm=arm, **{name: value})
                self.cfg = new
        except Exception:
            self._revert(name)
            raise
        if name == "epochs":
            with self._quiet():
                if self.cfg.horizon is None:                 # S follows the number of epochs
                    self.widgets["horizon"].value = float(self.cfg.kh_horizon)
                self.widgets["horizon"].set_display_end(2 * self.cfg.epochs)
        self.clear_error()
        self.tick()

    def _pending_fields(self):
        return {k: v for k, v in self.pending.items() if k != "compare"}

    def _pending_compare(self):
        return self.pending.get("compare", self.compare)

    def _apply_model(self, name, value):
        if name == "dataset":
            ok, msg = kdata.dataset_status(value)
            if not ok:
                self._revert(name)
                raise UserError(msg)
        current = self.compare if name == "compare" else getattr(self.cfg, name)
        if value == current:
            self.pending.pop(name, None)
        else:
            self.pending[name] = value
        if not self.started():
            try:
                cfg = self.cfg.replace(**self._pending_fields())  # ConfigError (e.g. classification on bars)
                self._install(cfg, self._pending_compare())
            except Exception:
                self.pending.pop(name, None)
                if name == "compare":
                    with self._quiet():
                        self.compare_sw.value = self.compare
                else:
                    self._revert(name)
                self._show_badges()
                raise
            self.clear_error()
        else:
            self._show_badges()

    @guarded
    def _on_compare(self, event):
        if self._suppress:
            return
        self._apply_model("compare", bool(event.new))

    def _show_badges(self):
        for name, label in self.badges.items():
            html_ = self._label_html(name, name in self.pending)
            if label.object != html_:
                label.object = html_
        n = len(self.pending)
        self.reset_btn.name = f"⟲ Reset ({n})" if n else "⟲ Reset"
        self.reset_btn.button_type = "warning" if n else "default"
        self.reset_hint.object = (f"{n} change{'s' if n > 1 else ''} wait{'' if n > 1 else 's'} for ⟲ Reset"
                                  if n else "")

    @guarded
    def _on_start(self, _event):
        if self.trainer is None:
            raise UserError("the trainer is not ready yet")
        snap = self.trainer.snapshot
        if snap.state in ("diverged", "error"):
            raise UserError(f"{snap.message or snap.state} — press ⟲ Reset (lower η or ε0 first)")
        if snap.state == "finished":
            raise UserError(f"the run reached its {snap.arms[0].config.epochs} epochs: raise 'epochs' (applies at "
                            "once) to train on, or Reset")
        self.trainer.start()
        self._started = True
        self.clear_error()
        self.tick()

    @guarded
    def _on_pause(self, _event):
        if self.trainer is not None:
            self.trainer.pause()
            self.tick()

    @guarded
    def _on_step(self, _event):
        if self.trainer is not None:
            self.trainer.step(1)
            self._started = True
            self.tick()

    @guarded
    def _on_reset(self, _event):
        cfg = self.cfg.replace(**self._pending_fields())
        self._install(cfg, self._pending_compare())
        self._loaded_msg = "Reset: fresh initialisation with the settings shown. Press ▶ Start."
        self.clear_error()

    # --- files --------------------------------------------------------------------------------------
    def _export_weights(self):
        try:
            if self.trainer is None:
                raise UserError("nothing to export yet")
            if self.trainer.snapshot.state in ("compiling", "closed"):
                raise UserError("the trainer is still preparing; export again in a moment")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "weights.npz"
                self.trainer.save_checkpoint(path)
                produced = path if path.exists() else next(Path(tmp).glob("*.npz"))
                return io.BytesIO(produced.read_bytes())
        except Exception as exc:  # noqa: BLE001
            self.error(f"export failed: {exc}")
            return io.BytesIO(b"")

    def _export_metrics(self):
        try:
            snap = self._snap_now()
            return io.StringIO(views.history_csv(snap.arms if snap else ()))
        except Exception as exc:  # noqa: BLE001
            self.error(f"export failed: {exc}")
            return io.StringIO("")

    def _export_config(self):
        try:
            cfg = self.cfg.replace(**self._pending_fields())
            return io.StringIO(cfg.to_json() + "\n")
        except Exception as exc:  # noqa: BLE001
            self.error(f"export failed: {exc}")
            return io.StringIO("")

    @guarded
    def _on_upload(self, event):
        raw = event.new
        if raw is None:
            return
        name = self.upload.filename or "upload"
        if isinstance(raw, str):
            raw = raw.encode()
        if name.lower().endswith(".json") or raw[:1] in (b"{", b"[", b" ", b"\n"):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{name}: not a UTF-8 text file; expected a run config (.json)")
            try:
                cfg = RunConfig.from_json(text)
            except ConfigError as exc:
                raise UserError(f"{name}: {exc}")
            ok, msg = kdata.dataset_status(cfg.dataset)
            if not ok:
                raise UserError(f"{name} asks for {cfg.dataset}: {msg}")
            self._install(cfg, self.compare)
            self._set_widgets(cfg, self.compare)
            self._loaded_msg = f"Loaded config {name}. Press ▶ Start."
        elif name.lower().endswith(".npz") or raw[:2] == b"PK":
            if self.trainer is None:
                raise UserError("the trainer is not ready yet")
            self._load_checkpoint(name, raw)
            return
        else:
            raise UserError(f"{name}: expected a run config (.json) or a checkpoint (.npz)")
        self.clear_error()
        self.tick(force=True)

    def _load_checkpoint(self, name: str, raw: bytes):
        """Load a checkpoint on a worker thread (Trainer.load_checkpoint waits for the trainer's loop);
        the next tick applies the result to the widgets."""
        trainer = self.trainer
        tmp = tempfile.NamedTemporaryFile(prefix="khrbm-upload-", suffix=".npz", delete=False)
        tmp.write(raw)
        tmp.close()
        path = Path(tmp.name)

        def work():
            try:
                snap = trainer.load_checkpoint(path)
            except Exception as exc:  # noqa: BLE001 - CheckpointError, ConfigError, DataError ...
                raise UserError(f"{name}: {str(exc).replace(str(path), 'the file')}") from None
            finally:
                path.unlink(missing_ok=True)
            return snap

        def done(snap):
            if trainer is not self.trainer:
                return
            cfg = snap.arms[0].config
            compare = len(snap.arms) > 1
            self._set_widgets(cfg, compare)
            self.cfg, self.compare = cfg, compare
            self.pending.clear()
            self._show_badges()
            self._structure = None
            self._started = snap.arms[0].step > 0
            self._loaded_msg = f"Loaded checkpoint {name} (step {snap.arms[0].step:,}). Press ▶ Start to continue."
            self.clear_error()
            self.tick(force=True)

        self._background(work, done, f"loading {name}…")

    def _background(self, work, done, what: str):
        """Run ``work()`` on a worker thread; ``done(result)`` (or the error) is handled by the next tick,
        on the event loop, where widgets and plots may be touched."""
        self._busy = what

        def run():
            try:
                item = (done, work(), None)
            except Exception as exc:  # noqa: BLE001
                item = (done, None, exc)
            with self._jobs_lock:
                self._jobs.append(item)
        threading.Thread(target=run, name="khrbm-app-job", daemon=True).start()

    def _finish_jobs(self):
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
        for done, result, exc in jobs:
            self._busy = ""
            if exc is not None:
                known = (UserError, ConfigError, kdata.DataError, ValueError)
                if not isinstance(exc, known):
                    log.error("background job failed: %r", exc)
                self.error(str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}")
            else:
                try:
                    done(result)
                except Exception as exc:  # noqa: BLE001
                    log.error("applying a background result failed:\n%s", traceback.format_exc())
                    self.error(f"{type(exc).__name__}: {exc}")

    # --- messages -----------------------------------------------------------------------------------
    def error(self, msg: str):
        log.info("session %s: shown error: %s", self.session_id, msg)
        msg = short_message(msg)
        self.errorbox.object = f"⚠ {html.escape(msg)}"
        self.errorbox.visible = True
        self._error_until = time.monotonic() + 20
        try:
            if pn.state.notifications is not None:
                pn.state.notifications.error(html.escape(msg), duration=8000)
        except Exception:  # noqa: BLE001
            pass

    def clear_error(self):
        self.errorbox.visible = False
        self._error_until = 0.0

    # --- periodic redraw ----------------------------------------------------------------------------
    def tick(self, force: bool = False):
        try:
            self._tick(force)
        except Exception:  # noqa: BLE001 - never kill the periodic callback
            log.error("tick failed:\n%s", traceback.format_exc())

    def _tick(self, force):
        if self._closed:
            return
        self._server_line()
        if self._error_until and time.monotonic() > self._error_until:
            self.clear_error()
        if self._jobs:
            self._finish_jobs()
        t = self.trainer
        if t is None:
            return
        snap = t.snapshot
        if snap.version == self._last_version and not force:
            return
        self._last_version = snap.version
        self._snap = snap
        key = self._structure_key(snap)
        with pn.io.hold():
            if key != self._structure:
                self._structure = key
                t0 = time.perf_counter()
                self._rebuild_views(snap)
                log.info("session %s: views rebuilt in %.2f s", self.session_id, time.perf_counter() - t0)
                self._last_mosaic = 0.0
            now = time.monotonic()
            heavy = (force or now - self._last_mosaic >= MOSAIC_MIN_INTERVAL or snap.state != "running")
            heavy = heavy and self._mosaic_version != snap.version
            self._update_views(snap, heavy)
            if heavy:
                self._mosaic_version = snap.version
                self._last_mosaic = now
            self.status.object = self._status_html(snap)
            self._buttons(snap)

    def _buttons(self, snap):
        running = snap.state == "running"
        busy = snap.state in ("compiling",)
        self.start_btn.disabled = running or busy or snap.state in ("closed", "error")
        self.pause_btn.disabled = not running
        self.step_btn.disabled = running or busy

    def _server_line(self):
        n = live_trainers()
        html = (f"<span class='khrbm-live' data-live='{n}'>server: {n} live trainer{'s' if n != 1 else ''}"
                f"</span>")
        if self.server_line.object != html:
            self.server_line.object = html

    def _status_html(self, snap, text: str | None = None) -> str:
        if snap is None:
            return (f"<div class='khrbm-statusline' data-state='starting' data-step='0' data-changes='0'>"
                    f"<span class='khrbm-state state-compiling'>{text}</span></div>")
        a = snap.arms[0]
        n_changes = views.count_changes(snap.changes)
        line = views.status_text(snap)
        state = snap.state
        extra = ""
        msg = (snap.message or "").strip()
        if state == "compiling":
            extra = f" — {msg or 'preparing'}…"
        elif msg and msg not in ("ready", "running") and not msg.startswith(("paused at", "finished")):
            extra = f" — {html.escape(msg)}"
        elif state == "finished":
            extra = " — raise epochs to train on"
        if self._busy:
            extra += f" — {html.escape(self._busy)}"
        wsig = getattr(a, "checksum", 0) or f"{float(np.abs(np.asarray(a.W, dtype=np.float64)).sum()):.9g}"
        legend = []
        for arm in snap.arms:
            c = COLORS.get(arm.name, "#333")
            legend.append(f"<span class='khrbm-chip' style='background:{c}'></span>"
                          f"{views.arm_label(arm.name, arm.config)}")
        legend_html = " &nbsp; ".join(legend)
        changes_title = ("&#10;".join(html.escape(views.describe_change(c), quote=True) for c in snap.changes[-12:])
                         or "no changes yet")
        hint = ""
        if state in ("idle",) and a.step == 0 and self._loaded_msg:
            hint = f"<div class='khrbm-hint'>{html.escape(self._loaded_msg)}</div>"
        elif snap.notice:
            hint = f"<div class='khrbm-hint'>{html.escape(snap.notice)}</div>"
        return (f"<div class='khrbm-statusline' data-state='{state}' data-step='{a.step}' "
                f"data-version='{snap.version}' data-changes='{n_changes}' data-wsig='{wsig}' "
                f"data-mosaic-version='{self._mosaic_version}' data-arms='{len(snap.arms)}'>"
                f"<span class='khrbm-state state-{state}'>{line.split(' · ', 1)[0]}</span>"
                f"<span class='khrbm-line'>{line.split(' · ', 1)[1] if ' · ' in line else ''}{extra}</span>"
                f"<span class='khrbm-legend'>{legend_html} · <i>solid</i> validation, <i>dashed</i> train · "
                f"<span class='khrbm-changes' title='{changes_title}'>┆ setting changes: {n_changes}</span>"
                f"</span></div>{hint}")


# sizes (px) chosen for one 1440×900 screen; see tests/artifacts/*.png
MOSAIC_FRAME = dict(frame=262)
MOSAIC_BOX = dict(height=290, width=350)
CURVE_SIZE = dict(height=205, width=345)
PROBE_SIZE = dict(frame=250)
PROBE_COLS = 8
COMP_IMG = dict(frame=128)
COMP_BARS = dict(height=290, width=360)


def _local_resources():
    """Give the session's document its local resource URL before any component is built.

    Panel sets ``dist_url`` only when it renders the page, and patches the models that exist then. Seen
    here with Panel 1.9.4 (also in a bare BootstrapTemplate app): now and then the first page of a fresh
    server is sent with every stylesheet still pointing at cdn.holoviz.org, which an offline classroom
    cannot reach (and the browser logs an error per file). Models created with ``dist_url`` already set
    get local URLs from the start.
    """
    try:
        from panel.io.resources import LOCAL_DIST
        doc = pn.state.curdoc
        if doc is not None:
            rel = pn.state.rel_path
            doc._template_variables.setdefault("dist_url", f"{rel}/{LOCAL_DIST}" if rel else LOCAL_DIST)
    except Exception:  # noqa: BLE001 - a Panel without these internals: keep its default behaviour
        pass


def build() -> pn.template.BootstrapTemplate:
    _local_resources()
    pn.extension(notifications=True)
    lab = Lab()
    W = lab.controls

    def section(title, *objs, collapsed=False, css=""):
        # one Column inside: the Bootstrap design gives every direct child of a Card a 10 px margin
        body = pn.Column(*objs, margin=(2, 0), sizing_mode="stretch_width")
        return pn.Card(body, header=pn.pane.HTML(f"<span class='khrbm-card-title'>{title}</span>", margin=(0, 4),
                                                 stylesheets=[CARD_TITLE_CSS]),
                       collapsed=collapsed, sizing_mode="stretch_width", css_classes=["khrbm-card", css],
                       margin=(3, 6), stylesheets=[CARD_CSS], header_background="#eef2f6")

    def pair(a, b):
        return pn.Row(W[a], W[b] if b in W else lab.reset_hint, margin=0)

    kh = section("KH competition · live", W["kh_mode"], W["eps0"], W["delta"],
                 W["ell"], W["radius"], W["p"], W["horizon"], pn.Row(W["ell_band"], W["shuffle_xi"], margin=0),
                 css="khrbm-kh")
    rbm = section("RBM · live", W["lr"], W["k"], W["epochs"], css="khrbm-rbm")
    model = section("Model · applies on Reset once started",
                    W["dataset"], W["task"], pair("n_hidden", "batch_size"), pair("init", "sampler"),
                    pair("seed", "compare_hint"), css="khrbm-model")
    more = section("More model settings", *[W[n] for n in MORE_FIELDS], collapsed=True, css="khrbm-more")
    diag = section("Diagnostics · live", *[W[n] for n in DIAG_FIELDS], collapsed=True, css="khrbm-diag")
    sidebar = [lab.preset,
               pn.Row(lab.start_btn, lab.pause_btn, lab.step_btn, lab.reset_btn, margin=0),
               lab.compare_row, kh, rbm, model, more, diag, lab.server_line]

    main = pn.Column(
        lab.banner, lab.errorbox, lab.status,
        pn.Row(lab.p_mosaic_a, lab.p_mosaic_b, lab.p_comp, margin=0),
        pn.Row(lab.p_mse, lab.p_ce, lab.p_third, margin=0),
        pn.Row(lab.p_ratio, lab.p_cos, lab.p_probe, margin=0),
        pn.Row(pn.pane.HTML("<b>Export</b>", margin=(12, 4, 0, 8)), lab.dl_weights, lab.dl_metrics, lab.dl_config,
               pn.pane.HTML("<b>Load</b> config .json / checkpoint .npz", margin=(12, 4, 0, 24)), lab.upload,
               margin=(4, 0), css_classes=["khrbm-files"]),
        sizing_mode="stretch_width", margin=0, css_classes=["khrbm-main"])

    tmpl = pn.template.BootstrapTemplate(
        title="khrbm · Krotov–Hopfield RBM lab", sidebar=sidebar, main=[main], sidebar_width=SIDEBAR_WIDTH,
        favicon=str(ASSETS / "favicon.svg"), logo=str(ASSETS / "logo.svg"), header_background="#1f3b57",
        main_max_width="",
    )
    pn.state.onload(lab.onload)
    cb = pn.state.add_periodic_callback(lab.tick, period=TICK_MS)

    def destroyed(_ctx):
        try:
            cb.stop()
        except Exception:  # noqa: BLE001
            pass
        lab.close()

    pn.state.on_session_destroyed(destroyed)
    return tmpl

