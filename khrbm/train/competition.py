"""The KH competition of one mode, as a run keeps it: who wins, who is inhibited, and by whom.

Per KH mode (its K postsynaptic units: hidden units in BU, visible units in TD), since the mode was last
switched on (:meth:`ModeCompetition.reset`):

- ``wins``, ``inhibited`` (K, int64): how often each unit won a sample / was inhibited (Eq. 8's g = +1 / -Δ);
- ``matrix`` (K × K, int32, :mod:`khrbm.core.tally`): ``matrix[w, u]`` counts the samples whose winner w
  inhibited u, so its column sums are ``inhibited``. Allocated at the first count, and only while
  K ≤ MAX_MATRIX_UNITS (at M = 10,000 it would take 400 MB);
- ``history``: (step, wins, inhibited) at metric points (:meth:`ModeCompetition.record`), thinned to at most
  HISTORY_ROWS evenly spaced points (:class:`Thinned`), for plots of a unit's counts over time.

Not threaded: the trainer's loop owns it and publishes frozen copies (``trainer._Core``).
"""
from __future__ import annotations

import numpy as np

from ..core.tally import count_pairs

MAX_MATRIX_UNITS = 2048    # the matrix is kept for K <= this (16 MB of int32 at 2,048 units)
HISTORY_ROWS = 64          # a mode's count history keeps at most this many points (and at least half as many)


class Thinned:
    """Items recorded at a stream of points, thinned to at most ``cap`` evenly spaced ones: every ``stride``-th
    point is kept; when more than ``cap`` are kept, every other one goes (the first stays) and the stride
    doubles. So a run of any length keeps between cap/2 and cap points spread over all of it."""

    def __init__(self, cap: int, items=(), stride: int = 1, seen: int = 0):
        if cap < 2:
            raise ValueError(f"cap must be >= 2, got {cap}")
        self.cap, self.items, self.stride, self.seen = cap, list(items), int(stride), int(seen)

    def offer(self, make) -> bool:
        """Count one point; keep ``make()`` (called only then) if the point is kept. True if it was."""
        keep = self.seen % self.stride == 0
        if keep:
            self.items.append(make())
            if len(self.items) > self.cap:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1
        return keep


class ModeCompetition:
    """Counts, winner → inhibited matrix and count history of one KH mode over K units (module docstring)."""

    def __init__(self, K: int):
        self.K = int(K)
        self.wins = np.zeros(self.K, np.int64)
        self.inhibited = np.zeros(self.K, np.int64)
        self.matrix: np.ndarray | None = None
        self.history = Thinned(HISTORY_ROWS)

    @property
    def keeps_matrix(self) -> bool:
        return self.K <= MAX_MATRIX_UNITS

    def add(self, ranked: np.ndarray, band: bool):
        """Count one step's ranking (B × (ℓ+1), winner first): its winners, the units it inhibited (rank ℓ,
        or ranks 1..ℓ with the band) and their pairs."""
        self.wins += np.bincount(ranked[:, 0], minlength=self.K)
        inhibited = ranked[:, 1:] if band else ranked[:, -1]
        self.inhibited += np.bincount(np.ravel(inhibited), minlength=self.K)
        if self.keeps_matrix:
            if self.matrix is None:
                self.matrix = np.zeros((self.K, self.K), np.int32)
            count_pairs(self.matrix, ranked, band)

    def record(self, step: int):
        """A metric point at ``step``: the counts join the (thinned) history."""
        self.history.offer(lambda: (int(step), self.wins.astype(np.int32), self.inhibited.astype(np.int32)))

    def reset(self, step: int):
        """The mode is switched on at ``step``: every count starts from zero (and the history from this step)."""
        self.wins[:] = 0
        self.inhibited[:] = 0
        if self.matrix is not None:
            self.matrix[:] = 0
        self.history = Thinned(HISTORY_ROWS)
        self.record(step)

    def history_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The history as (steps (n,) int64, wins (n, K) int32, inhibited (n, K) int32)."""
        rows = self.history.items
        steps = np.array([r[0] for r in rows], np.int64)
        if not rows:
            empty = np.zeros((0, self.K), np.int32)
            return steps, empty, empty.copy()
        return steps, np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])

    # --- checkpoints (khrbm.train.checkpoint checks what these read) ---------------------------------------------
    def arrays(self, mode: str) -> dict:
        steps, wins, inhibited = self.history_arrays()
        out = {f"win_{mode}": self.wins, f"inhibit_{mode}": self.inhibited,
               f"count_steps_{mode}": steps, f"count_wins_{mode}": wins, f"count_inhibit_{mode}": inhibited,
               f"count_thinning_{mode}": np.array([self.history.stride, self.history.seen], np.int64)}
        if self.matrix is not None:
            out[f"matrix_{mode}"] = self.matrix
        return out

    def restore(self, arrays: dict, mode: str):
        """Take the state saved by :meth:`arrays` (checked); a checkpoint from before the matrix and the
        history (their keys absent) restores the counts and starts both empty."""
        self.wins = np.array(arrays[f"win_{mode}"], np.int64)
        self.inhibited = np.array(arrays[f"inhibit_{mode}"], np.int64)
        matrix = arrays.get(f"matrix_{mode}")
        self.matrix = np.array(matrix, np.int32) if matrix is not None and self.keeps_matrix else None
        if f"count_steps_{mode}" in arrays:
            steps = arrays[f"count_steps_{mode}"]
            wins = np.array(arrays[f"count_wins_{mode}"], np.int32)
            inhibited = np.array(arrays[f"count_inhibit_{mode}"], np.int32)
            stride, seen = (int(v) for v in arrays[f"count_thinning_{mode}"])
            self.history = Thinned(HISTORY_ROWS, [(int(s), w, i) for s, w, i in zip(steps, wins, inhibited)],
                                   stride, seen)
        else:
            self.history = Thinned(HISTORY_ROWS)
