"""Shared runs (issue 9, "Follow the teacher"): a tab shares its run under a short code; other tabs open
``/app?follow=CODE`` and draw the same snapshots, read-only: they read the sharer's ``Trainer.snapshot``, so
a follower costs no training. A follower may fork the run (:func:`checkpoint_bytes` of the sharer's trainer,
then :func:`restore` into a trainer of its own). When the sharing tab closes, :func:`end` unlists the code;
its followers keep the closed trainer (no thread; its arms stay readable, so a copy can still be made) until
they close too. Panel-free: the per-tab side is :mod:`khrbm.app.classroom`.

Followers draw frames, not every snapshot: :meth:`Share.frame` hands every follower of a run the same snapshot
object, renewed at once when the run's state or its settings change (the teacher's click) and otherwise every
:func:`Pace.interval` seconds. So what a snapshot's figures are made of (mosaic codes, curve arrays, markers) is
computed once per frame for the whole class (``feed.SHARED``), and the redraws of all followers, paced by what
they cost, keep to FOLLOW_BUDGET of the one core the trainers share with the server's event loop.
"""
from __future__ import annotations

import logging
import secrets
import tempfile
import threading
import time
from pathlib import Path

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"     # no 0/O or 1/I to mistake when typed from a screen
CODE_LENGTH = 4
FOLLOW_ARG = "follow"                                    # the link's query: /app?follow=CODE
FOLLOW_REDRAW = 1.0       # seconds between two frames of a shared run at least (its state staying the same)
FOLLOW_MOSAIC = 2.5       # seconds between a follower's mosaic redraws at least (scaled as the frames are)
FOLLOW_BUDGET = 0.15      # share of a core that the followers' redraws may take, all shared runs together
PACE_LOG_EVERY = 20.0     # seconds between two log lines on the followers' pace
log = logging.getLogger("khrbm.app")


class Pace:
    """Server-wide: what one follower's redraw costs the event loop (a moving average of its CPU seconds,
    sending included), and from it how far apart a shared run's frames must be so that all followers' redraws
    keep to ``budget`` of a core: with n followers in all, every ``max(FOLLOW_REDRAW, n · cost / budget)`` s."""

    def __init__(self, budget: float = FOLLOW_BUDGET, weight: float = 0.2):
        self.budget, self.weight = budget, weight
        self.cost = 0.0
        self._said = 0.0            # when the log last said the pace

    def record(self, seconds: float) -> None:
        """One follower redraw took ``seconds``; one far above the average (a tab's first, which builds its
        figures) counts as 3 times the average."""
        seconds = min(seconds, 3 * self.cost) if self.cost else seconds
        self.cost = seconds if not self.cost else (1 - self.weight) * self.cost + self.weight * seconds
        now = time.monotonic()
        if now - self._said >= PACE_LOG_EVERY:
            self._said = now
            n = sum(item.followers for item in listing())
            log.info("followers: %d; a redraw costs %.1f ms of the event loop; a frame every %.2f s", n,
                     1000 * self.cost, self.interval(n))

    def interval(self, followers: int | None = None) -> float:
        """Seconds between two frames of a shared run; ``followers``: all followers on the server (default:
        counted from the shared runs)."""
        n = sum(item.followers for item in listing()) if followers is None else followers
        return max(FOLLOW_REDRAW, n * self.cost / self.budget)

    def scale(self) -> float:
        """How much slower than FOLLOW_REDRAW the frames come now (1 on a server with time to spare)."""
        return self.interval() / FOLLOW_REDRAW


PACE = Pace()


class Share:
    """One shared run: its ``code``, the sharing session (``owner``), the ``trainer`` drawn (the owner's
    current one: a Reset replaces it), the id of its ``preset`` and a ``label`` for lists, and the sessions
    following it."""

    def __init__(self, code: str, owner: str, trainer, preset: str, label: str):
        self.code, self.owner, self.trainer, self.preset, self.label = code, owner, trainer, preset, label
        self.ended = False
        self._followers: set = set()
        self._lock = threading.Lock()
        self._frame = None          # the snapshot every follower draws now, and when it was taken
        self._frame_at = 0.0

    @property
    def snapshot(self):
        return self.trainer.snapshot

    def frame(self, pace: Pace = PACE):
        """The snapshot the followers draw (the same object for all of them): the trainer's latest when the run's
        state or its settings changed since the last frame, or when ``pace.interval()`` passed; else the last."""
        snap, now, interval = self.trainer.snapshot, time.monotonic(), pace.interval()
        with self._lock:
            last = self._frame
            if last is None or (snap.state, snap.changes) != (last.state, last.changes) or \
                    (snap is not last and now - self._frame_at >= interval):
                self._frame, self._frame_at = snap, now
            return self._frame

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
