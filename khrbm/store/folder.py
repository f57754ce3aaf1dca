"""Run folders, the source of truth: the ``run.json`` manifest the recorders keep there, re-importing a folder
into the registry, and reading a past run back (its full curves and final weights) for the app.

A run folder is what ``khrbm train --out`` writes (config.json, metrics.csv/json, checkpoint.npz, result.json)
or what the app's recorder writes (checkpoint.npz of one run or an A/B pair). Beside them, ``run.json``::

    {"format": "khrbm-run", "version": 1, "source": "train", "group_uid": "", "state": "finished", "message": "",
     "started": 1.7e9, "ended": 1.7e9, "start_step": 0, "steps": 300, "epoch": 30.0,
     "checkpoint": "checkpoint.npz", "host": "...", "pid": 1,
     "arms": [{"arm": "", "uid": "…", "config": {RunConfig the run started from}}],
     "changes": [{"arm": "A", "step": 1200, "epoch": 2.0, "field": "delta", "old": 0.4, "new": 0.0}, ...],
     "lesson": {the lesson played} or null}

A folder without it (older runs, copied checkpoints) still imports: its uid is derived from the folder's path,
so importing it twice updates one record.
"""
from __future__ import annotations

import json
import math
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ConfigError, RunConfig
from ..train.checkpoint import CheckpointError, history_rows, read_trainer_checkpoint
from ..train.outputs import write_text_atomic
from ..train.lesson import Lesson, LessonError
from ..train.run import HISTORY_KEYS, history_columns
from ..train.snapshot import readonly
from .registry import Registry, RunRecord, alive, to_json

MANIFEST = "run.json"
MANIFEST_FORMAT = "khrbm-run"
MANIFEST_VERSION = 1
CHECKPOINT = "checkpoint.npz"
DIVERGED_CHECKPOINT = "checkpoint.diverged.npz"   # a diverged state (NaN weights) is kept beside, not over it
DECIMATION = 100


class FolderError(ValueError):
    """A folder is not a readable run folder; ``str(err)`` is one line."""


class Decimator:
    """Which metric points the registry keeps: a point is stored if it is the run's first, or if it lies at
    least max(1, s // DECIMATION) steps after the last stored point s (so stored points are ≥ 1 % of the
    run's age apart), and a run's final point always. A run with points every d steps keeps all of them up to
    step DECIMATION·d, then about DECIMATION·ln(S / (DECIMATION·d)) more up to step S: ~490 for 500 MNIST
    epochs at 10 points per epoch. The full history stays in the run folder's checkpoint."""

    def __init__(self):
        self.last_stored: int | None = None
        self.latest: dict | None = None     # the last point offered

    def select(self, rows: list[dict], final: bool = False) -> list[dict]:
        """Of ``rows`` (the run's next points, in order), those to store; ``final``: the run ends with the last
        point offered, which is then stored even if the rule skipped it."""
        kept = []
        for r in rows:
            step = int(r["step"])
            if self.last_stored is None or step - self.last_stored >= max(1, self.last_stored // DECIMATION):
                kept.append(r)
                self.last_stored = step
        if rows:
            self.latest = rows[-1]
        if final and self.latest is not None and int(self.latest["step"]) != self.last_stored:
            kept.append(self.latest)
            self.last_stored = int(self.latest["step"])
        return kept


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write the folder's run.json atomically (NaN metrics as null)."""
    text = json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **json.loads(to_json(manifest))},
                      indent=1) + "\n"
    write_text_atomic(Path(folder) / MANIFEST, text)


def read_manifest(folder: Path) -> dict | None:
    """The folder's run.json (None if it has none); FolderError if it is unreadable."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FolderError(f"{path}: unreadable run manifest ({exc})")
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("arms"), list):
        raise FolderError(f"{path}: not a khrbm run manifest")
    return data


def change_dict(change) -> dict:
    """A trainer :class:`~khrbm.train.snapshot.Change` as the manifest stores it."""
    return {"arm": change.arm, "step": change.step, "epoch": change.epoch, "field": change.field,
            "old": change.old, "new": change.new}


class _Change:
    """A change read back from a manifest (attribute access like the trainer's Change)."""

    def __init__(self, d: dict):
        self.arm, self.step, self.epoch = d.get("arm", ""), int(d["step"]), float(d["epoch"])
        self.field, self.old, self.new = d["field"], d["old"], d["new"]


def start_config(config: RunConfig, changes) -> RunConfig:
    """The config a run started from: ``config`` (its current settings) with ``changes`` undone, newest first."""
    for c in reversed(list(changes)):
        config = config.replace(**{c.field: c.old})
    return config


def _arm_of(change, arm: str, n_arms: int) -> bool:
    return n_arms == 1 or change.arm == arm


# --- import -------------------------------------------------------------------------------------------------
def import_folder(registry: Registry, folder: str | Path) -> list[RunRecord]:
    """Add (or bring up to date) the run(s) of a run folder in the registry; returns their records.
    FolderError if the folder holds no run; RegistryError if the registry cannot be written."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FolderError(f"{folder}: no such folder")
    manifest = read_manifest(folder) or {}
    checkpoint = folder / manifest.get("checkpoint", CHECKPOINT)
    arms_data = _read_arms(folder, checkpoint, manifest)
    names = [a.get("arm", "") for a in manifest.get("arms", [])] or (["A", "B"] if len(arms_data) == 2 else [""])
    if len(names) != len(arms_data):
        raise FolderError(f"{folder}: run.json lists {len(names)} arms, the checkpoint holds {len(arms_data)}")
    changes = ([_Change(c) for c in manifest["changes"]] if "changes" in manifest else arms_data[0]["changes"])
    group = manifest.get("group_uid", "") or (_derived_uid(folder, "group") if len(names) == 2 else "")
    ended_default = checkpoint.stat().st_mtime if checkpoint.exists() else time.time()
    records = []
    for i, (arm, data) in enumerate(zip(names, arms_data)):
        mine = [c for c in changes if _arm_of(c, arm, len(names))]
        listed = manifest.get("arms", [{}] * len(names))[i]
        try:
            config = (RunConfig.from_dict(listed["config"]) if "config" in listed
                      else start_config(data["config"], mine))
        except ConfigError as exc:
            raise FolderError(f"{folder}: its config is invalid: {exc}")
        rows = data["history"]
        state, message = _state(manifest, data, folder)
        lesson = _lesson(manifest, folder)
        run_id = registry.put_run(
            listed.get("uid") or _derived_uid(folder, arm), config, source=manifest.get("source", "import"),
            points=Decimator().select(rows, final=True), changes=list(enumerate(mine)),
            group_uid=group, arm=arm, state=state, message=message,
            started=manifest.get("started") or data["started"],
            ended=None if state == "running" else (manifest.get("ended") or ended_default),
            start_step=int(manifest.get("start_step", 0)), steps=data["steps"], epoch=data["epoch"],
            final=rows[-1] if rows else None, out_dir=folder,
            checkpoint=checkpoint if checkpoint.exists() else None,
            host=manifest.get("host", ""), pid=manifest.get("pid"), lesson=lesson)
        records.append(registry.run(run_id))
    return records


def _derived_uid(folder: Path, what: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"khrbm-run:{folder}:{what}").hex


def _read_arms(folder: Path, checkpoint: Path, manifest: dict) -> list[dict]:
    """Per arm: config (current), history rows, steps, epoch, finite, changes, started — from the checkpoint,
    else from config.json and metrics.json (``khrbm train``), else from run.json alone (an app run that
    diverged before any checkpoint: no points)."""
    if checkpoint.exists():
        try:
            per_arm, changes = read_trainer_checkpoint(checkpoint)
        except CheckpointError as exc:
            raise FolderError(str(exc))
        started = (folder / "config.json").stat().st_mtime if (folder / "config.json").exists() \
            else checkpoint.stat().st_mtime
        out = []
        for arrays in per_arm:
            rows = history_rows(arrays["history"], HISTORY_KEYS)
            steps = int(arrays["step"])
            finite = all(np.isfinite(arrays[k]).all() for k in ("W", "a", "b"))
            out.append({"config": RunConfig.from_json(str(arrays["config_json"])), "history": rows, "steps": steps,
                        "epoch": _epoch_at(steps, rows), "finite": finite, "changes": changes, "started": started})
        return out
    if manifest and not (folder / "config.json").exists():
        try:
            return [{"config": RunConfig.from_dict(arm["config"]), "history": [], "steps": int(manifest["steps"]),
                     "epoch": float(manifest["epoch"]), "finite": manifest.get("state") != "diverged",
                     "changes": [], "started": manifest["started"]} for arm in manifest["arms"]]
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise FolderError(f"{folder / MANIFEST}: incomplete run manifest ({exc})")
    try:
        config = RunConfig.load(folder / "config.json")
        rows = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else []
    except (ConfigError, OSError, ValueError) as exc:
        raise FolderError(f"{folder}: not a run folder (no {CHECKPOINT}, and config.json/metrics.json "
                          f"unreadable: {exc})")
    rows = [{k: (math.nan if v is None else v) for k, v in r.items()} for r in rows]
    steps = int(rows[-1]["step"]) if rows else 0
    return [{"config": config, "history": rows, "steps": steps, "epoch": _epoch_at(steps, rows), "finite": True,
             "changes": [], "started": (folder / "config.json").stat().st_mtime}]


def _epoch_at(steps: int, rows: list[dict]) -> float:
    for r in reversed(rows):
        if r["step"] > 0:
            return steps * float(r["epoch"]) / float(r["step"])
    return 0.0


def _state(manifest: dict, data: dict, folder: Path) -> tuple[str, str]:
    state, message = manifest.get("state"), manifest.get("message", "")
    if state and state != "running":
        return state, message
    if (state == "running" and manifest.get("host") == socket.gethostname() and manifest.get("pid")
            and alive(int(manifest["pid"]))):
        return "running", message
    if not data["finite"]:
        return "diverged", "weights are NaN or infinite in the checkpoint"
    if data["epoch"] >= data["config"].epochs - 1e-9:
        return "finished", ""
    return "interrupted", f"the folder holds the run up to step {data['steps']} (epoch {data['epoch']:.2f})"


def _lesson(manifest: dict, folder: Path) -> Lesson | None:
    if not manifest.get("lesson"):
        return None
    try:
        return Lesson.from_dict(manifest["lesson"], f"{folder / MANIFEST}")
    except LessonError:
        return None


# --- reading a past run back ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunView:
    """A past run, read-only, for the app's "Recent runs": its curves to show or overlay, its final weights for
    the mosaic. ``history``: columns like ``ArmSnapshot.history`` (``HISTORY_KEYS``), the full history from the
    checkpoint, or the registry's decimated points when the checkpoint is gone (then ``W`` is None and ``note``
    says why). ``config``: the settings at the end (the record's config with the changes applied)."""
    record: RunRecord
    config: RunConfig
    history: dict
    changes: list
    W: np.ndarray | None       # (n_visible, M); None without a readable checkpoint
    n_pixels: int              # pixel rows of W (0 without W)
    image_shape: tuple
    note: str = ""

    @property
    def n_labels(self) -> int:
        return 10 if self.config.task == "classification" else 0


def open_run(registry: Registry, ref) -> RunView:
    """Read run ``ref`` (id, uid prefix or RunRecord) back from its checkpoint (else from the registry)."""
    record = ref if isinstance(ref, RunRecord) else registry.run(ref)
    changes = registry.changes(record)
    note = ""
    arrays = None
    if record.checkpoint:
        try:
            per_arm, _ = read_trainer_checkpoint(record.checkpoint)
            arrays = per_arm[["A", "B"].index(record.arm)] if record.arm in ("A", "B") and len(per_arm) == 2 \
                else per_arm[0]
        except CheckpointError as exc:
            note = f"checkpoint unreadable ({exc}): curves from the registry (thinned), no weights"
    else:
        note = "no checkpoint recorded: curves from the registry (thinned), no weights"
    if arrays is not None:
        config = RunConfig.from_json(str(arrays["config_json"]))
        history = history_columns(history_rows(arrays["history"], HISTORY_KEYS), HISTORY_KEYS)
        W = np.array(arrays["W"])
    else:
        config = record.config
        for c in changes:
            config = config.replace(**{c["field"]: c["new"]})
        points = registry.points(record)
        n = len(points["step"])
        history = {k: points.get(k, np.full(n, math.nan)) for k in HISTORY_KEYS}
        W = None
    n_labels = 10 if config.task == "classification" else 0
    n_pixels = W.shape[0] - n_labels if W is not None else 0
    side = int(round(n_pixels ** 0.5))
    return RunView(record, config, {k: readonly(np.asarray(v, np.float64)) for k, v in history.items()}, changes,
                   readonly(W) if W is not None else None, n_pixels, (side, side), note)

