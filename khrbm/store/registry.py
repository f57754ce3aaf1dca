"""The run registry: every run (app, ``khrbm train``, sweeps), its live changes and metric points, plus named
setups and lessons, in one SQLite file (:mod:`khrbm.store.db`: location, WAL, migrations).

One :class:`Registry` per process or thread is the usual pattern; an instance may also be shared between the
threads of one process (a lock serialises its calls). Many processes may write at once: each write is one short
``BEGIN IMMEDIATE`` transaction, waiting up to ``timeout`` seconds for the others. Every failure is a
:class:`RegistryError` with one line naming the file and the reason.

Writing runs: :meth:`Registry.put_run` (create or update a run with its new points and changes, one
transaction); the recorders of :mod:`khrbm.store.recorder` call it, and :func:`khrbm.store.import_folder`.

For the app:
- recording: ``Trainer(..., recorder=khrbm.store.TrainerRecorder())`` records every run of the session.
- "Recent runs": :meth:`Registry.recent` (newest first; ``record.summary`` is a one-line label),
  :meth:`~Registry.run`, :meth:`~Registry.points` (decimated curves), :meth:`~Registry.changes` (markers);
  :func:`khrbm.store.open_run` reads a past run's full curves (to show or overlay) and final weights (the
  mosaic) from its checkpoint; ``Trainer.load_checkpoint(record.checkpoint)`` continues it
  (``record.can_continue``).
- "My setups": :meth:`~Registry.save_setup`, :meth:`~Registry.setups`, :meth:`~Registry.setup`,
  :meth:`~Registry.rename_setup`, :meth:`~Registry.delete_setup` (a setup is config A plus config B or None).
- lessons: :meth:`~Registry.save_lesson`, :meth:`~Registry.lessons`, :meth:`~Registry.lesson`,
  :meth:`~Registry.delete_lesson`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..config import FIELD, RunConfig
from ..train.lesson import Lesson, LessonError
from .db import RegistryError, connect, default_path, default_timeout, explain, rollback

STATES = ("running", "finished", "diverged", "error", "interrupted")
SOURCES = ("app", "train", "sweep", "import")
NAME_MAX = 120
_RUN_COLUMNS = ("id", "uid", "group_uid", "arm", "source", "state", "message", "config", "started", "ended",
                "updated", "start_step", "steps", "epoch", "final", "out_dir", "checkpoint", "host", "pid", "lesson")
_WRITABLE = frozenset(_RUN_COLUMNS) - {"id", "uid"}


def to_json(value: Any) -> str:
    """Compact JSON with NaN / inf written as null (what the registry stores for metrics and values)."""
    return json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def describe_config(cfg: RunConfig) -> str:
    """A short line saying what a run is: ``mnist · M=100 · std · KH_TD ε0=0.04 Δ=0.4`` or ``… · plain``."""
    kh = (f"KH_{cfg.kh_mode.upper()} ε0={cfg.eps0:g} Δ={cfg.delta:g}" if cfg.kh_mode != "off" else "plain")
    task = " · cRBM" if cfg.task == "classification" else ""
    return f"{cfg.dataset}{task} · M={cfg.n_hidden} · {cfg.init} · {kh}"


@dataclass(frozen=True)
class RunRecord:
    """One run as the registry knows it. ``config``: the settings it started from (its live changes are in
    :meth:`Registry.changes`); ``final``: the latest metric point ({} before the first); times are Unix times."""
    id: int
    uid: str
    group_uid: str
    arm: str
    source: str
    state: str
    message: str
    config: RunConfig
    started: float
    ended: float | None
    updated: float
    start_step: int
    steps: int
    epoch: float
    final: dict
    out_dir: str | None
    checkpoint: str | None
    host: str
    pid: int | None
    lesson: dict | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RunRecord":
        data = dict(row)
        data["config"] = RunConfig.from_json(data["config"])
        data["final"] = {k: (math.nan if v is None else v) for k, v in json.loads(data["final"] or "{}").items()}
        data["lesson"] = json.loads(data["lesson"]) if data["lesson"] else None
        return cls(**data)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (to the last write while it runs)."""
        return (self.ended or self.updated) - self.started

    @property
    def summary(self) -> str:
        """One line for a list: ``#12 A · mnist · M=100 · std · KH_TD ε0=0.04 Δ=0.4 · finished at epoch 30.00``
        (the app's "Recent runs")."""
        arm = f" {self.arm}" if self.arm else ""
        return f"#{self.id}{arm} · {describe_config(self.config)} · {self.state} at epoch {self.epoch:.2f}"

    @property
    def can_continue(self) -> bool:
        """Its checkpoint file exists (``Trainer.load_checkpoint(record.checkpoint)`` continues it)."""
        return bool(self.checkpoint) and Path(self.checkpoint).is_file()

    def to_dict(self) -> dict:
        """JSON-ready: config as a dict, NaN metrics as None."""
        out = {k: getattr(self, k) for k in _RUN_COLUMNS}
        out["config"] = self.config.to_dict()
        out["final"] = _finite(self.final)
        return out


@dataclass(frozen=True)
class Setup:
    """A named setup ("My setups"): config A, and config B when the arms are compared (None: a single run)."""
    name: str
    comment: str
    config_a: RunConfig
    config_b: RunConfig | None
    created: float
    updated: float

    @property
    def compare(self) -> bool:
        return self.config_b is not None


@dataclass(frozen=True)
class StoredLesson:
    name: str
    comment: str
    lesson: Lesson
    created: float
    updated: float


class Registry:
    """The registry at ``path`` (default :func:`khrbm.store.db.default_path`), created and migrated on open.
    ``timeout``: seconds a write waits for other writers (default ``$KHRBM_REGISTRY_TIMEOUT`` or 5)."""

    def __init__(self, path: str | Path | None = None, timeout: float | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self._lock = threading.RLock()
        self._conn = connect(self.path, self.timeout)
        self._conn.row_factory = sqlite3.Row

    def close(self):
        with self._lock:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Registry {self.path}>"

    # --- plumbing ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), yielding the connection; rolled back on
        error. sqlite3 errors come out as RegistryError."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                rollback(conn)
                raise explain(exc, self.path, self.timeout) from None
            except BaseException:
                rollback(conn)
                raise

    def _query(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise explain(exc, self.path, self.timeout) from None

    # --- writing runs -------------------------------------------------------------------------------------
    def put_run(self, uid: str, config: RunConfig, *, source: str, points: Iterable[dict] = (),
                changes: Iterable[tuple] = (), **fields) -> int:
        """Record run ``uid`` (created with ``config`` and ``source`` if new, state "running" unless given)
        and, in the same transaction, set its fields (state, message, started, ended, steps, epoch, final,
        out_dir, checkpoint, host, pid, lesson, …), add metric points (dicts with ``step``; a repeated step
        replaces the older point) and changes (``(seq, change)`` pairs, ``change`` with step, epoch, field,
        old, new; a repeated seq is ignored). Returns the run's id. What every recorder and the import call."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        unknown = set(fields) - _WRITABLE
        if unknown:
            raise ValueError(f"not a run field: {sorted(unknown)[0]}")
        if fields.get("state", "running") not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {fields['state']!r}")
        now = time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT id FROM runs WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                cur = conn.execute("INSERT INTO runs (uid, source, state, config, started, updated, host, pid) "
                                   "VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                                   (uid, source, config.to_json(), now, now, socket.gethostname(), os.getpid()))
                run_id = cur.lastrowid
            else:
                run_id = row[0]
            values = {k: _column_value(k, v) for k, v in fields.items()}
            values["updated"] = now
            conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                         (*values.values(), run_id))
            conn.executemany("INSERT OR REPLACE INTO points (run_id, step, metrics) VALUES (?, ?, ?)",
                             [(run_id, int(p["step"]), to_json({k: v for k, v in p.items() if k != "step"}))
                              for p in points])
            conn.executemany("INSERT OR IGNORE INTO changes (run_id, seq, step, epoch, field, old, new) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [(run_id, seq, int(c.step), float(c.epoch), c.field, to_json(c.old), to_json(c.new))
                              for seq, c in changes])
            return run_id

    def reap(self) -> int:
        """Mark as interrupted the runs still 'running' whose recording process on this machine is gone (killed,
        crashed); returns how many."""
        host = socket.gethostname()
        dead = [(r["uid"], r["pid"], r["updated"]) for r in
                self._query("SELECT uid, pid, updated FROM runs WHERE state = 'running' AND host = ?", (host,))
                if r["pid"] and not alive(r["pid"])]
        for uid, pid, updated in dead:
            with self.transaction() as conn:
                conn.execute("UPDATE runs SET state = 'interrupted', ended = ?, message = ? "
                             "WHERE uid = ? AND state = 'running'",
                             (updated, f"its process (pid {pid}) ended without saying so (killed or crashed)", uid))
        return len(dead)

    # --- reading runs ---------------------------------------------------------------------------------------
    def run(self, ref) -> RunRecord:
        """The run with id ``ref`` (an int or its digits), or whose uid starts with ``ref`` (≥ 6 characters)."""
        text = str(ref).lstrip("#")
        if text.isdigit():
            rows = self._query("SELECT * FROM runs WHERE id = ?", (int(text),))
        elif len(text) >= 6:
            rows = self._query("SELECT * FROM runs WHERE uid LIKE ? LIMIT 2", (text.replace("%", "") + "%",))
        else:
            raise RegistryError(f"registry {self.path}: {ref!r} is neither a run id nor a uid prefix (6+ characters)")
        if len(rows) != 1:
            what = "no run" if not rows else "more than one run"
            raise RegistryError(f"registry {self.path}: {what} matches {ref!r} (`khrbm runs list` shows the ids)")
        return RunRecord.from_row(rows[0])

    def runs(self, *, state: str | None = None, source: str | None = None, where: dict | None = None,
             since: float | None = None, group_uid: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first. ``where``: {config field: value} (values compared as the config stores them)."""
        sql, params = ["SELECT * FROM runs WHERE 1"], []
        for column, value in (("state", state), ("source", source), ("group_uid", group_uid)):
            if value is not None:
                sql.append(f"AND {column} = ?")
                params.append(value)
        if since is not None:
            sql.append("AND started >= ?")
            params.append(since)
        for name, value in (where or {}).items():
            if name not in FIELD:
                raise ValueError(f"not a config field: {name}")
            if value is None:
                sql.append(f"AND json_extract(config, '$.{name}') IS NULL")
            else:
                sql.append(f"AND json_extract(config, '$.{name}') = ?")
                params.append(int(value) if isinstance(value, bool) else value)
        sql.append("ORDER BY started DESC, id DESC")
        if limit is not None:
            sql.append("LIMIT ?")
            params.append(int(limit))
        return [RunRecord.from_row(r) for r in self._query(" ".join(sql), params)]

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """The ``limit`` most recently started runs (the app's "Recent runs")."""
        return self.runs(limit=limit)

    def changes(self, ref) -> list[dict]:
        """The run's live change log, in order: dicts with step, epoch, field, old, new."""
        run_id = ref.id if isinstance(ref, RunRecord) else self.run(ref).id
        return [{"step": r["step"], "epoch": r["epoch"], "field": r["field"], "old": json.loads(r["old"]),
                 "new": json.loads(r["new"])}
                for r in self._query("SELECT * FROM changes WHERE run_id = ? ORDER BY seq", (run_id,))]

    def points(self, ref) -> dict[str, np.ndarray]:
        """The run's stored (decimated) metric points as columns: ``step`` and one float64 array per metric
        (NaN where a point lacks it); empty arrays when there are none."""
        run_id = ref.id if isinstance(ref, RunRecord) else self.run(ref).id
        rows = self._query("SELECT step, metrics FROM points WHERE run_id = ? ORDER BY step", (run_id,))
        metrics = [json.loads(r["metrics"]) for r in rows]
        keys = list(dict.fromkeys(k for m in metrics for k in m))
        cols = {"step": np.array([r["step"] for r in rows], np.float64)}
        for k in keys:
            cols[k] = np.array([math.nan if m.get(k) is None else m[k] for m in metrics], np.float64)
        return cols

    def count_points(self, ref) -> int:
        run_id = ref.id if isinstance(ref, RunRecord) else self.run(ref).id
        return self._query("SELECT COUNT(*) FROM points WHERE run_id = ?", (run_id,))[0][0]

    def export(self, records: Iterable[RunRecord], points: bool = True) -> list[dict]:
        """JSON-ready dicts of ``records``, each with its ``changes`` (and ``points`` as columns of lists)."""
        out = []
        for rec in records:
            item = rec.to_dict()
            item["changes"] = _finite(self.changes(rec))
            if points:
                item["points"] = _finite({k: v.tolist() for k, v in self.points(rec).items()})
            out.append(item)
        return out

    # --- setups ----------------------------------------------------------------------------------------------
    def save_setup(self, name: str, config_a: RunConfig, config_b: RunConfig | None = None, comment: str = "",
                   replace: bool = False) -> Setup:
        """Save (``replace``: overwrite) a named setup; the arms must share the model (as a Trainer's A/B do)."""
        from ..train.trainer import check_pair      # the A/B rule lives with the trainer
        check_pair(config_a, config_b)
        name = self._save_named("setup", name, replace, comment=comment, config_a=config_a.to_json(),
                                config_b=config_b.to_json() if config_b else None)
        return self.setup(name)

    def setups(self) -> list[Setup]:
        """Every saved setup, most recently saved first."""
        return [_setup(r) for r in self._query("SELECT * FROM setups ORDER BY updated DESC, name")]

    def setup(self, name: str) -> Setup:
        return _setup(self._named("setup", name))

    def rename_setup(self, name: str, new_name: str) -> Setup:
        new_name = _check_name(new_name, "setup")
        with self.transaction() as conn:
            if new_name.lower() != name.lower() and conn.execute(
                    "SELECT 1 FROM setups WHERE name = ?", (new_name,)).fetchone():
                raise RegistryError(f"a setup named {new_name!r} exists already")
            if conn.execute("UPDATE setups SET name = ?, updated = ? WHERE name = ?",
                            (new_name, time.time(), name)).rowcount == 0:
                raise RegistryError(f"no setup named {name!r}")
        return self.setup(new_name)

    def delete_setup(self, name: str) -> None:
        self._delete_named("setup", name)

    # --- lessons ---------------------------------------------------------------------------------------------
    def save_lesson(self, name: str, lesson: Lesson, comment: str = "", replace: bool = False) -> StoredLesson:
        """Save (``replace``: overwrite) a lesson under ``name``; ``khrbm train --lesson NAME`` finds it."""
        return self.lesson(self._save_named("lesson", name, replace, comment=comment, body=lesson.to_json()))

    def lessons(self) -> list[StoredLesson]:
        return [_lesson(r) for r in self._query("SELECT * FROM lessons ORDER BY updated DESC, name")]

    def lesson(self, name: str) -> StoredLesson:
        return _lesson(self._named("lesson", name))

    def delete_lesson(self, name: str) -> None:
        self._delete_named("lesson", name)

    # --- named items (setups, lessons) ---------------------------------------------------------------------
    def _save_named(self, what: str, name: str, replace: bool, **columns) -> str:
        name = _check_name(name, what)
        now = time.time()
        with self.transaction() as conn:
            old = conn.execute(f"SELECT created FROM {what}s WHERE name = ?", (name,)).fetchone()
            if old is not None and not replace:
                raise RegistryError(f"a {what} named {name!r} exists already: pick another name, or replace it")
            row = {"name": name, **columns, "created": old[0] if old else now, "updated": now}
            conn.execute(f"INSERT OR REPLACE INTO {what}s ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         tuple(row.values()))
        return name

    def _named(self, what: str, name: str):
        rows = self._query(f"SELECT * FROM {what}s WHERE name = ?", (name,))
        if not rows:
            raise RegistryError(f"no {what} named {name!r} in the registry")
        return rows[0]

    def _delete_named(self, what: str, name: str) -> None:
        with self.transaction() as conn:
            if conn.execute(f"DELETE FROM {what}s WHERE name = ?", (name,)).rowcount == 0:
                raise RegistryError(f"no {what} named {name!r} in the registry")


def _text(value) -> str | None:
    return None if value is None else str(value)


def _column_value(name: str, value):
    if name == "config":
        return value.to_json()
    if name == "lesson":
        return value.to_json() if value is not None else None
    if name == "final":
        return to_json(value) if value is not None else None
    if name in ("out_dir", "checkpoint"):
        return _text(value)
    return value


def _check_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise RegistryError(f"a {what} needs a name of 1 to {NAME_MAX} characters")
    return name


def _setup(row) -> Setup:
    return Setup(row["name"], row["comment"], RunConfig.from_json(row["config_a"]),
                 RunConfig.from_json(row["config_b"]) if row["config_b"] else None, row["created"], row["updated"])


def _lesson(row) -> StoredLesson:
    try:
        lesson = Lesson.from_json(row["body"], row["name"])
    except LessonError as exc:
        raise RegistryError(f"the stored lesson {row['name']!r} no longer parses: {exc}")
    return StoredLesson(row["name"], row["comment"], lesson, row["created"], row["updated"])


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
