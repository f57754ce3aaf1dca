"""Checkpoints: one run's whole state, or an A/B pair's, in one ``.npz`` written atomically.

Format (version 1): ``W``, ``a``, ``b``, ``step``, ``version``, ``config_json`` (the RunConfig as JSON),
``history`` and ``xi_history`` (float64 tables, columns ``HISTORY_KEYS`` / ``XI_KEYS`` of :mod:`khrbm.train.run`),
``win_td``, ``win_bu``, ``inhibit_td``, ``inhibit_bu`` (competition counts), ``chain`` (PCD only). A trainer adds
``trainer_changes`` (the change log as JSON); an A/B pair stores each arm's arrays under the prefixes ``A.`` and
``B.`` plus ``arms`` (``"A,B"``). Files are read with ``allow_pickle=False``; anything unusable raises
:class:`CheckpointError` with one line naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..config import ConfigError, RunConfig
from .snapshot import ARM_NAMES, Change

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not fit the run it is loaded into."""


def write_npz_atomic(path: str | Path, arrays: dict) -> Path:
    """Write ``arrays`` to ``path`` (.npz) so that a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


RUN_KEYS = ("W", "a", "b", "step", "version", "config_json", "history", "xi_history",
            "win_td", "win_bu", "inhibit_td", "inhibit_bu")


def load_npz(path: str | Path) -> dict:
    """All arrays of an .npz file, loaded with ``allow_pickle=False``; CheckpointError if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({exc})")


def check_run_arrays(arrays: dict, where: str) -> dict:
    """``arrays`` if they hold a whole run of this checkpoint version with a valid config."""
    missing = [k for k in RUN_KEYS if k not in arrays]
    if missing:
        raise CheckpointError(f"{where}: not a khrbm checkpoint (missing {', '.join(missing)})")
    if int(arrays["version"]) != CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: checkpoint version {int(arrays['version'])}, expected {CHECKPOINT_VERSION}")
    try:
        RunConfig.from_json(str(arrays["config_json"]))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: its config is invalid: {exc}")
    return arrays


def read_checkpoint(path: str | Path) -> dict:
    """The arrays of a one-run checkpoint (:meth:`Run.save`); CheckpointError if unusable."""
    return check_run_arrays(load_npz(path), str(path))


def history_table(rows: list[dict], keys) -> np.ndarray:
    return np.array([[r[k] for k in keys] for r in rows], np.float64).reshape(len(rows), len(keys))


def history_rows(table: np.ndarray, keys) -> list[dict]:
    return [{k: (int(v) if k == "step" else float(v)) for k, v in zip(keys, row)} for row in table]


def changes_json(changes) -> np.ndarray:
    return np.array(json.dumps([list(c) for c in changes]))


def changes_from(arrays: dict) -> list:
    if "trainer_changes" not in arrays:
        return []
    try:
        return [Change(int(s), float(e), str(a), str(f), o, n)
                for s, e, a, f, o, n in json.loads(str(arrays["trainer_changes"]))]
    except (ValueError, TypeError):
        return []


def read_trainer_checkpoint(path) -> tuple[list[dict], list[Change]]:
    """The per-arm array dicts of a trainer (or Run) checkpoint, and its change log. CheckpointError if unusable."""
    arrays = load_npz(path)
    if "arms" not in arrays:
        return [check_run_arrays(arrays, str(path))], changes_from(arrays)
    names = str(arrays["arms"]).split(",")
    if not 1 <= len(names) <= 2 or any(n not in ARM_NAMES for n in names):
        raise CheckpointError(f"{path}: unexpected arms {arrays['arms']!s}")
    per_arm = [check_run_arrays({k[len(name) + 1:]: v for k, v in arrays.items() if k.startswith(name + ".")},
                                f"{path} (arm {name})") for name in names]
    return per_arm, changes_from(arrays)
