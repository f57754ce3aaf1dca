"""Lessons in the app, Panel-free: which lessons the lab offers (the shipped ones and the registry's), the setup
a lesson opens on, and what the class sees of a lesson being played: its current caption, whether it waits for
the teacher's Continue, and its events as a timeline on the curves (short labels).

The trainer plays the lesson (:mod:`khrbm.train.lesson`, ``Trainer(lesson=...)``); everything here reads a
:class:`~khrbm.train.snapshot.Snapshot` (``caption``, ``lesson``: the events resolved for the run).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..config import FIELD
from ..train.lesson import Lesson, LessonMark, read_lesson_file, shipped_lessons
from . import presets, urlstate

SHIPPED = "shipped:"       # choice keys: shipped:<file stem>, saved:<registry name>
SAVED = "saved:"
WAITING_STATES = ("idle", "paused")
PAUSE_MARK = "❚❚"          # as on the Pause button (⏸ is missing from common fonts)


@dataclass(frozen=True)
class LessonChoice:
    """One entry of the lesson picker."""
    key: str
    label: str
    lesson: Lesson


def catalogue(saved: Iterable = ()) -> list[LessonChoice]:
    """The shipped lessons (``khrbm/lessons/*.json``, by file name), then ``saved`` (the registry's
    :class:`~khrbm.store.StoredLesson` entries)."""
    out = []
    for stem, path in shipped_lessons().items():
        lesson = read_lesson_file(path)
        out.append(LessonChoice(SHIPPED + stem, lesson.name or stem, lesson))
    for stored in saved:
        out.append(LessonChoice(SAVED + stored.name, f"{stored.name} (saved)", stored.lesson))
    return out


def lesson_setup(lesson: Lesson, current: urlstate.Setup) -> urlstate.Setup:
    """The setup a lesson opens on: the one it was written for (its ``config``, arm B the plain twin when it
    compares), based on the nearest preset; a lesson without a config plays on the ``current`` setup."""
    if not lesson.config:
        return current
    a, b = lesson.setup()
    return urlstate.Setup.of(presets.nearest(a, b is not None), a, b)


def setting_label(name: str, value) -> str:
    """A live setting as a marker label says it: ``Δ=0``, ``KH_BU``, ``KH off``, ``band 1..ℓ on``."""
    if name == "kh_mode":
        return "KH off" if value == "off" else f"KH_{str(value).upper()}"
    symbol = FIELD[name].symbol or name
    if isinstance(value, bool):
        return f"{symbol} {'on' if value else 'off'}"
    if value is None:
        return f"{symbol} auto"
    return f"{symbol}={value:g}" if isinstance(value, (int, float)) else f"{symbol}={value}"


def event_label(mark: LessonMark, number: int) -> str:
    """A short label for the event ``number`` (1-based, in time order): ``3 Δ=0 (A)``, ``4 ❚❚ KH_BU… (A)``
    (❚❚: it pauses there)."""
    parts = [str(number)]
    if mark.pause:
        parts.append(PAUSE_MARK)
    settings = [setting_label(k, v) for k, v in mark.set.items()]
    if settings:
        parts.append(settings[0] + ("…" if len(settings) > 1 else ""))
        if mark.arm != "both":
            parts.append(f"({mark.arm})")
    return " ".join(parts)


def timeline(marks: Sequence[LessonMark], x: str, step: int) -> tuple[np.ndarray, list[str]]:
    """The lesson's events on a curve whose x is ``x`` ('epoch' or 'step'): positions and short labels of the
    events that have come (at or before ``step``) and of the next ones (all at the next event's step), so the
    class sees what comes next without squeezing the curves; events at one position share one label."""
    if not marks:
        return np.zeros(0), []
    upcoming = next((m.step for m in marks if m.step > step), None)
    groups: dict[float, list[str]] = {}
    for number, m in enumerate(marks, start=1):
        if m.step <= step or m.step == upcoming:
            groups.setdefault(float(getattr(m, x)), []).append(event_label(m, number))
    return np.array(list(groups), np.float64), [" · ".join(labels) for labels in groups.values()]


@dataclass(frozen=True)
class CaptionState:
    """What the caption band shows: ``text`` (the caption in force), ``number`` (1-based event whose caption it
    is, 0 before any), that event's ``step``, ``total`` events, ``waiting`` (a pause event holds the run at
    this step: Continue goes on) and ``next_epoch`` (when the next event comes; None after the last)."""
    text: str
    number: int
    step: int
    total: int
    waiting: bool
    next_epoch: float | None


def caption_state(snapshot) -> CaptionState | None:
    """The caption band's content for ``snapshot`` (None without a lesson). An event at step s is played
    before minibatch s, so an event at the current step has been played only if it paused the run there."""
    marks = snapshot.lesson
    if not marks:
        return None
    step = snapshot.step
    number, at = 0, -1
    for i, m in enumerate(marks, start=1):
        if m.step <= step and m.caption is not None and m.caption == snapshot.caption:
            number, at = i, m.step
    waiting = snapshot.state in WAITING_STATES and any(m.pause and m.step == step for m in marks)
    later = [m for m in marks if m.step > step or (m.step == step and not waiting and m.step > at)]
    return CaptionState(snapshot.caption, number, at, len(marks), waiting, later[0].epoch if later else None)
