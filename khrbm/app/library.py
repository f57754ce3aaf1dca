"""What the lab keeps and replays, in one card of the sidebar ("My setups · Recent runs · Lessons", three tabs)
and two parts of the main area (a lesson's caption band, a past run's read-only view).

The :class:`Library` of a lab is its one entry point for these (the lab calls :meth:`~Library.recorder` for
every new trainer, :meth:`~Library.update` on every new snapshot, :meth:`~Library.restart` on Reset);
the parts live in setups_panel.py (My setups, Recent runs) and lesson_panel.py (Lessons).
"""
from __future__ import annotations

import panel as pn

from . import urlstate
from .errors import guarded
from .lesson_panel import LessonPanel
from .setups_panel import MySetups, RecentRuns

TITLE = "My setups · Recent runs · Lessons"


class Library:
    def __init__(self, lab):
        self.lab = lab
        self.setups = MySetups(lab)
        self.runs = RecentRuns(lab)
        self.lessons = LessonPanel(lab)
        self.tabs = pn.Tabs(("My setups", self.setups.view()), ("Recent runs", self.runs.view()),
                            ("Lessons", self.lessons.view()), dynamic=True, margin=0,
                            css_classes=["khrbm-library-tabs"])
        self.tabs.param.watch(self._tab, "active")
        self.band = self.lessons.band            # main area: the lesson's caption and Continue
        self.viewer = self.runs.viewer           # main area: a past run, read-only

    def error(self, msg: str):
        self.lab.error(msg)

    def follow(self, card: pn.Card):
        """Read the registry again whenever ``card`` (the sidebar's card holding the tabs) is opened."""
        card.param.watch(lambda event: None if event.new else self.refresh(), "collapsed")

    @guarded
    def refresh(self):
        """Read the lists of every tab again (the registry may have changed in another tab or process)."""
        self.lessons.refresh()
        self.setups.refresh()
        self.runs.refresh()

    @guarded
    def _tab(self, event):
        (self.setups.refresh, self.runs.refresh, self.lessons.refresh)[event.new]()

    # --- hooks of the lab --------------------------------------------------------------------------------
    def recorder(self):
        """The recorder of a new trainer (its runs go to the registry)."""
        return self.runs.recorder()

    def update(self, snap, page_shown: bool):
        """A new snapshot: the caption band, and a registry that cannot be written (said once)."""
        self.lessons.update(snap, page_shown)
        self.runs.check_recording()

    def restart(self, shown: urlstate.Setup) -> urlstate.Setup:
        """The setup Reset installs (see LessonPanel.restart)."""
        return self.lessons.restart(shown)
