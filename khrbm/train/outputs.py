"""Output folders and files: one writer per folder (a lock), and every file written atomically.

Atomic write: a temp file in the target's folder (``NAME.<random>.khrbm.tmp``), fsync, then ``os.replace``
over the target, then fsync of the folder. A crash, SIGKILL or full disk leaves the target either as it was
or whole, never empty or half written; the temp file is removed on any error, and a SIGKILL's leftover is
removed by the next :class:`OutputFolder` opened on that folder.

Lock: :class:`OutputFolder` holds ``fcntl.flock`` on ``.khrbm.lock`` in the folder while a run writes there,
so a second run into the same folder is refused instead of mixing its files with the first's. The kernel
drops the lock when the holder's process ends, however it ends, so a killed run never leaves a lock that blocks.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

LOCK_NAME = ".khrbm.lock"
TEMP_SUFFIX = ".khrbm.tmp"
_UMASK = os.umask(0o022)   # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


class OutputError(OSError):
    """An output folder or file cannot be written (not a folder, read-only, full, in use). One line."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temp file beside ``path`` and move it over ``path`` once complete and synced.
    OutputError (naming ``path``) if the file system refuses; ``path`` is then as it was."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)   # what open() would give; mkstemp makes it private
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (file systems that cannot sync a folder are skipped)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise OutputError(f"cannot sync {folder}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write`."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


class OutputFolder:
    """``with OutputFolder(path) as folder:`` creates ``path`` (and parents), takes its lock, removes stale
    temp files of atomic writes, and yields the folder as a Path; the lock is released on exit.
    OutputError (one line) if ``path`` is not a folder, cannot be created or written, or another process
    holds the lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> Path:
        path = self.path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise OutputError(f"output folder {path} exists and is not a folder") from None
        except OSError as exc:
            raise OutputError(f"cannot create output folder {path}: {_reason(exc)}") from None
        try:
            fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write into output folder {path}: {_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OutputError(f"output folder {path} is in use by another khrbm run"
                                  f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to finish "
                                  f"or choose another --out") from None
            raise OutputError(f"cannot lock output folder {path}: {_reason(exc)}") from None
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:
            self._release()
            raise OutputError(f"cannot write into output folder {path}: {_reason(exc)}") from None
        for stale in path.glob("*" + TEMP_SUFFIX):
            if stale.is_file():
                stale.unlink(missing_ok=True)
        return path

    def _release(self):
        if self._fd is not None:
            os.close(self._fd)          # closing the last descriptor releases the flock
            self._fd = None

    def __exit__(self, *exc):
        self._release()
