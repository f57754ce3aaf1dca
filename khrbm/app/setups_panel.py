"""My setups and Recent runs: two tabs of the sidebar's card, and the main area's read-only view of a past run.

- :class:`MySetups`: save the settings shown (both arms when comparing) under a name with a comment; recall,
  rename or delete one. Recalling opens it through ``Lab._open``, the path of a preset or a link, so the
  widgets and the trainer take exactly the saved arms.
- :class:`RecentRuns`: the registry's latest runs (the app's own, ``khrbm train``'s, sweeps'). Show one
  read-only (final mosaic and curves), overlay its curves on the current run's, or continue it from its
  checkpoint. A run whose checkpoint is gone says so and shows the thinned curves the registry kept. It also
  makes the recorder of every trainer of the lab, and says once if the registry cannot be written.

Each registry call is one short SQLite transaction (:func:`khrbm.app.setups.registry`); a registry that cannot
be read or written gives a message, training goes on.
"""
from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np
import panel as pn

from ..store import TrainerRecorder, open_run
from . import setups, views
from .dashboard import CURVE_SIZE
from .errors import UserError, guarded

WIDTH = 300
SMALL = ":host { font-size: 12px; color: #333; line-height: 1.3; }"
CONFIRM_SECONDS = 6.0
RECENT = 30              # runs listed
PAST_MOSAIC = dict(frame=200)


def _button(name, css, width=90, **kw):
    return pn.widgets.Button(name=name, css_classes=[css], width=width, margin=(4, 3), **kw)


def read_lists(read) -> tuple[list, str]:
    """``read(registry)`` and no problem, or an empty list and the registry's problem as a line of the tab."""
    try:
        with setups.registry() as reg:
            return read(reg), ""
    except UserError as exc:
        return [], f"<span style='color:#8a4b00'>Not listed: {html.escape(str(exc))}</span>"


class MySetups:
    """The "My setups" tab."""

    def __init__(self, lab):
        self.lab = lab
        self._confirm: tuple | None = None          # (name, time) of a first click on Delete
        self._saved: dict = {}                       # the saved setups listed, by name
        self._problem = ""                          # why the registry could not be read, as a line of the tab
        self.list = pn.widgets.Select(options={}, size=5, width=WIDTH, margin=(4, 6), css_classes=["khrbm-setups-list"])
        self.details = pn.pane.HTML("", width=WIDTH, margin=(0, 8), stylesheets=[SMALL],
                                    css_classes=["khrbm-setup-details"])
        self.recall_btn = _button("↩ Recall", "khrbm-setup-recall", button_type="primary",
                                  description="Open the setup picked: its settings (both arms), not started.")
        self.rename_btn = _button("Rename", "khrbm-setup-rename",
                                  description="Give the setup picked the name typed below.")
        self.delete_btn = _button("Delete", "khrbm-setup-delete", width=104,
                                  description="Delete the setup picked (click twice).")
        self.name = pn.widgets.TextInput(placeholder="name", width=120, margin=(4, 3, 4, 6),
                                         css_classes=["khrbm-setup-name"])
        self.comment = pn.widgets.TextInput(placeholder="comment (optional)", width=174, margin=(4, 3),
                                            css_classes=["khrbm-setup-comment"])
        self.replace = pn.widgets.Checkbox(name="replace one of that name", margin=(10, 6, 4, 8),
                                           css_classes=["khrbm-setup-replace"])
        self.save_btn = _button("Save settings", "khrbm-setup-save", width=110, button_type="success",
                                description="Save the settings shown (both arms when comparing) under the name "
                                "typed, with the comment.")
        self.said = pn.pane.HTML("", width=WIDTH, margin=(0, 8), stylesheets=[SMALL], css_classes=["khrbm-setup-said"])
        self.list.param.watch(self._picked, "value")
        self.recall_btn.on_click(self._on_recall)
        self.rename_btn.on_click(self._on_rename)
        self.delete_btn.on_click(self._on_delete)
        self.save_btn.on_click(self._on_save)

    def error(self, msg: str):
        self.lab.error(msg)

    def view(self) -> pn.Column:
        return pn.Column(self.list, self.details, pn.Row(self.recall_btn, self.rename_btn, self.delete_btn, margin=0),
                         pn.pane.HTML("<b>Save the settings shown</b> (both arms):", margin=(8, 8, 0, 8),
                                      stylesheets=[SMALL]),
                         pn.Row(self.name, self.comment, margin=0), pn.Row(self.save_btn, self.replace, margin=0),
                         self.said, margin=0)

    def refresh(self, pick: str | None = None):
        """Read the saved setups again; pick ``pick`` (else keep the one picked). A registry that cannot be
        read leaves the list empty and says why in the tab (the lab's banner already says it once)."""
        saved, self._problem = read_lists(lambda reg: reg.setups())
        self._saved = {s.name: s for s in saved}
        keep = pick if pick in self._saved else (self.list.value if self.list.value in self._saved else None)
        self.list.options = {setups.setup_label(s): s.name for s in saved}
        self.list.value = keep or (saved[0].name if saved else None)
        self._picked(None)

    def _picked(self, _event):
        saved = self._saved.get(self.list.value)
        self.details.object = setups.setup_details(saved) if saved else (self._problem or "No setup saved yet.")
        self._unconfirm()

    def _unconfirm(self):
        self._confirm = None
        self.delete_btn.name = "Delete"

    def _picked_name(self) -> str:
        if not self.list.value:
            raise UserError("pick a setup in the list first")
        return self.list.value

    def _typed_name(self) -> str:
        name = (self.name.value_input or self.name.value or "").strip()
        if not name:
            raise UserError("type a name for the setup first")
        return name

    @guarded
    def _on_save(self, _event):
        name = self._typed_name()
        a, b = self.lab.shown_setup().arms()
        comment = (self.comment.value_input or self.comment.value or "").strip()
        with setups.registry() as reg:
            saved = reg.save_setup(name, a, b, comment, replace=self.replace.value)
        self.refresh(pick=saved.name)
        self.said.object = f"Saved “{html.escape(saved.name)}” ({'A/B' if saved.compare else 'single run'})."

    @guarded
    def _on_recall(self, _event):
        name = self._picked_name()
        with setups.registry() as reg:
            saved = reg.setup(name)
        comment = f": {saved.comment}" if saved.comment else ""
        self.lab._open(setups.setup_of(saved), loaded=f"Recalled setup “{saved.name}”{comment}. Press ▶ Start.")

    @guarded
    def _on_rename(self, _event):
        old, new = self._picked_name(), self._typed_name()
        with setups.registry() as reg:
            saved = reg.rename_setup(old, new)
        self.refresh(pick=saved.name)
        self.said.object = f"Renamed “{html.escape(old)}” to “{html.escape(saved.name)}”."

    @guarded
    def _on_delete(self, _event):
        name = self._picked_name()
        if self._confirm is None or self._confirm[0] != name or time.monotonic() - self._confirm[1] > CONFIRM_SECONDS:
            self._confirm = (name, time.monotonic())
            self.delete_btn.name = "Delete? Again"
            return
        with setups.registry() as reg:
            reg.delete_setup(name)
        self.refresh()
        self.said.object = f"Deleted “{html.escape(name)}”."


class RecentRuns:
    """The "Recent runs" tab, the past-run view of the main area, and the lab's run recorders."""

    def __init__(self, lab):
        self.lab = lab
        self.records: dict[int, object] = {}
        self._problem = ""                          # why the registry could not be read, as a line of the tab
        self.overlaid: int | None = None            # id of the run whose curves are overlaid
        self._recorders: list[TrainerRecorder] = []
        self._noticed = False
        self.list = pn.widgets.Select(options={}, size=6, width=WIDTH, margin=(4, 6), css_classes=["khrbm-runs-list"])
        self.details = pn.pane.HTML("", width=WIDTH, margin=(0, 8), stylesheets=[SMALL],
                                    css_classes=["khrbm-run-details"])
        self.refresh_btn = _button("↻", "khrbm-runs-refresh", width=40, description="Read the registry again.")
        self.show_btn = _button("Show", "khrbm-run-show", width=64,
                                description="Show the run picked, read-only: its final mosaic and its curves.")
        self.overlay_btn = _button("Overlay", "khrbm-run-overlay", width=84,
                                   description="Draw the run's curves (grey) on the current run's.")
        self.continue_btn = _button("Continue", "khrbm-run-continue", width=84,
                                    description="Continue the run picked from its checkpoint (replaces the run shown).")
        self.list.param.watch(self._picked, "value")
        self.refresh_btn.on_click(self._on_refresh)
        self.show_btn.on_click(self._on_show)
        self.overlay_btn.on_click(self._on_overlay)
        self.continue_btn.on_click(self._on_continue)
        self.close_btn = _button("✕ Close", "khrbm-past-close", width=80)
        self.close_btn.on_click(lambda _e: self._close_view())
        self.past_head = pn.pane.HTML("", sizing_mode="stretch_width", margin=(4, 8), stylesheets=[SMALL])
        self.past_body = pn.Row(margin=0)
        self.viewer = pn.Column(pn.Row(self.past_head, self.close_btn, margin=0), self.past_body, visible=False,
                                margin=(2, 4), css_classes=["khrbm-past"], sizing_mode="stretch_width",
                                styles={"border": "1px solid #c9d3dd", "border-radius": "6px",
                                        "background": "#fafbfc"})

    def error(self, msg: str):
        self.lab.error(msg)

    def view(self) -> pn.Column:
        return pn.Column(pn.Row(self.list, margin=0), self.details,
                         pn.Row(self.show_btn, self.overlay_btn, self.continue_btn, self.refresh_btn, margin=0),
                         margin=0)

    # --- recording ----------------------------------------------------------------------------------------
    def recorder(self) -> TrainerRecorder:
        """The recorder of a new trainer of the lab: its runs go to the registry (and their run folders)."""
        rec = TrainerRecorder()
        self._recorders = self._recorders[-2:] + [rec]
        return rec

    def check_recording(self):
        """Say once per lab if the registry cannot be written (training goes on; the run folders keep it all)."""
        if self._noticed:
            return
        problem = next((r.problem for r in self._recorders if r.problem), None)
        if problem:
            self._noticed, self._recorders = True, []
            banner = self.lab.banner
            text = f"**Runs are not recorded in the registry**: {html.escape(problem)}"
            banner.object = f"{banner.object}\n\n{text}" if banner.visible and banner.object else text
            banner.visible = True

    # --- the list -----------------------------------------------------------------------------------------
    def refresh(self):
        """Read the recent runs again (a registry that cannot be read: an empty list, and why in the tab)."""
        records, self._problem = read_lists(self._recent)
        now = time.time()
        self.records = {r.id: r for r in records}
        keep = self.list.value if self.list.value in self.records else None
        self.list.options = {setups.run_label(r, now): r.id for r in records}
        self.list.value = keep if keep is not None else (records[0].id if records else None)
        self._picked(None)

    @staticmethod
    def _recent(reg) -> list:
        reg.reap()                                   # runs whose process is gone end "interrupted"
        return reg.recent(RECENT)

    def _picked(self, _event):
        record = self.records.get(self.list.value)
        self.details.object = setups.run_details(record) if record else (self._problem or "No run recorded yet.")
        self.overlay_btn.name = "No overlay" if record is not None and record.id == self.overlaid else "Overlay"

    @guarded
    def _on_refresh(self, _event):
        self.refresh()

    def _view(self):
        """The run picked, read back (its checkpoint, else the registry's thinned points)."""
        if self.list.value not in self.records:
            raise UserError("pick a run in the list first")
        with setups.registry() as reg:
            return open_run(reg, reg.run(self.list.value))

    # --- show -----------------------------------------------------------------------------------------------
    @guarded
    def _on_show(self, _event):
        self._show(self._view())

    def _show(self, view):
        rec = view.record
        name = f"#{rec.id}{' ' + rec.arm if rec.arm else ''}"
        color = views.ARM_COLORS.get(rec.arm or "A")
        note = (f"<br><span class='khrbm-past-note' style='color:#8a4b00'>{html.escape(view.note)}</span>"
                if view.note else "")
        self.past_head.object = (f"<span class='khrbm-past-title' data-run='{rec.id}' data-points="
                                 f"'{len(view.history['step'])}' data-weights='{int(view.W is not None)}'>"
                                 f"<b>Past run {name}</b> (read-only): {html.escape(rec.summary)}</span>{note}")
        if view.W is not None:
            mosaic = views.MosaicView(f"Receptive fields {name} · {views.MODE_LABEL[view.config.kh_mode]} (final)",
                                      view.W.shape[1], view.image_shape, **PAST_MOSAIC)
            mosaic.update(view.W, view.n_pixels)
            first = mosaic.fig
        else:
            first = views.placeholder_figure(f"Receptive fields {name}", ["Its checkpoint is gone:",
                                             "the registry keeps no weights,", "only thinned curves."],
                                             width=280, height=250)
        markers = np.array(sorted({float(c["epoch"]) for c in view.changes}), np.float64)
        panes = [pn.pane.Bokeh(first, margin=(0, 2))]
        if view.config.task == "classification":
            second = ("accuracy", "Classification accuracy (validation)", "accuracy (fraction)", False)
        else:
            second = ("ce", "Cross-entropy", "cross-entropy per pixel (nats, log)", True)
        for key, title, ylabel, log_y in (("mse", "Reconstruction error", "MSE per pixel (log)", True), second):
            keys = [f"val_{key}", f"train_{key}"] if key != "accuracy" else ["accuracy"]
            series = [dict(key=k, label=f"{name} {'train' if k.startswith('train') else 'validation'}", color=color,
                           dash="dashed" if k.startswith("train") else "solid") for k in keys]
            curves = views.CurvesView(f"{title} {name}", "epoch", ylabel, series, log_y=log_y, **CURVE_SIZE)
            curves.update({k: views.history_arrays(view.history, "epoch", k) for k in keys}, markers)
            panes.append(pn.pane.Bokeh(curves.fig, margin=(0, 2)))
        self.past_body[:] = panes
        self.viewer.visible = True

    def _close_view(self):
        self.viewer.visible = False
        self.past_body[:] = []

    # --- overlay and continue ----------------------------------------------------------------------------
    @guarded
    def _on_overlay(self, _event):
        board = self.lab.dashboard
        if self.overlaid is not None and self.overlaid == self.list.value:
            board.overlay(None)
            self.overlaid = None
        else:
            view = self._view()
            rec = view.record
            board.overlay(f"#{rec.id}{' ' + rec.arm if rec.arm else ''} (past)", view.history)
            self.overlaid = rec.id
        self._picked(None)
        self.lab.tick(force=True)

    @guarded
    def _on_continue(self, _event):
        record = self.records.get(self.list.value)
        if record is None:
            raise UserError("pick a run in the list first")
        if not record.can_continue:
            gone = f"its checkpoint {record.checkpoint} is gone" if record.checkpoint else "it left no checkpoint"
            raise UserError(f"run #{record.id} cannot be continued: {gone} (Show and Overlay still draw the "
                            f"thinned curves the registry kept)")
        self.lab.load_checkpoint_file(Path(record.checkpoint), f"run #{record.id}", keep_lesson=False)
