"""Recording runs as they train: :class:`RunRecorder` for a headless run (``khrbm train``, a sweep's worker),
:class:`TrainerRecorder` for the app's :class:`~khrbm.train.trainer.Trainer`.

Both keep the run folder's ``run.json`` (:mod:`khrbm.store.folder`) and the registry in step. A registry that
cannot be written (read-only, locked past its timeout, corrupt) never stops or loses a run: the recorder says
so once (``warn``; ``TrainerRecorder.problem`` for the app) and stops trying; the folder keeps everything, and
``khrbm runs import FOLDER`` adds it later.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from collections.abc import Callable

from ..config import FIELDS, RunConfig
from ..train.lesson import Lesson, LessonEvent
from ..train.run import HISTORY_KEYS, Run
from ..train.snapshot import ARM_NAMES, Change
from .db import RegistryError, default_path
from .folder import (CHECKPOINT, DIVERGED_CHECKPOINT, Decimator, change_dict, read_manifest, start_config,
                     write_manifest)
from .registry import Registry

log = logging.getLogger(__name__)
TERMINAL = ("finished", "diverged", "error", "interrupted")
HEARTBEAT = 10.0          # seconds between writes of a running app run with nothing new to record


def _stderr_warning(text: str) -> None:
    print(f"khrbm: warning: {text}", file=sys.stderr)


def _open_registry(registry, timeout) -> Registry | None:
    """``registry``: None (the default file), a path, a :class:`Registry`, or False (no registry)."""
    if registry is False:
        return None
    if isinstance(registry, Registry):
        return registry
    return Registry(registry, timeout)


class RunRecorder:
    """Records one headless run in the registry and in its folder's ``run.json``.

    Usage (what ``khrbm train`` does; a sweep's per-run loop does the same)::

        with RunRecorder(run, out_dir, source="train", registry=None, lesson=lesson) as recorder:
            ...                                  # train; for each live change: recorder.change(change)
            recorder.progress()                  # after each checkpoint: new points, steps, heartbeat
            recorder.end("finished")             # or "diverged" / "interrupted", with a message

    ``registry``: None for the default file, a path, a :class:`Registry`, or False for none (the folder's
    run.json is written anyway). ``resume``: the folder holds this run already (``--resume`` into it): its
    uid, start and config are kept, and settings the resume changed are logged as changes at its step.
    Leaving the ``with`` block (or calling :meth:`close` in a ``finally``) by an exception before :meth:`end`
    records "error" (KeyboardInterrupt: "interrupted").
    """

    def __init__(self, run: Run, out_dir: str | Path, *, source: str = "train", registry=None,
                 lesson: Lesson | None = None, group_uid: str = "", resume: bool = False, timeout: float | None = None,
                 warn: Callable[[str], None] = _stderr_warning):
        self.run = run
        self.out_dir = Path(out_dir)
        self.warn = warn
        self.source, self.group_uid, self.lesson = source, group_uid, lesson
        previous = self._previous_manifest() if resume else None
        arm = previous["arms"][0] if previous else {}
        self.uid = arm.get("uid") or uuid.uuid4().hex
        self.config = RunConfig.from_dict(arm["config"]) if arm else run.config
        self.started = previous.get("started", time.time()) if previous else time.time()
        self.start_step = int(previous.get("start_step", run.step)) if previous else run.step
        self.changes = list(previous.get("changes", [])) if previous else []
        self.decimator = Decimator()
        self.seen = len(run.history) if previous else 0     # a run resumed into its folder: recorded already
        self.state, self.message, self.ended = "running", "", None
        self.registry: Registry | None = None
        self._new_points: list[dict] = []
        self._new_changes: list[tuple] = []
        self._manifest_ok = True
        self._registry_ref, self._timeout = registry, timeout
        if previous:                     # what --resume changed (e.g. more epochs) is a change at this step
            was = self.config.replace(**{c["field"]: c["new"] for c in self.changes})
            for f in FIELDS:
                old, new = getattr(was, f.name), getattr(run.config, f.name)
                if old != new:
                    self.change(Change(run.step, run.epoch, ARM_NAMES[0], f.name, old, new))

    # --- the run's life ---------------------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Release the registry. Called while an exception propagates (``finally``, ``with``) on a run not yet
        ended, it records the run as "error" ("interrupted" for KeyboardInterrupt) with the exception."""
        kind, exc, _ = sys.exc_info()
        if self.state == "running" and kind is not None:
            self.end("interrupted" if issubclass(kind, KeyboardInterrupt) else "error",
                     f"{kind.__name__}: {exc}".rstrip(": "))
        if self.registry is not None and not isinstance(self._registry_ref, Registry):
            self.registry.close()
        self.registry = None

    def start(self):
        """Open the registry (a failure is said once) and record the run as running."""
        try:
            self.registry = _open_registry(self._registry_ref, self._timeout)
        except RegistryError as exc:
            self._registry_failed(exc)
        self._write()

    def change(self, change) -> None:
        """Record a live change (a :class:`~khrbm.train.snapshot.Change`)."""
        self._new_changes.append((len(self.changes), change))
        self.changes.append(change_dict(change))

    def progress(self) -> None:
        """Record the run's new metric points (decimated), its step and its checkpoint."""
        self._take_points(final=False)
        self._write()

    def end(self, state: str, message: str = "") -> None:
        """Record the end: ``state`` finished, diverged, interrupted or error; the final point is stored."""
        if state not in TERMINAL:
            raise ValueError(f"state must be one of {', '.join(TERMINAL)}, not {state!r}")
        self._take_points(final=True)
        self.state, self.message, self.ended = state, message, time.time()
        self._write()

    # --- internals -----------------------------------------------------------------------------------
    def _previous_manifest(self) -> dict | None:
        try:
            return read_manifest(self.out_dir)
        except ValueError:
            return None

    def _take_points(self, final: bool):
        rows = self.run.history[self.seen:]
        self.seen = len(self.run.history)
        self._new_points += self.decimator.select(rows, final=final)

    def _write(self):
        run = self.run
        checkpoint = self.out_dir / CHECKPOINT
        fields = dict(state=self.state, message=self.message, started=self.started, ended=self.ended,
                      start_step=self.start_step, steps=run.step, epoch=run.epoch, out_dir=self.out_dir.resolve(),
                      checkpoint=checkpoint.resolve() if checkpoint.exists() else None, lesson=self.lesson,
                      group_uid=self.group_uid, host=socket.gethostname(), pid=os.getpid())
        if run.history:
            fields["final"] = run.history[-1]
        self._write_manifest(fields)
        if self.registry is None:
            return
        try:
            self.registry.put_run(self.uid, self.config, source=self.source, points=self._new_points,
                                  changes=self._new_changes, **fields)
            self._new_points, self._new_changes = [], []
        except RegistryError as exc:
            self._registry_failed(exc)

    def _write_manifest(self, fields: dict):
        if not self._manifest_ok:
            return
        manifest = {k: fields[k] for k in ("group_uid", "state", "message", "started", "ended", "start_step",
                                           "steps", "epoch", "host", "pid")}
        manifest.update(source=self.source, checkpoint=CHECKPOINT,
                        arms=[{"arm": "", "uid": self.uid, "config": self.config.to_dict()}],
                        changes=self.changes, lesson=self.lesson.to_dict() if self.lesson else None)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_manifest(self.out_dir, manifest)
        except OSError as exc:
            self._manifest_ok = False
            self.warn(f"cannot write {self.out_dir / 'run.json'} ({exc.strerror or exc}); training goes on")

    def _registry_failed(self, exc: RegistryError):
        if self.registry is not None and not isinstance(self._registry_ref, Registry):
            self.registry.close()
        self.registry = None
        self.warn(f"{exc}; training goes on without recording it there (the run folder {self.out_dir} holds "
                  f"everything: `khrbm runs import {self.out_dir}` adds it later)")


class TrainerRecorder:
    """Records the runs of a :class:`~khrbm.train.trainer.Trainer` (the app): ``Trainer(..., recorder=
    TrainerRecorder())``. The trainer calls it on its loop thread (see the trainer's module docstring); the
    registry is written on the recorder's own thread, so a slow or locked registry never stalls training.

    What it records: a run (one registry record per arm, sharing ``group_uid`` in compare mode) begins with the
    first minibatch after a construction, reset or loaded checkpoint (a trainer that never trains records
    nothing) and ends finished, diverged or error with the trainer, or interrupted by a reset, a loaded
    checkpoint or close. Each run gets a folder ``runs_dir/<date>-<time>-<id>`` holding ``run.json`` and, at
    its end, ``checkpoint.npz`` (both arms in compare mode; ``Trainer.load_checkpoint`` continues it). The
    change log, the lesson played and the metric points (decimated as :class:`~khrbm.store.folder.Decimator`
    says) go to the registry.

    ``registry``: None (the default file), a path, or False (folders only). ``runs_dir``: default ``runs``
    beside the registry file. ``problem``: None, or the first registry failure as one line (show it once);
    ``uids``: the registry uids of the run being recorded (() between runs). Call :meth:`close` after the
    trainer's ``close`` to wait for the last writes (the trainer's close already flushes them, up to 10 s).
    """

    def __init__(self, registry=None, runs_dir: str | Path | None = None, *, source: str = "app",
                 timeout: float | None = None):
        path = default_path() if registry is None else (None if registry is False else Path(registry))
        self.runs_dir = Path(runs_dir) if runs_dir is not None else (path or default_path()).parent / "runs"
        self.source = source
        self.problem: str | None = None
        self._registry_path, self._timeout = path, timeout
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._gen: dict | None = None      # the run being recorded
        self._start_step: int | None = None

    @property
    def uids(self) -> tuple:
        return tuple(a["uid"] for a in self._gen["arms"]) if self._gen else ()

    # --- trainer hooks (loop thread) ----------------------------------------------------------------------
    def published(self, snapshot, save):
        if self._gen is None:
            if self._start_step is None:
                self._start_step = snapshot.step
            if snapshot.state != "running" and snapshot.step == self._start_step:
                return
            self._begin(snapshot)
        self._observe(snapshot, save)

    def ending(self, snapshot, save):
        if self._gen is not None:
            self._observe(snapshot, save, interrupted="the run was replaced (reset or a loaded checkpoint)")
        self._gen, self._start_step = None, None

    def closed(self):
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(10.0)

    def close(self, timeout: float = 10.0):
        """Wait until everything queued is written (at most ``timeout`` s)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # --- bookkeeping --------------------------------------------------------------------------------------
    def _begin(self, snapshot):
        group = uuid.uuid4().hex
        folder = self.runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{group[:8]}"
        arms = []
        for arm in snapshot.arms:
            mine = [c for c in snapshot.changes if c.arm == arm.name]
            arms.append({"arm": arm.name if len(snapshot.arms) > 1 else "", "name": arm.name,
                         "uid": uuid.uuid4().hex, "config": start_config(arm.config, mine), "seen": 0,
                         "decimator": Decimator(), "changes": 0})
        lesson = (Lesson(events=tuple(LessonEvent(step=m.step, set=m.set, caption=m.caption, pause=m.pause, arm=m.arm)
                                      for m in snapshot.lesson)) if snapshot.lesson else None)
        self._gen = {"group_uid": group if len(arms) > 1 else "", "folder": folder, "arms": arms, "lesson": lesson,
                     "state": "running", "message": "", "started": time.time(), "ended": None,
                     "start_step": self._start_step, "n_changes": 0, "last_write": 0.0, "checkpoint": None}
        for a in arms:
            self._submit(a, self._fields(a, snapshot))
        self._write_manifest(snapshot)

    def _observe(self, snapshot, save, interrupted: str = ""):
        gen = self._gen
        state, message = _registry_state(snapshot.state), snapshot.message
        if interrupted and state == "running":
            state, message = "interrupted", interrupted
        if snapshot.state == "closed" and gen["state"] != "running":
            state, message = gen["state"], gen["message"]        # closing a finished trainer ends nothing
        changed = state != gen["state"]
        final = state in TERMINAL
        if changed and final:
            self._save(save, diverged=state == "diverged")
        if changed:
            gen["state"], gen["message"] = state, message
            gen["ended"] = time.time() if final else None
        new_changes = snapshot.changes[gen["n_changes"]:]
        gen["n_changes"] = len(snapshot.changes)
        due = changed or bool(new_changes) or time.monotonic() - gen["last_write"] >= HEARTBEAT
        for a, arm in zip(gen["arms"], snapshot.arms):
            hist = arm.history
            n = len(hist["step"])
            rows = [{k: (int(hist[k][j]) if k == "step" else float(hist[k][j])) for k in HISTORY_KEYS if k in hist}
                    for j in range(a["seen"], n)]
            a["seen"] = n
            points = a["decimator"].select(rows, final=final)
            mine = [c for c in new_changes if c.arm == a["name"]]
            seqs = list(enumerate(mine, start=a["changes"]))
            a["changes"] += len(mine)
            if rows:
                a["final"] = rows[-1]
            if due or points:
                self._submit(a, self._fields(a, arm), points, seqs)
        if due:
            gen["last_write"] = time.monotonic()
        if changed or new_changes:
            self._write_manifest(snapshot)

    def _fields(self, a: dict, arm) -> dict:
        gen = self._gen
        fields = dict(state=gen["state"], message=gen["message"], started=gen["started"], ended=gen["ended"],
                      start_step=gen["start_step"], steps=arm.step, epoch=arm.epoch, group_uid=gen["group_uid"],
                      arm=a["arm"], out_dir=gen["folder"], checkpoint=gen["checkpoint"], lesson=gen["lesson"],
                      host=socket.gethostname(), pid=os.getpid())
        if "final" in a:
            fields["final"] = a["final"]
        return fields

    def _save(self, save, diverged: bool = False):
        """Save the arms: checkpoint.npz, or for a diverged run checkpoint.diverged.npz (no checkpoint to
        continue from: its weights are not finite)."""
        gen = self._gen
        try:
            gen["folder"].mkdir(parents=True, exist_ok=True)
            if diverged:
                save(gen["folder"] / DIVERGED_CHECKPOINT)
            else:
                gen["checkpoint"] = save(gen["folder"] / CHECKPOINT)
        except Exception as exc:  # noqa: BLE001 - a failed save must not stop training
            self._say(f"could not save the run's checkpoint in {gen['folder']}: {exc}")

    def _write_manifest(self, snapshot):
        gen = self._gen
        manifest = {k: gen[k] for k in ("group_uid", "state", "message", "started", "ended", "start_step")}
        manifest.update(source=self.source, host=socket.gethostname(), pid=os.getpid(), checkpoint=CHECKPOINT,
                        steps=snapshot.step, epoch=snapshot.epoch,
                        arms=[{"arm": a["arm"], "uid": a["uid"], "config": a["config"].to_dict()} for a in gen["arms"]],
                        changes=[change_dict(c) for c in snapshot.changes],
                        lesson=gen["lesson"].to_dict() if gen["lesson"] else None)
        try:
            gen["folder"].mkdir(parents=True, exist_ok=True)
            write_manifest(gen["folder"], manifest)
        except OSError as exc:
            self._say(f"cannot write the run folder {gen['folder']} ({exc.strerror or exc})")

    # --- the writer thread --------------------------------------------------------------------------------
    def _submit(self, a: dict, fields: dict, points=(), changes=()):
        if self._registry_path is None or self.problem is not None:
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._drain, name="khrbm-recorder", daemon=True)
            self._thread.start()
        self._queue.put((a["uid"], a["config"], fields, list(points), list(changes)))

    def _drain(self):
        registry = None
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if self.problem is not None:
                    continue
                uid, config, fields, points, changes = item
                try:
                    if registry is None:
                        registry = Registry(self._registry_path, self._timeout)
                    registry.put_run(uid, config, source=self.source, points=points, changes=changes, **fields)
                except RegistryError as exc:
                    self._say(f"{exc}; training goes on without recording this session's runs there (their "
                              f"folders under {self.runs_dir} hold them: `khrbm runs import FOLDER`)")
        finally:
            if registry is not None:
                registry.close()

    def _say(self, text: str):
        if self.problem is None:
            self.problem = text
            log.warning("%s", text)


def _registry_state(trainer_state: str) -> str:
    """The registry's state for a trainer state: compiling, idle, paused and running count as running."""
    if trainer_state in ("finished", "diverged", "error"):
        return trainer_state
    if trainer_state == "closed":
        return "interrupted"
    return "running"
