"""Lessons in the lab: the picker (the "Lessons" tab of the sidebar's card) and the caption band of the main
area, which shows the class the current caption in large type and, where a ``pause`` event holds the run, a
Continue button for the teacher.

Playing a lesson opens the setup it was written for (``Lab._open``, the path of a preset or a link) with a new
trainer that plays it (``Trainer(lesson=...)``): each event applies at its step as a logged live change, so the
change markers and the lesson's timeline (dashboard.py) drop on the curves where it acts. Reset replays the
lesson from the setup it started from.
"""
from __future__ import annotations

import html

import panel as pn

from ..config import LIVE_FIELDS
from . import lessons, urlstate
from .errors import guarded
from .setups import registry

WIDTH = 300
CAPTION_CSS = """
.khrbm-caption { border-left: 7px solid #CC79A7; background: #fbf2f7; border-radius: 6px; padding: 4px 14px 6px 12px; }
.khrbm-caption-head { font-size: 13px; color: #8E3B74; font-weight: 700; letter-spacing: .02em; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.khrbm-caption-body { font-size: 26px; line-height: 1.22; color: #1b1b1b; font-weight: 500; }
.khrbm-caption-body.empty { color: #777; font-size: 18px; }
"""
CONTINUE_CSS = ".bk-btn { font-size: 20px !important; font-weight: 700; }"
ABOUT_CSS = ":host { font-size: 12px; color: #333; line-height: 1.3; }"


class LessonPanel:
    """The lesson picker and the caption band of one lab (``lab.lesson`` is the lesson its trainer plays)."""

    def __init__(self, lab):
        self.lab = lab
        self.choices: dict[str, lessons.LessonChoice] = {}
        self.start: urlstate.Setup | None = None      # the setup the lesson started from (what Reset goes back to)
        self._changes_seen = 0                        # changes in the last snapshot shown
        self.picker = pn.widgets.Select(options={}, width=WIDTH, css_classes=["khrbm-lesson-pick"], margin=(4, 6))
        self.about = pn.pane.HTML("", width=WIDTH, margin=(0, 8), stylesheets=[ABOUT_CSS],
                                  css_classes=["khrbm-lesson-about"])
        self.play_btn = pn.widgets.Button(name="▶ Play lesson", button_type="primary", width=130, margin=(4, 6),
                                          css_classes=["khrbm-lesson-play"],
                                          description="Open the lesson's setup; its events then play as the run "
                                          "goes (captions, settings, pauses).")
        self.stop_btn = pn.widgets.Button(name="■ Stop lesson", width=120, margin=(4, 6),
                                          css_classes=["khrbm-lesson-stop"],
                                          description="Stop playing the lesson; the run and its settings stay.")
        self.picker.param.watch(self._picked, "value")
        self.play_btn.on_click(self._on_play)
        self.stop_btn.on_click(self._on_stop)
        self.caption = pn.pane.HTML("", sizing_mode="stretch_width", margin=(2, 4), stylesheets=[CAPTION_CSS],
                                    css_classes=["khrbm-caption-pane"])
        self.continue_btn = pn.widgets.Button(name="▶ Continue", button_type="success", width=160, height=54,
                                              margin=(8, 8, 4, 4), css_classes=["khrbm-continue"],
                                              stylesheets=[CONTINUE_CSS], visible=False,
                                              description="The lesson waits here: go on.")
        self.continue_btn.on_click(self._on_continue)
        self.band = pn.Row(self.caption, self.continue_btn, visible=False, sizing_mode="stretch_width", margin=0,
                           css_classes=["khrbm-lesson-band"])

    def error(self, msg: str):
        self.lab.error(msg)

    def view(self) -> pn.Column:
        return pn.Column(self.picker, self.about, pn.Row(self.play_btn, self.stop_btn, margin=0), margin=0)

    # --- the picker -------------------------------------------------------------------------------------
    def refresh(self):
        """List the shipped lessons and the registry's (a registry that cannot be read: shipped ones only)."""
        try:
            with registry() as reg:
                saved = reg.lessons()
            problem = ""
        except Exception as exc:  # noqa: BLE001 - UserError, or a stored lesson that no longer parses
            saved, problem = [], f"saved lessons not listed: {exc}"
        choices = lessons.catalogue(saved)
        self.choices = {c.key: c for c in choices}
        keep = self.picker.value if self.picker.value in self.choices else None
        self.picker.options = {c.label: c.key for c in choices}
        self.picker.value = keep or (choices[0].key if choices else None)
        self._describe(problem)

    def _picked(self, _event):
        self._describe()

    def _describe(self, problem: str = ""):
        choice = self.choices.get(self.picker.value)
        text = ""
        if choice is not None:
            lesson = choice.lesson
            setup = "its own setup" if lesson.config else "the setup shown"
            text = (f"{html.escape(lesson.description)}<br><i>{len(lesson.events)} events; plays on {setup}"
                    f"{' (A/B)' if lesson.compare else ''}.</i>")
        if problem:
            text += f"<br><span style='color:#8a4b00'>{html.escape(problem)}</span>"
        self.about.object = text

    @guarded
    def _on_play(self, _event):
        choice = self.choices.get(self.picker.value)
        if choice is None:
            return
        setup = lessons.lesson_setup(choice.lesson, self.lab.shown_setup())
        self.lab._open(setup, lesson=choice.lesson, loaded="")
        self.start = setup

    @guarded
    def _on_stop(self, _event):
        trainer = self.lab.trainer
        if trainer is None or self.lab.lesson is None:
            return

        def done(_snap):
            if trainer is self.lab.trainer:
                self.lab.lesson = None
                self.lab.tick(force=True)
        self.lab._background(lambda: trainer.set_lesson(None), done, "stopping the lesson…")

    def _on_continue(self, event):
        self.lab._on_start(event)          # Start, by its name in a lesson (guarded there)

    def restart(self, shown: urlstate.Setup) -> urlstate.Setup:
        """What Reset installs: the setup shown, or while a lesson plays the setup it started from (so that it
        replays as before), with the model settings that wait for Reset."""
        if self.lab.lesson is None or self.start is None:
            return shown
        changes = self.lab._model_changes()
        a, b = self.start.arms()
        return urlstate.Setup.of(self.start.preset, a.replace(**changes), b.replace(**changes) if b else None,
                                 shown.compare)

    # --- the caption band -------------------------------------------------------------------------------
    def update(self, snap, page_shown: bool):
        """Show the caption of ``snap`` (the band is hidden without a lesson) and Continue where it waits."""
        state = lessons.caption_state(snap)
        if state is None:
            self._changes_seen = 0
            if self.band.visible:
                self.band.visible = False
            return
        if len(snap.changes) != self._changes_seen:        # its events set arm A's settings: the sidebar follows
            self._changes_seen = len(snap.changes)
            self.lab.controls.show(self.lab.shown_config(), names=sorted(LIVE_FIELDS))
        lesson = self.lab.lesson
        name = f" · {html.escape(lesson.name)}" if lesson is not None and lesson.name else ""
        where = f"event {state.number} of {state.total}" if state.number else f"{state.total} events"
        following = (f" · next at epoch {state.next_epoch:.2f}" if state.next_epoch is not None
                     else " · last event")
        waiting = " · waits for Continue" if state.waiting else ""
        body = (f"<div class='khrbm-caption-body'>{html.escape(state.text)}</div>" if state.text
                else "<div class='khrbm-caption-body empty'>(no caption yet)</div>")
        text = (f"<div class='khrbm-caption' data-event='{state.number}' data-event-step='{state.step}' "
                f"data-waiting='{int(state.waiting)}' data-total='{state.total}'>"
                f"<div class='khrbm-caption-head'>LESSON · {where}{following}{waiting}{name}</div>"
                f"{body}</div>")
        if self.caption.object != text:
            self.caption.object = text
        if not self.band.visible:
            self.band.visible = True
        if page_shown and self.continue_btn.visible != state.waiting:
            self.continue_btn.visible = state.waiting
