"""Checkpoints: one run's whole state, or an A/B pair's, in one ``.npz`` written atomically.

Format (version 1): ``W``, ``a``, ``b``, ``step``, ``version``, ``config_json`` (the RunConfig as JSON),
``history`` and ``xi_history`` (float64 tables, columns ``HISTORY_KEYS`` / ``XI_KEYS``),
``win_td``, ``win_bu``, ``inhibit_td``, ``inhibit_bu`` (competition counts), ``chain`` (PCD only), and per mode m
the rest of its competition (:mod:`khrbm.train.competition`; absent in files written before it, which load with
an empty matrix and history): ``matrix_m`` (K × K winner → inhibited counts, only once counted and K ≤
MAX_MATRIX_UNITS), ``count_steps_m``, ``count_wins_m``, ``count_inhibit_m`` (the counts at thinned metric
points) and ``count_thinning_m`` (the thinning's stride and points seen). A trainer adds
``trainer_changes`` (the change log as JSON); an A/B pair stores each arm's arrays under the prefixes ``A.`` and
``B.`` plus ``arms`` (``"A,B"``).

Reading trusts nothing in the file (the CLI's ``--resume`` and the app's upload both come here):
:func:`load_npz` refuses pickles, members that declare more than ``MAX_CHECKPOINT_BYTES`` in all (before
decompressing anything, so a zip bomb or an ``.npy`` header declaring a huge shape costs no memory), and
members whose data is not exactly what their header declares; :func:`check_run_arrays` then checks every
array's dtype, shape and range, and that they agree with each other (step and history, W and the counts).
Anything unusable raises :class:`CheckpointError` with one line naming the file.
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..config import FIELD, ConfigError, RunConfig, shown
from .competition import HISTORY_ROWS
from .outputs import atomic_write
from .snapshot import ARM_NAMES, Change

CHECKPOINT_VERSION = 1
HISTORY_KEYS = ("step", "epoch", "eps", "val_mse", "val_ce", "train_mse", "train_ce", "accuracy", "overlap")
XI_KEYS = ("step", "ratio", "cosine")
MAX_CHECKPOINT_BYTES = 512 << 20   # uncompressed bytes all members may declare together (the largest model's
#                                    A/B checkpoint, M = 10,000 in float64 with PCD chains, is ~260 MB)
MAX_MEMBERS = 64                   # arrays in one file (an A/B checkpoint has at most 53)
_KINDS = "biufU"                   # bool, integers, floats, unicode strings: nothing else is ever saved
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
                   (3, 0): np.lib.format.read_array_header_2_0}


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not fit the run it is loaded into."""


def write_npz_atomic(path: str | Path, arrays: dict) -> Path:
    """Write ``arrays`` to ``path`` (.npz) so that a reader sees the old file or the whole new one
    (:func:`khrbm.train.outputs.atomic_write`; OutputError if the file system refuses)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


RUN_KEYS = ("W", "a", "b", "step", "version", "config_json", "history", "xi_history",
            "win_td", "win_bu", "inhibit_td", "inhibit_bu")
COMPETITION_PARTS = ("matrix", "count_steps", "count_wins", "count_inhibit", "count_thinning")
COMPETITION_KEYS = tuple(f"{part}_{mode}" for mode in ("td", "bu") for part in COMPETITION_PARTS)   # optional
INT32_MAX = 2**31 - 1            # the matrix and the count history are int32


def load_npz(path: str | Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict:
    """All arrays of .npz file ``path``, read without pickles and without trusting its sizes (see the module
    docstring); CheckpointError (one line) if it is missing, not an .npz, too big, or any member is corrupt."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            _check_members(members, str(path), max_bytes)
            return {m.filename[:-4]: _read_member(archive, m, str(path)) for m in members}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, OverflowError, RuntimeError, NotImplementedError, SyntaxError,
            MemoryError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error) as exc:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({shown(str(exc))[1:-1]})") from None


def _check_members(members: list, where: str, max_bytes: int) -> None:
    if len(members) > MAX_MEMBERS:
        raise CheckpointError(f"{where}: holds {len(members)} arrays; a checkpoint has at most {MAX_MEMBERS}")
    names = [m.filename for m in members]
    odd = [n for n in names if not n.endswith(".npy")]
    if odd:
        raise CheckpointError(f"{where}: member {shown(odd[0])} is not an .npy array")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise CheckpointError(f"{where}: holds the array {shown(twice[:-4])} twice")
    declared = sum(m.file_size for m in members)
    if declared > max_bytes:
        raise CheckpointError(f"{where}: declares {declared:,} bytes uncompressed, more than the "
                              f"{max_bytes:,} a checkpoint may hold")


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One .npy member: its header checked (no object dtype; a shape whose size is what the member declares)
    before any data is read; the data read in chunks into one buffer and checked against the zip's CRC."""
    name = shown(member.filename[:-4])
    with archive.open(member) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version not in _HEADER_READERS:
                raise ValueError(f".npy format version {version}")
            shape, fortran, dtype = _HEADER_READERS[version](fh)   # reads at most what the member holds
        except Exception as exc:  # noqa: BLE001 - NumPy's header parser raises ValueError, SyntaxError, TokenError …
            raise CheckpointError(f"{where}: array {name} has no valid .npy header ({shown(str(exc))[1:-1]})") from None
        if dtype.hasobject:
            raise CheckpointError(f"{where}: array {name} holds Python objects (pickles are refused)")
        if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise CheckpointError(f"{where}: array {name} has dtype {shown(str(dtype))}, not a number or string type")
        nbytes = math.prod(shape) * dtype.itemsize if all(n >= 0 for n in shape) else -1
        if nbytes != member.file_size - fh.tell():
            raise CheckpointError(f"{where}: array {name} declares the shape {shown(shape)} of {dtype} "
                                  f"({nbytes:,} bytes), its member holds {member.file_size - fh.tell():,}")
        buffer = np.empty(nbytes, np.uint8)
        done = 0
        while done < nbytes:
            chunk = fh.read(min(nbytes - done, 1 << 20))
            if not chunk:
                raise CheckpointError(f"{where}: array {name} ends after {done:,} of its {nbytes:,} bytes")
            buffer[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
            done += len(chunk)
        fh.read(1)                     # reach the end of the member: zipfile checks its CRC there
    return buffer.view(dtype).reshape(shape, order="F" if fortran else "C")


def _need(arrays: dict, key: str, where: str, kinds: str, ndim: int, what: str) -> np.ndarray:
    """``arrays[key]`` if its dtype kind is one of ``kinds`` and it has ``ndim`` dimensions (else one line)."""
    a = arrays[key]
    if a.dtype.kind not in kinds or a.ndim != ndim:
        got = f"a {a.ndim}-D array of {a.dtype}" if a.ndim else f"a {a.dtype} scalar"
        raise CheckpointError(f"{where}: {key} is {got}, expected {what}")
    return a


def _scalar_int(arrays: dict, key: str, where: str) -> int:
    return int(_need(arrays, key, where, "iu", 0, "an integer scalar"))


def _text(arrays: dict, key: str, where: str) -> str:
    return str(_need(arrays, key, where, "U", 0, "a text scalar"))


def _check_steps(table: np.ndarray, key: str, step: int, where: str) -> None:
    """The step column of a history table: whole numbers, non-decreasing, none past the checkpoint's step."""
    steps = table[:, 0]
    if not (np.isfinite(steps).all() and (steps == np.round(steps)).all()):
        raise CheckpointError(f"{where}: {key} has a step that is not a whole number")
    if len(steps) and (steps.min() < 0 or (np.diff(steps) < 0).any() or steps[-1] > step):
        raise CheckpointError(f"{where}: {key} steps run from {shown(float(steps[0]))} to "
                              f"{shown(float(steps[-1]))} out of order or past the checkpoint's step {step}")


def check_run_arrays(arrays: dict, where: str) -> dict:
    """``arrays`` if they hold a whole run of this checkpoint version with a valid config, every array of the
    dtype and shape the format says and consistent with the others; CheckpointError (one line) otherwise."""
    missing = [k for k in RUN_KEYS if k not in arrays]
    if missing:
        raise CheckpointError(f"{where}: not a khrbm checkpoint (missing {', '.join(missing)})")
    version = _scalar_int(arrays, "version", where)
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: checkpoint version {shown(version)}, expected {CHECKPOINT_VERSION}")
    try:
        cfg = RunConfig.from_json(_text(arrays, "config_json", where))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: its config is invalid: {exc}") from None
    step = _scalar_int(arrays, "step", where)
    if step < 0:
        raise CheckpointError(f"{where}: step is {step}, expected a count >= 0")
    W = _need(arrays, "W", where, "f", 2, "a 2-D float array")
    a = _need(arrays, "a", where, "f", 1, "a 1-D float array")
    b = _need(arrays, "b", where, "f", 1, "a 1-D float array")
    for key, x in (("W", W), ("a", a), ("b", b)):
        if x.dtype != np.dtype(cfg.dtype):
            raise CheckpointError(f"{where}: {key} is {x.dtype}, its config says {cfg.dtype}")
        if not np.isfinite(x).all():
            raise CheckpointError(f"{where}: {key} contains NaN or inf")
    if W.shape != (len(a), len(b)) or len(b) != cfg.n_hidden:
        raise CheckpointError(f"{where}: W {W.shape}, a ({len(a)},) and b ({len(b)},) do not fit each other "
                              f"and n_hidden = {cfg.n_hidden}")
    for mode, n in (("td", len(a)), ("bu", len(b))):
        for key in (f"win_{mode}", f"inhibit_{mode}"):
            counts = _need(arrays, key, where, "iu", 1, "a 1-D integer array")
            if len(counts) != n or (len(counts) and counts.min() < 0):
                raise CheckpointError(f"{where}: {key} must hold {n} counts >= 0")
    for mode, n in (("td", len(a)), ("bu", len(b))):
        _check_competition(arrays, where, mode, n, step)
    for key, keys in (("history", HISTORY_KEYS), ("xi_history", XI_KEYS)):
        table = _need(arrays, key, where, "f", 2, f"a 2-D float table of {len(keys)} columns")
        if table.shape[1] != len(keys):
            raise CheckpointError(f"{where}: {key} has {table.shape[1]} columns, expected {len(keys)} "
                                  f"({', '.join(keys)})")
        _check_steps(table, key, step, where)
    if "chain" in arrays:
        chain = _need(arrays, "chain", where, "f", 2, "a 2-D float array")
        if chain.shape[1] != len(a) or not len(chain) or not ((chain >= 0) & (chain <= 1)).all():
            raise CheckpointError(f"{where}: chain must be rows of {len(a)} visible units in [0, 1]")
    return arrays


def _check_competition(arrays: dict, where: str, mode: str, K: int, step: int) -> None:
    """The optional competition arrays of ``mode`` (K units): the winner → inhibited matrix, whose column sums
    cannot exceed the inhibit counts, and the count history (steps in order, none past ``step``)."""
    key = f"matrix_{mode}"
    if key in arrays:
        matrix = _need(arrays, key, where, "iu", 2, "a 2-D integer array")
        if matrix.shape != (K, K) or (matrix.size and not 0 <= matrix.min() <= matrix.max() <= INT32_MAX):
            raise CheckpointError(f"{where}: {key} must be a {K} × {K} table of counts from 0 to {INT32_MAX}")
        if (matrix.sum(axis=0, dtype=np.int64) > arrays[f"inhibit_{mode}"]).any():
            raise CheckpointError(f"{where}: {key} counts more inhibitions than inhibit_{mode}")
    names = [f"{part}_{mode}" for part in COMPETITION_PARTS[1:]]
    present = [n for n in names if n in arrays]
    if not present:
        return
    if len(present) < len(names):
        raise CheckpointError(f"{where}: has {present[0]} but not {next(n for n in names if n not in arrays)}")
    steps = _need(arrays, names[0], where, "iu", 1, "a 1-D integer array")
    n = len(steps)
    for name in names[1:3]:
        counts = _need(arrays, name, where, "iu", 2, "a 2-D integer array")
        if counts.shape != (n, K) or (counts.size and not 0 <= counts.min() <= counts.max() <= INT32_MAX):
            raise CheckpointError(f"{where}: {name} must hold {n} rows of {K} counts from 0 to {INT32_MAX}")
    thinning = _need(arrays, names[3], where, "iu", 1, "a 1-D integer array")
    if len(thinning) != 2 or not (thinning[0] >= 1 and thinning[0] & (thinning[0] - 1) == 0 and thinning[1] >= n):
        raise CheckpointError(f"{where}: {names[3]} must be (a stride that is a power of 2, points seen >= {n})")
    if n > HISTORY_ROWS or (n and (steps.min() < 0 or (np.diff(steps) < 0).any() or steps[-1] > step)):
        raise CheckpointError(f"{where}: {names[0]} must hold at most {HISTORY_ROWS} steps in order from 0 to the "
                              f"checkpoint's step {step}")


def check_fits(arrays: dict, where: str, n_visible: int, n_hidden: int, batches_per_epoch: int,
               max_epochs: int) -> None:
    """CheckpointError unless checked ``arrays`` fit a run of ``n_visible`` x ``n_hidden`` units with
    ``batches_per_epoch`` minibatches: W's shape, a step below ``max_epochs`` epochs, and history epochs
    equal to step / batches_per_epoch (the data and minibatch size the run was trained with)."""
    if arrays["W"].shape != (n_visible, n_hidden):
        raise CheckpointError(f"{where}: W has shape {arrays['W'].shape}, the run needs {(n_visible, n_hidden)}")
    step = int(arrays["step"])
    if step > max_epochs * batches_per_epoch:
        raise CheckpointError(f"{where}: step {step:,} is past the {max_epochs:,} epochs of "
                              f"{batches_per_epoch:,} minibatches a run may train")
    history = arrays["history"]
    if len(history) and not np.allclose(history[:, 1], history[:, 0] / batches_per_epoch, rtol=1e-12, atol=0):
        raise CheckpointError(f"{where}: its history's epochs do not match {batches_per_epoch} minibatches per "
                              f"epoch (trained on other data or another batch size?)")


def read_checkpoint(path: str | Path) -> dict:
    """The arrays of a one-run checkpoint (:meth:`Run.save`); CheckpointError if unusable."""
    return check_run_arrays(load_npz(path), str(path))


def history_table(rows: list[dict], keys) -> np.ndarray:
    return np.array([[r[k] for k in keys] for r in rows], np.float64).reshape(len(rows), len(keys))


def history_rows(table: np.ndarray, keys) -> list[dict]:
    return [{k: (int(v) if k == "step" else float(v)) for k, v in zip(keys, row)} for row in table]


def changes_json(changes) -> np.ndarray:
    return np.array(json.dumps([list(c) for c in changes]))


def changes_from(arrays: dict, where: str) -> list:
    """The change log saved by a trainer ([] if none); CheckpointError if it is not a list of changes."""
    if "trainer_changes" not in arrays:
        return []
    try:
        rows = json.loads(_text(arrays, "trainer_changes", where))
        changes = [Change(s, float(e), a, f, o, n) for s, e, a, f, o, n in rows]
    except (ValueError, TypeError, OverflowError, RecursionError):
        changes = None
    if changes is None or not all(type(c.step) is int and c.step >= 0 and c.arm in ARM_NAMES
                                  and isinstance(c.field, str) and c.field in FIELD for c in changes):
        raise CheckpointError(f"{where}: its change log (trainer_changes) is not a list of "
                              f"[step, epoch, arm, field, old, new]")
    return changes


def read_trainer_checkpoint(path) -> tuple[list[dict], list[Change]]:
    """The per-arm array dicts of a trainer (or Run) checkpoint, and its change log. CheckpointError if unusable."""
    arrays = load_npz(path)
    if "arms" not in arrays:
        return [check_run_arrays(arrays, str(path))], changes_from(arrays, str(path))
    arms = _text(arrays, "arms", str(path))
    names = arms.split(",")
    if not 1 <= len(names) <= 2 or any(n not in ARM_NAMES for n in names) or len(set(names)) != len(names):
        raise CheckpointError(f"{path}: unexpected arms {shown(arms)}")
    per_arm = [check_run_arrays({k[len(name) + 1:]: v for k, v in arrays.items() if k.startswith(name + ".")},
                                f"{path} (arm {name})") for name in names]
    return per_arm, changes_from(arrays, str(path))
