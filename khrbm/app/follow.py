"""Shared runs (issue 9, "Follow the teacher"): a tab shares its run under a short code; other tabs open
``/app?follow=CODE`` and draw the same snapshots, read-only: they read the sharer's ``Trainer.snapshot``, so
a follower costs no training. A follower may fork the run (:func:`checkpoint_bytes` of the sharer's trainer,
then :func:`restore` into a trainer of its own). When the sharing tab closes, :func:`end` unlists the code;
its followers keep the closed trainer (no thread; its arms stay readable, so a copy can still be made) until
they close too. Panel-free: the per-tab side is :mod:`khrbm.app.classroom`.
"""
from __future__ import annotations

import secrets
import tempfile
import threading
from pathlib import Path

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"     # no 0/O or 1/I to mistake when typed from a screen
CODE_LENGTH = 4
FOLLOW_ARG = "follow"                                    # the link's query: /app?follow=CODE


class Share:
    """One shared run: its ``code``, the sharing session (``owner``), the ``trainer`` drawn (the owner's
    current one: a Reset replaces it), the id of its ``preset`` and a ``label`` for lists, and the sessions
    following it."""

    def __init__(self, code: str, owner: str, trainer, preset: str, label: str):
        self.code, self.owner, self.trainer, self.preset, self.label = code, owner, trainer, preset, label
        self.ended = False
        self._followers: set = set()
        self._lock = threading.Lock()

    @property
    def snapshot(self):
        return self.trainer.snapshot

    def join(self, sid) -> None:
        with self._lock:
            self._followers.add(sid)

    def leave(self, sid) -> None:
        with self._lock:
            self._followers.discard(sid)

    @property
    def followers(self) -> int:
        with self._lock:
            return len(self._followers)


_LOCK = threading.Lock()
_SHARES: dict[str, Share] = {}


def share(owner: str, trainer, preset: str, label: str) -> Share:
    """List ``trainer`` (of session ``owner``, opened from ``preset``) under a new code."""
    with _LOCK:
        while True:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            if code not in _SHARES:
                break
        _SHARES[code] = item = Share(code, owner, trainer, preset, label)
    return item


def normalize(text) -> str:
    """A code as typed or linked (any case, spaces) in its listed form; '' if it cannot be one."""
    code = "".join(str(text or "").split()).upper()
    return code if len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code) else ""


def lookup(code) -> Share | None:
    with _LOCK:
        return _SHARES.get(normalize(code))


def listing() -> list[Share]:
    """The runs shared now, oldest first."""
    with _LOCK:
        return list(_SHARES.values())


def end(item: Share) -> None:
    """The sharing tab closed: unlist the code; followers keep what they draw."""
    item.ended = True
    with _LOCK:
        if _SHARES.get(item.code) is item:
            del _SHARES[item.code]


def checkpoint_bytes(trainer) -> bytes:
    """``trainer``'s checkpoint (every arm, the change log) as the bytes of its .npz file. Waits for the
    current minibatch; a closed trainer (its thread joined first) is read as it ended."""
    with tempfile.TemporaryDirectory(prefix="khrbm-") as tmp:
        path = Path(tmp) / "run.npz"
        try:
            trainer.save_checkpoint(path)
        except RuntimeError:           # closed meanwhile: once its thread ended, its arms are read directly
            trainer.close(timeout=120)
            trainer.save_checkpoint(path)
        return path.read_bytes()


def restore(raw: bytes | None, configs: tuple, dataset, name: str = "run.npz"):
    """A new, paused Trainer holding the checkpoint ``raw`` (made by :func:`checkpoint_bytes`; the status
    says it was loaded from ``name``); ``configs``: the arms' configs it was taken with (the checkpoint's own
    replace them). ``raw`` None: a fresh trainer with those configs."""
    from ..train.trainer import Trainer   # imported late, as the app does

    trainer = Trainer(configs[0], configs[1] if len(configs) > 1 else None, dataset=dataset)
    if raw is None:
        return trainer
    with tempfile.TemporaryDirectory(prefix="khrbm-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(raw)
        try:
            trainer.load_checkpoint(path)
        except BaseException:
            trainer.close()
            raise
    return trainer
