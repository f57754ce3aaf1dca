"""What the trainer publishes: frozen snapshots of its arms and the log of live changes.

The trainer's loop builds a new :class:`Snapshot` (read-only copies of every array) and swaps the reference,
so a reader on another thread never sees a half-written state. ``Snapshot.version`` grows with every publish.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..config import RunConfig

ARM_NAMES = ("A", "B")


class Change(NamedTuple):
    """One applied live change: from minibatch ``step`` (at ``epoch``) on, ``field`` of ``arm`` is ``new``."""
    step: int
    epoch: float
    arm: str
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ArmSnapshot:
    """One arm at publish time. Arrays are read-only copies.

    Beyond the contract: ``a``, ``b`` (biases), ``checksum`` (CRC-32 of W, a, b computed at publish time),
    ``n_labels``, ``batches_per_epoch``, ``mode_counts`` ({"td": (win, inhibit), "bu": (win, inhibit)}: the
    counts of both modes since each was last switched on). ``history`` has an extra column ``full``: 1.0 for
    the points on the full validation set (epoch boundaries), 0.0 for the subsample points.
    ``counts_mode`` is the KH mode the counts refer to: the current mode, or while KH is off the last
    mode that was on ("off", with empty arrays, if KH never ran since the reset).
    """
    name: str
    config: RunConfig
    step: int
    epoch: float
    eps: float
    W: np.ndarray
    n_pixels: int
    image_shape: tuple
    probe_input: np.ndarray
    probe_recon: np.ndarray
    history: dict
    xi: dict
    counts_mode: str
    win_counts: np.ndarray
    inhibit_counts: np.ndarray
    a: np.ndarray = field(default=None, repr=False)
    b: np.ndarray = field(default=None, repr=False)
    checksum: int = 0
    n_labels: int = 0
    batches_per_epoch: int = 1
    mode_counts: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Snapshot:
    """Everything the app shows, frozen at one moment. ``arms`` has 1 entry, or 2 ("A", "B") in compare mode.

    ``samples_per_s``: training samples processed per second over the last ~2 s while running (both arms
    counted in compare mode; evaluation and snapshot time included), 0.0 when not running.

    Lessons (:mod:`khrbm.train.lesson`): ``caption`` is the text of the latest lesson event that had one ("" without
    a lesson); ``lesson`` holds the lesson's events resolved for this run, a tuple of
    :class:`~khrbm.train.lesson.LessonMark` sorted by step (for a timeline on the curves; ``()`` without a lesson).
    """
    version: int
    state: str
    message: str
    samples_per_s: float
    changes: tuple
    arms: tuple
    notice: str = ""
    time: float = 0.0             # time.time() at publish
    caption: str = ""
    lesson: tuple = ()

    @property
    def compare(self) -> bool:
        return len(self.arms) == 2

    @property
    def step(self) -> int:
        return self.arms[0].step

    @property
    def epoch(self) -> float:
        return self.arms[0].epoch

    def arm(self, name: str) -> ArmSnapshot:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"no arm {name!r}; arms are {', '.join(a.name for a in self.arms)}")


def readonly(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


def checksum(*arrays: np.ndarray) -> int:
    """CRC-32 over the bytes of ``arrays`` (what ArmSnapshot.checksum holds for W, a, b)."""
    crc = 0
    for x in arrays:
        crc = zlib.crc32(np.ascontiguousarray(x).view(np.uint8).ravel(), crc)
    return crc
