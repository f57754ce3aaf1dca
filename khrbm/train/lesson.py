"""Lessons: scripted classroom stories, replayed on a run event by event.

A lesson is a small JSON (or YAML) file: a list of events, or an object with the events and the setup it was
written for::

    {"name": "...", "description": "...",
     "config": {RunConfig fields}, "compare": true,       # the setup (optional); compare: arm B = A with KH off
     "events": [
        {"at": {"epoch": 0}, "caption": "Two RBMs, same data and seed ...", "pause": true},
        {"at": {"epoch": 8}, "set": {"delta": 0.0}, "arm": "A", "caption": "Δ → 0: ..."},
        {"at": {"step": 1200}, "set": {"kh_mode": "bu"}}]}

Each event: ``at`` one of ``{"epoch": e}`` (e ≥ 0, may be fractional) or ``{"step": s}``; ``set`` live fields
(``config.LIVE_FIELDS``) and values, checked by ``config.check_value``; ``caption`` the text shown to the class
from this event on (``""`` clears it); ``pause`` stop there until the teacher presses Start (the app; headless
replays go on); ``arm`` ``"A"``, ``"B"`` or ``"both"`` (default): which arm of a compare run the settings go to.

Timing: an event at step s is applied before minibatch s (0-based), i.e. after s minibatches; ``{"epoch": e}``
means step ⌈e · batches_per_epoch⌉. Events at the same step apply in file order. Its settings are applied as
ordinary live changes (logged in the change log), so lesson + config + seed determine the run, bit for bit.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from ..config import FIELD, LIVE_FIELDS, ConfigError, RunConfig, check_value
from .snapshot import ARM_NAMES

ARMS = ("both", "A", "B")
EVENT_KEYS = ("at", "set", "caption", "pause", "arm")
LESSON_KEYS = ("name", "description", "config", "compare", "events")


class LessonError(ValueError):
    """A lesson is malformed or does not fit the run; ``str(err)`` is one line naming the event and field."""


@dataclass(frozen=True)
class LessonEvent:
    """One event as written: at ``epoch`` or at ``step`` (exactly one of them is set)."""
    epoch: float | None = None
    step: int | None = None
    set: dict = field(default_factory=dict)
    caption: str | None = None
    pause: bool = False
    arm: str = "both"

    def at_step(self, batches_per_epoch: int) -> int:
        """The minibatch before which the event applies."""
        if self.step is not None:
            return self.step
        return math.ceil(self.epoch * batches_per_epoch - 1e-9)

    def where(self) -> str:
        return f"at step {self.step}" if self.step is not None else f"at epoch {self.epoch:g}"

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"at": {"step": self.step} if self.step is not None else {"epoch": self.epoch}}
        if self.set:
            out["set"] = dict(self.set)
        if self.caption is not None:
            out["caption"] = self.caption
        if self.pause:
            out["pause"] = True
        if self.arm != "both":
            out["arm"] = self.arm
        return out


class LessonMark(NamedTuple):
    """An event resolved for one run: applied before minibatch ``step`` (at ``epoch``); what the snapshot's
    ``lesson`` holds (the app draws them as a timeline on the curves). ``index``: the event's place in the file."""
    index: int
    step: int
    epoch: float
    arm: str
    set: dict
    caption: str | None
    pause: bool


@dataclass(frozen=True)
class Lesson:
    """A parsed, checked lesson; build it with :meth:`from_dict`, :meth:`from_json` or :func:`load_lesson`."""
    events: tuple
    name: str = ""
    description: str = ""
    config: dict = field(default_factory=dict)   # RunConfig fields of the setup it was written for
    compare: bool = False
    source: str = field(default="lesson", compare=False)   # where it was read from (for messages)

    # --- reading ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data, source: str = "lesson") -> "Lesson":
        """Parse a list of events or ``{"events": [...], ...}``; LessonError naming the event and field."""
        if isinstance(data, list):
            data = {"events": data}
        if not isinstance(data, dict):
            raise LessonError(f"{source}: expected a list of events or an object with 'events', "
                              f"got {type(data).__name__}")
        unknown = sorted(set(data) - set(LESSON_KEYS))
        if unknown:
            raise LessonError(f"{source}: unknown key '{unknown[0]}'; a lesson has {', '.join(LESSON_KEYS)}")
        events = data.get("events")
        if not isinstance(events, list) or not events:
            raise LessonError(f"{source}: 'events' must be a non-empty list of events")
        config = data.get("config") or {}
        try:
            RunConfig.from_dict(config)
        except ConfigError as exc:
            raise LessonError(f"{source}: config: {exc}") from None
        for key in ("name", "description"):
            if not isinstance(data.get(key, ""), str):
                raise LessonError(f"{source}: '{key}' must be a string")
        if not isinstance(data.get("compare", False), bool):
            raise LessonError(f"{source}: 'compare' must be true or false")
        return cls(events=tuple(_parse_event(e, i, source) for i, e in enumerate(events)),
                   name=data.get("name", ""), description=data.get("description", ""), config=dict(config),
                   compare=data.get("compare", False), source=source)

    @classmethod
    def from_json(cls, text: str, source: str = "lesson") -> "Lesson":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LessonError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        return cls.from_dict(data, source)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        if self.config:
            out["config"] = dict(self.config)
            out["compare"] = self.compare
        out["events"] = [e.to_dict() for e in self.events]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    # --- using ----------------------------------------------------------------------------------------
    def setup(self, base: RunConfig | None = None) -> tuple[RunConfig, RunConfig | None]:
        """(config A, config B or None): ``base`` (default RunConfig()) with the lesson's config, and for a
        compare lesson the same with KH off (the plain RBM)."""
        a = (base or RunConfig()).replace(**self.config)
        return a, (a.replace(kh_mode="off") if self.compare else None)

    def resolve(self, configs: Sequence[RunConfig], batches_per_epoch: int, check_config=None) -> tuple:
        """The events as :class:`LessonMark` sorted by step (stable), checked against the run: every event
        comes before the end of training, and each arm's settings stay valid when the events are replayed
        in order (``check_config(cfg)`` may add checks that need the data, e.g. ``run.check_ell``)."""
        marks = sorted((LessonMark(i, e.at_step(batches_per_epoch), e.at_step(batches_per_epoch) / batches_per_epoch,
                                   e.arm, dict(e.set), e.caption, e.pause) for i, e in enumerate(self.events)),
                       key=lambda m: m.step)
        total = configs[0].epochs * batches_per_epoch
        current = list(configs)
        for m in marks:
            event = self.events[m.index]
            if m.step >= total:
                raise LessonError(f"{self.source}: events[{m.index}] ({event.where()}) comes at or after the end of "
                                  f"training (epoch {configs[0].epochs}, step {total}): raise epochs or move it")
            for i, cfg in enumerate(current):
                if not m.set or m.arm not in ("both", ARM_NAMES[i]):
                    continue
                try:
                    current[i] = cfg.replace(**m.set)
                    if check_config is not None:
                        check_config(current[i])
                except ConfigError as exc:
                    raise LessonError(f"{self.source}: events[{m.index}] ({event.where()}): set.{exc.field}: "
                                      f"{_reason(exc)}") from None
        return tuple(marks)


def _reason(exc: ConfigError) -> str:
    """A ConfigError's message without its "config field 'x': " prefix."""
    return str(exc).split(": ", 1)[-1]


def _parse_event(data, i: int, source: str) -> LessonEvent:
    where = f"{source}: events[{i}]"
    if not isinstance(data, dict):
        raise LessonError(f"{where}: expected an object with 'at', got {type(data).__name__}")
    unknown = sorted(set(data) - set(EVENT_KEYS))
    if unknown:
        raise LessonError(f"{where}: unknown key '{unknown[0]}'; an event has {', '.join(EVENT_KEYS)}")
    at = data.get("at")
    if not isinstance(at, dict) or len(at) != 1 or next(iter(at)) not in ("epoch", "step"):
        raise LessonError(f"{where}: 'at' must be {{\"epoch\": e}} or {{\"step\": s}}, got {at!r}")
    (unit, when), = at.items()
    ok = not isinstance(when, bool) and isinstance(when, (int, float)) and math.isfinite(when) and when >= 0
    if unit == "step":
        ok = ok and float(when).is_integer()
    if not ok:
        kind = "an integer >= 0" if unit == "step" else "a number >= 0"
        raise LessonError(f"{where}: at.{unit} must be {kind}, got {when!r}")
    where = f"{where} (at {unit} {when:g})"
    settings = data.get("set", {})
    if not isinstance(settings, dict):
        raise LessonError(f"{where}: 'set' must be an object of live fields, got {type(settings).__name__}")
    checked = {}
    for name, value in settings.items():
        if name not in FIELD:
            raise LessonError(f"{where}: set.{name}: unknown field; live fields: {', '.join(sorted(LIVE_FIELDS))}")
        if name not in LIVE_FIELDS:
            raise LessonError(f"{where}: set.{name}: not a live setting (it changes the model); a lesson may "
                              f"set only {', '.join(sorted(LIVE_FIELDS))}")
        try:
            checked[name] = check_value(FIELD[name], value)
        except ConfigError as exc:
            raise LessonError(f"{where}: set.{name}: {_reason(exc)}") from None
    caption = data.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise LessonError(f"{where}: caption must be text, got {type(caption).__name__}")
    pause = data.get("pause", False)
    if not isinstance(pause, bool):
        raise LessonError(f"{where}: pause must be true or false, got {pause!r}")
    arm = data.get("arm", "both")
    if arm not in ARMS:
        raise LessonError(f"{where}: arm must be one of {', '.join(ARMS)}, got {arm!r}")
    if not checked and caption is None and not pause:
        raise LessonError(f"{where}: does nothing (give it 'set', 'caption' or 'pause')")
    return LessonEvent(epoch=float(when) if unit == "epoch" else None, step=int(when) if unit == "step" else None,
                       set=checked, caption=caption, pause=pause, arm=arm)


class LessonPlayer:
    """Walks a run along its resolved marks: :meth:`due` hands out each mark once, at its step.

    Marks before ``start_step`` (a run continued from a checkpoint) count as played; the caption is then the
    last caption given before ``start_step``. ``next_step`` is the step of the next mark (None when done), so
    a training loop tests one integer per minibatch."""

    def __init__(self, marks: Sequence[LessonMark], start_step: int = 0):
        self.marks = tuple(marks)
        self.caption = ""
        self._next = 0
        self.skip_to(start_step)

    def skip_to(self, step: int):
        self.caption, self._next = "", 0
        while self._next < len(self.marks) and self.marks[self._next].step < step:
            self._take(self.marks[self._next])

    @property
    def next_step(self) -> int | None:
        return self.marks[self._next].step if self._next < len(self.marks) else None

    def due(self, step: int) -> list[LessonMark]:
        """The marks not yet handed out whose step is at or before ``step`` (in order)."""
        out = []
        while self._next < len(self.marks) and self.marks[self._next].step <= step:
            out.append(self._take(self.marks[self._next]))
        return out

    def _take(self, mark: LessonMark) -> LessonMark:
        if mark.caption is not None:
            self.caption = mark.caption
        self._next += 1
        return mark


def shipped_lessons() -> dict[str, Path]:
    """The lessons shipped with khrbm (package data ``khrbm/lessons/*.json``): name -> file."""
    folder = resources.files("khrbm") / "lessons"
    return {Path(p.name).stem: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".json")}


def read_lesson_file(path: str | Path) -> Lesson:
    """Parse a lesson file (.json, or .yaml/.yml with PyYAML installed); LessonError if unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LessonError(f"{path}: cannot read the lesson ({exc.strerror})")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise LessonError(f"{path}: YAML lessons need PyYAML (pip install pyyaml); or write it as JSON")
        try:
            return Lesson.from_dict(yaml.safe_load(text), path.name)
        except yaml.YAMLError as exc:
            raise LessonError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})")
    return Lesson.from_json(text, path.name)


def load_lesson(ref: str | Path) -> Lesson:
    """A lesson from a file path, or by the name of a shipped lesson (``story``, ``bars``, ``td_to_bu``)."""
    path = Path(ref)
    if path.exists():
        return read_lesson_file(path)
    shipped = shipped_lessons()
    if str(ref) in shipped:
        return read_lesson_file(shipped[str(ref)])
    raise LessonError(f"{ref}: no such lesson file, and not a shipped lesson (those are: {', '.join(shipped)})")
