"""The khrbm lab: the controller of one browser tab, and :func:`build`, its page.

Served per browser tab by ``app/main.py`` (`panel serve app`) or ``khrbm serve``. Each session builds one
:class:`Lab`: its own Trainer (background thread), the sidebar's settings (controls.py, generated from
``khrbm.config.FIELDS``) and the figures (dashboard.py, views.py). A periodic callback reads
``trainer.snapshot`` and redraws only when ``snapshot.version`` changed. The Lab holds no copy of the
run's settings: it reads them from the trainer (``trainer.configs``), which checks every change. Closing
the tab closes the trainer. Nothing here trains on the event loop; calls that wait for the trainer's loop
(loading a checkpoint, closing) run on worker threads.

Assets (CSS, favicon, logo) live in ``khrbm/app/assets/`` (package data) and are inlined into the page
(style.css as the stylesheet of the panes that use it, favicon and logo base64-encoded by the template),
so neither `panel serve app` nor `khrbm serve` needs extra flags (no --static-dirs).
"""
from __future__ import annotations

import functools
import html
import threading
import time
import traceback
from pathlib import Path

import panel as pn

from .. import data as kdata
from ..config import FIELD, MID_RUN_FIELDS, ConfigError, RunConfig, check_value
from . import classroom, controls, files, layout, library, presets, session, urlstate, views
from .dashboard import Dashboard
from .errors import KNOWN, UserError, describe, short_message
from .errors import guarded as reported
from .inspect import InspectPanel
from .session import log

ASSETS = Path(__file__).resolve().parent / "assets"
TICK_MS = 400                 # periodic callback period
MOSAIC_MIN_INTERVAL = 0.9     # seconds between mosaic redraws (the heaviest data to send)
# Copy the page's URL (kept on the setup shown, see Lab._sync_link). navigator.clipboard needs a secure
# context (https or localhost); on a classroom LAN over http the textarea fallback copies instead.
COPY_LINK = "Copy link"
COPY_LINK_JS = """
const url = window.location.href;
const fallback = () => {
  const area = document.createElement("textarea");
  area.value = url; document.body.appendChild(area); area.select();
  try { document.execCommand("copy"); } finally { area.remove(); }
};
if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(url).catch(fallback); }
else { fallback(); }
"""


@functools.lru_cache(maxsize=1)
def _read_css() -> str:
    try:
        return (ASSETS / "style.css").read_text()
    except OSError:
        return ""


def _trainer_module():
    from ..train import trainer  # imported late: the app still renders its error if the import fails
    return trainer


def guarded(fn):
    """A person's action in this tab (it is not idle: classroom.Seat.touch), its exception shown to them
    (errors.guarded)."""
    inner = reported(fn)

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        self.seat.touch()
        return inner(self, *args, **kwargs)
    return wrapper


# ------------------------------------------------------------------------------------------------
class Lab(pn.viewable.Viewer):
    """One tab's lab: a Trainer, the controls that steer it and the dashboard that shows it. As a Panel
    object (in a notebook) it shows the sidebar beside the main area."""

    def __init__(self):
        super().__init__()
        self.trainer = None
        self.lesson = None                 # the Lesson its trainer plays (library: the Lessons tab), or None
        self.awaiting_reset: dict = {}     # model settings (and Compare) changed after the start: Reset applies them
        self._started = False
        self._last_snap = None             # the snapshot drawn last
        self._last_mosaic = 0.0
        self._mosaic_snap = None           # the snapshot whose mosaics are shown
        self._mosaic_version = -1
        self._closed = False
        self._jobs: list = []
        self._jobs_lock = threading.Lock()
        self._busy = ""
        self._error_until = 0.0
        self._loaded_msg = ""
        self.preset_id = presets.STORY     # the base of the page's link
        self._copied_until = 0.0
        self._page_shown = not session.served()   # served: set when the browser has rendered the page
        self.session_id = session.session_id()
        self.seat = classroom.Seat(self)   # trains, waits for a place, follows a shared run, or was released

        css = _read_css()
        self.status = pn.pane.HTML(views.status_html(None), css_classes=["khrbm-status"],
                                   sizing_mode="stretch_width", margin=(0, 5), stylesheets=[css])
        self.banner = pn.pane.Alert("", alert_type="warning", visible=False, margin=(0, 5, 4, 5),
                                    css_classes=["khrbm-banner"], sizing_mode="stretch_width")
        self.errorbox = pn.pane.Alert("", alert_type="danger", visible=False, margin=(0, 5, 4, 5),
                                      css_classes=["khrbm-error"], sizing_mode="stretch_width")
        self.server_line = pn.pane.HTML("", css_classes=["khrbm-server"], margin=(4, 10), stylesheets=[css])
        self.controls = controls.Controls(RunConfig(), self._on_field)
        self._build_buttons()
        self.files = files.FileBar(weights=lambda: files.weights_npz(self.seat.trainer()),
                                   metrics=lambda: files.metrics_csv(self._snap_now()),
                                   config=lambda: files.config_json(self.shown_config()),
                                   on_upload=self._on_upload, report=self.error)
        self.dashboard = Dashboard()
        self.inspect = InspectPanel(report=self.error)     # the unit panel (an overlay, opened by a click)
        self.library = library.Library(self)   # My setups, Recent runs, Lessons

    def _build_buttons(self):
        self.preset = pn.widgets.Select(name="Preset", groups=presets.groups(), value=presets.STORY,
                                        description="Load a ready setup (not started). The authors' tuned "
                                        "settings come from their published configs.", css_classes=["khrbm-preset"],
                                        width=232, margin=(0, 2, 2, 10))
        self.copy_link = pn.widgets.Button(name=COPY_LINK, css_classes=["khrbm-copy-link"], width=80,
                                           margin=(22, 6, 2, 2), button_type="light",
                                           description="Copy a link to this setup (preset and every changed "
                                           "setting): opening it restores the setup.")
        self.copy_link.js_on_click(code=COPY_LINK_JS)
        self.copy_link.on_click(self._on_copy_link)
        self.controls.watch(self.preset, self._on_preset)
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
        self.reset_hint = pn.pane.HTML("", width=150, margin=(8, 2, 0, 8), css_classes=["khrbm-reset-hint"],
                                       styles={"font-size": "11px", "color": "#8a4b00"})

    # --- the run's settings: held by the trainer ----------------------------------------------------
    def _configs(self) -> tuple:
        """The arms' settings as the trainer holds them (queued live changes included); without a trainer of
        its own (following, queued, released), those of the snapshot the tab shows."""
        if self.trainer is not None:
            return self.trainer.configs
        snap = self._snap_now()
        return tuple(a.config for a in snap.arms) if snap is not None else (RunConfig(),)

    @property
    def cfg(self) -> RunConfig:
        """Arm A's settings (:meth:`_configs`)."""
        return self._configs()[0]

    @property
    def compare(self) -> bool:
        if self.trainer is not None:
            return self.trainer.compare
        snap = self._snap_now()
        return snap is not None and snap.compare

    def _model_changes(self) -> dict:
        return {k: v for k, v in self.awaiting_reset.items() if k != "compare"}

    def shown_config(self) -> RunConfig:
        """The settings the sidebar shows: the trainer's, with the changes that wait for Reset."""
        return self.cfg.replace(**self._model_changes())

    def shown_compare(self) -> bool:
        return self.awaiting_reset.get("compare", self.compare)

    def shown_setup(self) -> urlstate.Setup:
        """What the sidebar shows, both arms: the trainer's, with the changes that wait for Reset."""
        configs = self._configs()
        b = configs[1].replace(**self._model_changes()) if self.compare and len(configs) > 1 else None
        return urlstate.Setup.of(self.preset_id, self.shown_config(), b, self.shown_compare())

    # --- trainer lifecycle --------------------------------------------------------------------------
    def _install(self, cfg: RunConfig, compare: bool, config_b: RunConfig | None = None, lesson=...):
        """A fresh Trainer for ``cfg`` (plus, when comparing, ``config_b`` or else the plain twin): new init, not
        started, recorded in the registry; it plays ``lesson`` (default: the lesson playing now).

        A new Trainer (instead of ``reset``) keeps the event loop free: construction returns at once and
        the loop thread compiles / evaluates step 0 while the page already shows the initial weights.
        """
        if self._closed:
            return
        self.seat.check_may_train()
        ok, msg = kdata.dataset_status(cfg.dataset)
        if not ok:
            raise UserError(msg)
        dataset = kdata.load_dataset(cfg.dataset)          # cached per process by khrbm.data
        lesson = self.lesson if lesson is ... else lesson
        # ConfigError (e.g. ℓ too large) or LessonError leaves the old trainer in place
        new = _trainer_module().Trainer(*urlstate.Setup(self.preset_id, cfg, compare, config_b).arms(),
                                        dataset=dataset, lesson=lesson, recorder=self.library.recorder())
        old, self.trainer, self.lesson = self.trainer, new, lesson
        session.register(self.session_id, new)
        self.seat.installed(new)
        if old is not None:
            session.close_in_background(old, None, "replaced")
        self.awaiting_reset.clear()
        self._started = False
        self._show_awaiting()
        self.dashboard.structure = None
        self.tick()

    def _install_setup(self, setup: urlstate.Setup):
        self._install(setup.config, setup.compare, setup.config_b)

    def started(self) -> bool:
        """A run has begun (Start / Step pressed, or a loaded checkpoint past step 0)."""
        snap = self._snap_now()
        if snap is None:
            return False
        return self._started or snap.state == "running" or any(a.step > 0 for a in snap.arms)

    def _snap_now(self):
        return self.seat.snapshot()

    def close(self):
        """Session destroyed: free the trainer (joined off the event loop), the training place, the shared run."""
        if self._closed:
            return
        self._closed = True
        t, self.trainer = self.trainer, None
        self.seat.close(t)
        if t is not None:
            session.close_in_background(t, self.session_id, "tab closed")
        else:
            session.unregister(self.session_id)

    # --- presets and links ---------------------------------------------------------------------------
    @guarded
    def onload(self, query=None, preset: str | None = None):
        """Open on the setup of the page's link (served), else on ``preset``, else on the story (the bars
        when MNIST is not here). Whatever the link cannot set is named in the banner."""
        notes = []
        default = preset or presets.STORY
        mnist_ok, mnist_msg = kdata.dataset_status("mnist")
        if not mnist_ok and presets.PRESETS[default].fields["dataset"] == "mnist":
            default = presets.BARS
            notes.append("**MNIST is not available here**, so the lab opened on the offline *bars* data. To get "
                         "MNIST run `khrbm data fetch mnist` (needs internet once), or set `KHRBM_DATA_DIR` to "
                         "a folder with the MNIST IDX files; then reload.")
            log.info("MNIST not available: %s", mnist_msg)
        if query is None:
            query = session.query_args()
        code, query = classroom.split_follow(query)
        if code is not None:
            notes.append(self.seat.follow(code))
        setup, problems = urlstate.parse(query, default, check=self._check_setup)
        if problems:
            log.info("session %s: link not used in full: %s", self.session_id, " | ".join(problems))
            notes.append("**This link asked for what cannot be used here**; the preset's values stand instead: "
                         + "; ".join(html.escape(short_message(p, 160)) for p in problems[:6]))
        notes = [n for n in notes if n]
        if notes:
            self.banner.object = "\n\n".join(notes)
            self.banner.visible = True
        if self.seat.mode == "follow":
            self.tick(force=True)
            return
        t0 = time.perf_counter()
        self._show_setup(setup)                 # shown while the tab waits for a place
        self.seat.open(functools.partial(self._open, setup))
        log.info("session %s opened (first frame in %.2f s); live trainers: %d", self.session_id,
                 time.perf_counter() - t0, session.live_trainers())

    def _check_setup(self, cfg: RunConfig):
        """ConfigError unless ``cfg`` can run here (its dataset is here; ℓ fits the model)."""
        ok, msg = kdata.dataset_status(cfg.dataset)
        if not ok:
            raise ConfigError("dataset", short_message(msg))
        from ..train.run import check_ell   # imported late, as the trainer
        check_ell(cfg, kdata.load_dataset(cfg.dataset))

    @guarded
    def _on_preset(self, event):
        try:
            p = presets.PRESETS[event.new]
            ok, msg = kdata.dataset_status(p.fields["dataset"])
            if not ok:
                raise UserError(f"preset '{p.name}' needs {p.fields['dataset']}: {msg}")
            self._open(urlstate.preset_setup(p.id))
        except Exception:
            with self.controls.quiet():
                self.preset.value = event.old
            raise

    def _open(self, setup: urlstate.Setup, lesson=None, loaded: str | None = None):
        """A fresh trainer for ``setup``, shown in the sidebar (not started), playing ``lesson``; ``loaded``: the
        hint to show (default: the preset's)."""
        self._install(setup.config, setup.compare, setup.config_b, lesson=lesson)
        self._show_setup(setup)
        p = presets.PRESETS[setup.preset]
        changed = "" if setup == urlstate.preset_setup(setup.preset) else " (with the link's changes)"
        self._loaded_msg = loaded if loaded is not None else \
            f"Loaded “{p.name}”{changed}: {p.description}. Press ▶ Start."
        self.clear_error()
        self.tick(force=True)

    def _show_setup(self, setup: urlstate.Setup):
        self.preset_id = setup.preset
        with self.controls.quiet():
            self.preset.value = setup.preset
        self.controls.show(setup.config, setup.compare)

    def link_query(self) -> str:
        """The query of a link to what the sidebar shows (the preset and every setting changed from it); a
        follower's: the follow link."""
        return self.seat.link_query() or urlstate.encode(self.shown_setup())

    def _on_copy_link(self, _event):
        """Say that the link was copied (the copying is done by the browser, COPY_LINK_JS)."""
        self.copy_link.name = "✓ Copied"
        self._copied_until = time.monotonic() + 2.0

    def _sync_link(self):
        """Keep the page's URL on the setup shown, so that the address bar (and Copy link) reproduces it."""
        loc = pn.state.location if session.served() else None
        if loc is None or self.seat.mode == "waiting":       # waiting: the link's setup is not open yet
            return
        search = "?" + self.link_query()
        if loc.search != search:
            loc.search = search
        if self._copied_until and time.monotonic() > self._copied_until:
            self.copy_link.name, self._copied_until = COPY_LINK, 0.0

    # --- settings -----------------------------------------------------------------------------------
    def _widget_value(self, name, value):
        if name == "horizon" and self.cfg.horizon is None and value is not None \
                and abs(value - self.cfg.epochs) < 1e-12:
            return None          # S shown as a number; it stays "follow epochs" while it equals epochs
        return value

    @guarded
    def _on_field(self, name, value):
        value = self._widget_value(name, value)
        try:
            if name in MID_RUN_FIELDS:
                self._apply_live(name, value)
            else:
                self._apply_model(name, value)
        except Exception:
            self._revert(name)
            raise

    def _revert(self, name):
        """Show again the value in force (or waiting for Reset) after a refused change."""
        if name == "compare":
            with self.controls.quiet():
                self.controls.compare.value = self.shown_compare()
        else:
            self.controls.show(self.shown_config(), names=(name,))

    def _apply_live(self, name, value):
        """A live setting goes to the trainer, which checks it (ConfigError) and applies it at the next
        minibatch; before the start, a fresh trainer takes it (no change marker)."""
        if getattr(self.cfg, name) == value:
            return
        if not self.started():
            self._install_setup(self.shown_setup().changed(name, value))
        else:
            arm = "A" if (name == "kh_mode" and self.compare) else "both"   # arm B stays the plain RBM
            self.trainer.update(arm=arm, **{name: value})
        if name == "epochs":
            self.controls.show(self.cfg, names=("horizon",))
        self.clear_error()
        self.tick()

    def _apply_model(self, name, value):
        """A model setting (or Compare) waits for Reset once a run has begun; before, it applies at once."""
        if name == "compare":
            value = bool(value)
        else:
            value = check_value(FIELD[name], value)
            if name == "dataset":
                ok, msg = kdata.dataset_status(value)
                if not ok:
                    raise UserError(msg)
        current = self.compare if name == "compare" else getattr(self.cfg, name)
        if value == current:
            self.awaiting_reset.pop(name, None)
        else:
            self.awaiting_reset[name] = value
        if not self.started():
            try:
                self._install_setup(self.shown_setup())  # ConfigError: classification on bars
            except Exception:
                self.awaiting_reset.pop(name, None)
                self._show_awaiting()
                raise
            self.clear_error()
        else:
            self._show_awaiting()

    def _show_awaiting(self):
        self.controls.mark_needs_reset(self.awaiting_reset)
        n = len(self.awaiting_reset)
        self.reset_btn.name = f"⟲ Reset ({n})" if n else "⟲ Reset"
        self.reset_btn.button_type = "warning" if n else "default"
        self.reset_hint.object = (f"{n} change{'s' if n > 1 else ''} wait{'' if n > 1 else 's'} for ⟲ Reset"
                                  if n else "")

    # --- buttons ------------------------------------------------------------------------------------
    @guarded
    def _on_start(self, _event):
        if self.seat.reclaim(self._on_start):
            return
        if self.trainer is None:
            raise UserError("the trainer is not ready yet")
        snap = self.trainer.snapshot
        if snap.state in ("diverged", "error"):
            raise UserError(f"{snap.message or snap.state} — press ⟲ Reset (lower η or ε0 first)")
        if snap.state == "finished":
            raise UserError(f"the run reached its {snap.arms[0].config.epochs} epochs: raise 'epochs' (applies at "
                            "once) to train on, or Reset")
        self.trainer.start()
        self._started, self._loaded_msg = True, ""
        self.clear_error()
        self.tick()

    @guarded
    def _on_pause(self, _event):
        if self.trainer is not None:
            self.trainer.pause()
            self.tick()

    @guarded
    def _on_step(self, _event):
        if self.seat.reclaim(self._on_step):
            return
        if self.trainer is not None:
            self.trainer.step(1)
            self._started, self._loaded_msg = True, ""
            self.tick()

    @guarded
    def _on_reset(self, _event):
        self._install_setup(self.library.restart(self.shown_setup()))
        self._loaded_msg = "Reset: fresh initialisation with the settings shown. Press ▶ Start."
        self.clear_error()

    # --- uploads ------------------------------------------------------------------------------------
    @guarded
    def _on_upload(self, name: str, raw: bytes):
        if files.upload_kind(name, raw) == "checkpoint":
            if self.trainer is None:
                raise UserError("the trainer is not ready yet")
            self._load_checkpoint(name, raw)
            return
        cfg = files.read_config(name, raw)
        compare = self.compare
        self._install(cfg, compare, lesson=None)
        self.controls.show(cfg, compare)
        self._loaded_msg = f"Loaded config {name}. Press ▶ Start."
        self.clear_error()
        self.tick(force=True)

    def _load_checkpoint(self, name: str, raw: bytes):
        self.load_checkpoint_file(files.temp_file(raw, ".npz"), name, temporary=True)

    def load_checkpoint_file(self, path: Path, name: str, temporary: bool = False, keep_lesson: bool = True):
        """Load checkpoint ``path`` on a worker thread (Trainer.load_checkpoint waits for the trainer's loop;
        ``temporary``: delete the file afterwards; ``keep_lesson``: a lesson playing goes on from the loaded
        step, else it stops); the next tick applies the result to the widgets."""
        self.seat.check_may_train()            # a follower's or a queued tab's controls are read-only
        trainer = self.trainer

        def work():
            try:
                if not keep_lesson:
                    trainer.set_lesson(None)
                snap = trainer.load_checkpoint(path)
            except Exception as exc:  # noqa: BLE001 - CheckpointError, ConfigError, DataError ...
                raise UserError(f"{name}: {str(exc).replace(str(path), 'the file')}") from None
            finally:
                if temporary:
                    path.unlink(missing_ok=True)
            return snap

        def done(snap):
            if trainer is self.trainer:
                self._loaded(snap, f"Loaded checkpoint {name} (step {snap.arms[0].step:,}). Press ▶ Start to "
                                   "continue.")

        self._background(work, done, f"loading {name}…")

    def adopt(self, trainer, message: str):
        """Train on ``trainer``, restored from a checkpoint (a copy of a shared run, or this tab's run back)."""
        self.trainer = trainer
        session.register(self.session_id, trainer)
        self.seat.installed(trainer)
        self._loaded(trainer.snapshot, message, rebuild=False)   # the figures drawn fit it: the same run

    def _loaded(self, snap, message: str, rebuild: bool = True):
        """The sidebar and the figures for a trainer that took a checkpoint (``snap``: its snapshot then)."""
        self.lesson = self.trainer.lesson
        self.controls.show(self.cfg, self.compare)
        self.awaiting_reset.clear()
        self._show_awaiting()
        if rebuild:
            self.dashboard.structure = None
        self._started = snap.arms[0].step > 0
        self._loaded_msg = message
        self.clear_error()
        self.tick(force=True)

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
                if not isinstance(exc, KNOWN):
                    log.error("background job failed: %r", exc)
                self.error(describe(exc))
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
        self._sync_link()
        if self._error_until and time.monotonic() > self._error_until:
            self.clear_error()
        if self._jobs:
            self._finish_jobs()
        force = self.seat.tick(self._page_shown) or force
        snap = self._snap_now()
        if snap is None and self.seat.mode == "waiting":            # over the server's cap: say so
            queued = views.status_html(None, "queued")
            if self.status.object != queued:
                self.status.object = queued
        due = time.monotonic() - self._last_mosaic >= self.seat.mosaic_interval(MOSAIC_MIN_INTERVAL)
        if snap is None or (not force and snap is self._last_snap and not (due and self._mosaic_snap is not snap)):
            return                      # (a follower's paused frame is drawn again once its mosaics are due)
        self._last_snap = snap
        board, cpu = self.dashboard, time.thread_time()
        with pn.io.hold():
            if board.needs_rebuild(snap):
                t0 = time.perf_counter()
                board.rebuild(snap)
                self.inspect.attach(board)
                log.info("session %s: views rebuilt in %.2f s", self.session_id, time.perf_counter() - t0)
                due = True
            heavy = self._mosaic_snap is not snap and (force or due or self.seat.mosaics_at_once(snap))
            board.update(snap, heavy)
            self.inspect.update(snap, heavy)
            if heavy:
                self._mosaic_snap, self._mosaic_version = snap, snap.version
                self._last_mosaic = time.monotonic()
            busy = " — ".join(x for x in (self.seat.line(), self._busy) if x)
            self.status.object = views.status_html(snap, busy, self._loaded_msg, self._mosaic_version)
            self._buttons(snap)
            self.library.update(snap, self._page_shown)
        self.seat.drawn(time.thread_time() - cpu)      # sending included: the hold ends above

    def _buttons(self, snap):
        if not self._page_shown:   # Bokeh 3.9 fails on a button's `disabled` that changes before it is drawn
            return
        running = snap.state == "running"
        busy = snap.state in ("compiling",)
        allowed = self.seat.allowed_buttons()
        self.start_btn.disabled = "start" not in allowed or running or busy or snap.state in ("closed", "error")
        self.pause_btn.disabled = "pause" not in allowed or not running
        self.step_btn.disabled = "step" not in allowed or running or busy

    def _server_line(self):
        text = classroom.server_line()
        if self.server_line.object != text:
            self.server_line.object = text

    def __panel__(self):
        return layout.notebook(self)

    def attach(self, preset: str | None = None, at_once: bool = False):
        """Start redrawing and open the first setup (the page's link, else ``preset``, else the story); served,
        close with the session. ``at_once``: open it now, so that the code that follows (a notebook's
        next cells) finds the trainer; else when the page is shown (its first frame comes sooner)."""
        self._callback = session.periodic(self.tick, TICK_MS)
        if at_once:
            self.onload(preset=preset)
        else:
            pn.state.onload(functools.partial(self.onload, preset=preset))
        if session.served():
            pn.state.onload(self._shown)
            def destroyed(_ctx):
                self._callback.stop()
                self.close()
            pn.state.on_session_destroyed(destroyed)

    def _shown(self):
        self._page_shown = True
        self.tick(force=True)

    def stop(self):
        """Stop redrawing and close the trainer (in a notebook; a served tab does this when it closes)."""
        try:
            self._callback.stop()
        except Exception:  # noqa: BLE001 - never started, or already stopped
            pass
        self.close()


def build() -> pn.template.BootstrapTemplate:
    """The page of one browser tab: a fresh Lab in the Bootstrap template."""
    session.local_resources()
    session.share_the_gil()
    pn.extension(notifications=True)
    lab = Lab()
    page = layout.page(lab, favicon=str(ASSETS / "favicon.svg"), logo=str(ASSETS / "logo.svg"))
    lab.attach()
    return page


def lab(preset: str | None = None) -> Lab:
    """The lab as a Panel object, for a notebook (after ``pn.extension()``) or a notebook served with
    `panel serve` (where the page's link may choose the setup). ``preset``: an id of presets.PRESETS."""
    if preset is not None and preset not in presets.PRESETS:
        raise ValueError(f"unknown preset {preset!r}; one of {', '.join(presets.PRESETS)}")
    session.local_resources()
    new = Lab()
    new.attach(preset, at_once=True)
    return new
