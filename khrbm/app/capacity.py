"""The server's training places (issue 9, "Follow the teacher"): at most ``max_trainers`` tabs of one server
process train at once; a tab over the cap waits in a first-come queue and gets the next place that frees.
An idle tab gives its place back (``idle_seconds``: not training for that long, or no browser connected).

Both limits come from the environment of `panel serve app` (``KHRBM_MAX_TRAINERS``, default the number of
cores this process may use; ``KHRBM_IDLE_SECONDS``, default 900, 0 = never) or from ``khrbm serve``'s flags
(:func:`configure`). Panel-free: the per-tab side is :mod:`khrbm.app.classroom`.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("khrbm.app")

MAX_TRAINERS_ENV = "KHRBM_MAX_TRAINERS"
IDLE_SECONDS_ENV = "KHRBM_IDLE_SECONDS"
DEFAULT_IDLE_SECONDS = 900.0


def cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:        # not Linux
        return os.cpu_count() or 1


def _from_env(name: str, default, kind, low):
    """``name`` from the environment as ``kind`` >= ``low``; a bad value is logged and ``default`` used."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
        if not value >= low:
            raise ValueError
        return value
    except ValueError:
        log.warning("%s=%r is not a number >= %s; using %s", name, raw[:40], low, default)
        return default


class Slots:
    """Training places of one server process: ``holders`` train, ``queue`` waits (first come, first served).
    Thread-safe. A place given to a queued tab when one frees shows in :meth:`holds`; the tab's own periodic
    callback notices it (no callback crosses sessions)."""

    def __init__(self, max_trainers: int):
        self.max_trainers = int(max_trainers)
        self._lock = threading.Lock()
        self._holders: set = set()
        self._queue: list = []

    def request(self, sid) -> bool:
        """A place for ``sid`` now (True), or a place in the queue (False; kept if already queued)."""
        with self._lock:
            if sid in self._holders:
                return True
            if not self._queue and len(self._holders) < self.max_trainers:
                self._holders.add(sid)
                return True
            if sid not in self._queue:
                self._queue.append(sid)
            return False

    def holds(self, sid) -> bool:
        with self._lock:
            return sid in self._holders

    def position(self, sid) -> int:
        """1 for the next in the queue; 0 if ``sid`` is not queued."""
        with self._lock:
            return self._queue.index(sid) + 1 if sid in self._queue else 0

    def release(self, sid) -> None:
        """``sid`` leaves (its place, or its spot in the queue); waiting tabs move up into free places."""
        with self._lock:
            self._holders.discard(sid)
            if sid in self._queue:
                self._queue.remove(sid)
            while self._queue and len(self._holders) < self.max_trainers:
                self._holders.add(self._queue.pop(0))

    def counts(self) -> tuple[int, int]:
        """(tabs holding a place, tabs queued)."""
        with self._lock:
            return len(self._holders), len(self._queue)

    def resize(self, max_trainers: int) -> None:
        with self._lock:
            self.max_trainers = int(max_trainers)
            while self._queue and len(self._holders) < self.max_trainers:
                self._holders.add(self._queue.pop(0))


SLOTS = Slots(_from_env(MAX_TRAINERS_ENV, cores(), int, 1))
_idle_seconds = _from_env(IDLE_SECONDS_ENV, DEFAULT_IDLE_SECONDS, float, 0.0)


def configure(max_trainers: int | None = None, idle_seconds: float | None = None) -> None:
    """Set the limits of this server process (``khrbm serve --max-trainers N --idle-release S``)."""
    global _idle_seconds
    if max_trainers is not None:
        SLOTS.resize(max_trainers)
    if idle_seconds is not None:
        _idle_seconds = float(idle_seconds)


def idle_seconds() -> float:
    """Seconds without training (or without a browser) after which a tab gives its trainer back; 0: never."""
    return _idle_seconds

