"""The competition matrix: counts of (winner, inhibited) pairs of the KH step, from the ranking it returns.

A step's ``ranked`` (B × (ℓ+1): each sample's winner, then the units ranked 1..ℓ below it; Eq. 8) adds one to
``C[winner, u]`` for the unit u the step inhibited: the one ranked ℓ below the winner, or with the band
(``ell_band``) each of the units ranked 1..ℓ. Rows are winners, columns the inhibited units: hidden units in BU
mode (M × M), visible units in TD mode (N × N). So the column sums of C are the inhibit counts.

Serial Numba (~1 µs for B = 100, ℓ = 1; ``np.add.at`` needs index arrays built per step): no parallel launch.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _count_pairs(matrix, ranked, first):
    for s in range(ranked.shape[0]):
        w = ranked[s, 0]
        for r in range(first, ranked.shape[1]):
            matrix[w, ranked[s, r]] += 1


def count_pairs(matrix: np.ndarray, ranked: np.ndarray, band: bool) -> None:
    """Add the (winner, inhibited) pairs of one step's ``ranked`` to ``matrix`` (K × K, int32) in place."""
    _count_pairs(matrix, ranked, 1 if band else ranked.shape[1] - 1)
