"""What the trainer publishes: frozen snapshots of its arms and the log of live changes.

The trainer's loop builds a new :class:`Snapshot` (read-only copies of every array) and swaps the reference,
so a reader on another thread never sees a half-written state. ``Snapshot.version`` grows with every publish.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numba import njit

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

    Beyond the contract: ``a``, ``b`` (biases), ``checksum`` (:func:`checksum` of W, a, b, computed from the
    copies at publish time),
    ``n_labels``, ``batches_per_epoch``, ``mode_counts`` ({"td": (win, inhibit), "bu": (win, inhibit)}: the
    counts of both modes since each was last switched on). ``history`` has an extra column ``full``: 1.0 for
    the points on the full validation set (epoch boundaries), 0.0 for the subsample points.
    ``counts_mode`` is the KH mode the counts refer to: the current mode, or while KH is off the last
    mode that was on ("off", with empty arrays, if KH never ran since the reset).
    ``competition``: the :class:`CompetitionRecord` of the counts' mode (published at a bounded rate, so it may
    be a little older than the snapshot). ``probe_visible``: the visible vectors of the probe images (pixels
    and, for the cRBM, their one-hot labels), for p(h|v) of one unit.
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
    competition: "CompetitionRecord | None" = field(default=None, repr=False)
    probe_visible: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CompetitionRecord:
    """What inspecting one unit needs beyond the counts (the app's unit panel): too big to copy into every
    snapshot, so the trainer copies it only when it changed, at most every ``COMPETITION_INTERVAL`` s while
    running (and at every publish otherwise); snapshots in between carry the same object.

    ``matrix``: the K × K winner → inhibited counts of ``mode`` (:mod:`khrbm.train.competition`; None while KH
    has not counted, or above MAX_MATRIX_UNITS). ``count_steps`` (n,), ``count_wins``, ``count_inhibited``
    (n × K): the cumulative counts at thinned metric points. ``rf_steps`` (r,) and ``rf_weights`` (r read-only
    copies of W): the weights at thinned metric points, for a unit's receptive field over time."""
    version: int
    step: int
    mode: str
    matrix: np.ndarray | None
    count_steps: np.ndarray
    count_wins: np.ndarray
    count_inhibited: np.ndarray
    rf_steps: np.ndarray
    rf_weights: tuple


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


_LANES = 16
_MUL = np.uint32(0x9E3779B1)      # odd: h -> h·MUL + w is a bijection of h for each word w


@njit(cache=True, nogil=True)
def _hash_words(src, lanes):
    """Per lane q: lanes[q] = lanes[q]·MUL + word (mod 2³²) over the words src[q::16], then the tail words
    into lane 0. Vectorizes: ~0.1 ms for W at M = 500."""
    n = src.shape[0]
    m = n - n % _LANES
    for i0 in range(0, m, _LANES):
        for q in range(_LANES):
            lanes[q] = lanes[q] * _MUL + src[i0 + q]
    for i in range(m, n):
        lanes[0] = lanes[0] * _MUL + src[i]


def _words(x: np.ndarray) -> np.ndarray:
    b = np.ascontiguousarray(x).view(np.uint8).ravel()
    pad = -len(b) % 4
    return (np.concatenate([b, np.zeros(pad, np.uint8)]) if pad else b).view(np.uint32)


def frozen_copies(*arrays: np.ndarray) -> tuple:
    """(read-only copies of ``arrays``, :func:`checksum` of the copies)."""
    copies = tuple(readonly(np.array(x, order="C")) for x in arrays)
    return copies, checksum(*copies)


def checksum(*arrays: np.ndarray) -> int:
    """A 64-bit hash of the bytes of ``arrays`` (what ArmSnapshot.checksum holds for W, a, b): 16 lanes of
    32-bit multiply-adds over the 32-bit words, combined; any change of one word changes it. Not
    cryptographic: it shows that a snapshot's arrays are the ones published, at ~memory speed (CRC-32
    cost ~1 ms per 1.5 MB of W at M = 500, more than the rest of a publish)."""
    lanes = np.full(_LANES, 0x811C9DC5, np.uint32)
    for x in arrays:
        _hash_words(_words(x), lanes)
    return _combine(lanes)


def _combine(lanes: np.ndarray) -> int:
    h = 0
    for v in lanes.tolist():
        h = (h * 0x100000001B3 ^ v) & 0xFFFFFFFFFFFFFFFF
    return h
