"""Arrays for inspecting one unit of a KH-trained RBM and the competition matrix (the app's unit panel,
``khrbm/app/inspect.py``). NumPy, plus SciPy's hierarchical clustering for the matrix's order; no Panel.

The competition matrix C (:mod:`khrbm.train.competition`): ``C[w, u]`` counts the samples whose KH winner w
inhibited u (hidden units in BU mode, visible units in TD mode).
"""
from __future__ import annotations

import numpy as np

from .core.rbm import sigmoid


def competition_affinity(matrix: np.ndarray) -> np.ndarray:
    """A_ij = S_ij / √(d_i d_j) of the symmetrised counts S = C + Cᵀ (d: row sums of S; 0 where d is 0): how
    much of i's and j's competition is with each other, in [0, 1] whatever the units' own rates."""
    S = np.asarray(matrix, np.float64)
    S = S + S.T
    d = S.sum(axis=1)
    scale = np.divide(1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0)
    return S * scale[:, None] * scale[None, :]


def cluster_order(matrix: np.ndarray) -> np.ndarray:
    """A permutation of the K units that puts units competing with each other next to each other: average-linkage
    clustering of the distance 1 - A (:func:`competition_affinity`), its dendrogram's leaves in order, then the
    units that never competed, by index. Each cluster of the tree is contiguous, so a group whose members
    compete more with each other than with anyone outside comes out as one block (and an isolated group always
    does: two groups with no count between them merge only after every merge within them)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    C = np.asarray(matrix)
    K = C.shape[0]
    if C.shape != (K, K):
        raise ValueError(f"the competition matrix must be square, got shape {C.shape}")
    active = np.flatnonzero(C.sum(axis=0) + C.sum(axis=1))
    if len(active) < 3:
        return np.r_[active, np.setdiff1d(np.arange(K), active)].astype(np.int64)
    D = 1.0 - competition_affinity(C[np.ix_(active, active)])
    np.fill_diagonal(D, 0.0)
    tree = linkage(squareform(np.clip(D, 0.0, 1.0), checks=False), method="average")
    return np.r_[active[leaves_list(tree)], np.setdiff1d(np.arange(K), active)].astype(np.int64)


def binned(matrix: np.ndarray, max_bins: int) -> np.ndarray:
    """``matrix`` summed over square blocks of ⌈K / max_bins⌉ rows and columns (the last block may be
    smaller): at most max_bins × max_bins, and the total count is kept."""
    C = np.asarray(matrix, np.int64)
    K = C.shape[0]
    size = max(1, -(-K // max_bins))
    if size == 1:
        return C
    starts = np.arange(0, K, size)
    return np.add.reduceat(np.add.reduceat(C, starts, axis=0), starts, axis=1)


def top_partners(matrix: np.ndarray, unit: int, k: int = 5) -> tuple[list, list]:
    """The units ``unit`` inhibited most often (its row) and those that inhibited it most often (its column):
    two lists of at most k (unit, count) pairs, most frequent first (ties: lower index), zero counts left out."""
    C = np.asarray(matrix)

    def top(counts):
        order = np.lexsort((np.arange(len(counts)), -counts.astype(np.int64)))[:k]
        return [(int(u), int(counts[u])) for u in order if counts[u] > 0]
    return top(C[unit]), top(C[:, unit])


def hidden_activation(V: np.ndarray, W: np.ndarray, b: np.ndarray, unit: int) -> np.ndarray:
    """p(h_unit = 1 | v) = σ(v · W[:, unit] + b_unit) for each visible vector v (row) of V (Eq. 2)."""
    return sigmoid(np.asarray(V, np.float64) @ np.asarray(W[:, unit], np.float64) + float(b[unit]))


def counts_until(steps, wins, inhibited, step: int, wins_now, inhibited_now):
    """Cumulative counts at ``steps`` (rows of ``wins``, ``inhibited``), ended by the counts at ``step`` (now).
    Unchanged when ``step`` is not after the last row."""
    steps, wins, inhibited = np.asarray(steps), np.asarray(wins), np.asarray(inhibited)
    if len(steps) and step <= steps[-1]:
        return steps, wins, inhibited
    return (np.r_[steps, step], np.vstack([wins, np.asarray(wins_now)[None, :]]),
            np.vstack([inhibited, np.asarray(inhibited_now)[None, :]]))


def even_intervals(steps: np.ndarray) -> np.ndarray:
    """Indices of the rows at increasing ``steps`` to keep so that no interval between two kept rows is under
    half the median interval (a share over a few minibatches is noise): a short interval joins the next one,
    the last one joins the one before. The first and the last row are always kept."""
    steps = np.asarray(steps)
    if len(steps) < 3:
        return np.arange(len(steps))
    gap = np.median(np.diff(steps)) / 2
    kept = [0]
    for i in range(1, len(steps)):
        if steps[i] - steps[kept[-1]] >= gap:
            kept.append(i)
    if kept[-1] != len(steps) - 1:
        if len(kept) > 1:
            kept[-1] = len(steps) - 1
        else:
            kept.append(len(steps) - 1)
    return np.array(kept)


def shares_over_time(steps: np.ndarray, wins: np.ndarray, inhibited: np.ndarray, unit: int):
    """From cumulative counts at increasing ``steps`` (rows of ``wins``, ``inhibited``: n × K), per interval
    between two rows (:func:`even_intervals`): its end step, the share of the interval's samples that ``unit``
    won, and the share in which it was inhibited (each sample has one winner, so the samples are the rows'
    total wins). Intervals without samples are left out."""
    kept = even_intervals(steps)
    steps = np.asarray(steps, np.float64)[kept]
    wins = np.asarray(wins, np.int64)[kept]
    inhibited = np.asarray(inhibited, np.int64)[kept]
    if len(steps) < 2:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    samples = np.diff(wins.sum(axis=1))
    ok = samples > 0
    won = np.diff(wins[:, unit])[ok] / samples[ok]
    lost = np.diff(inhibited[:, unit])[ok] / samples[ok]
    return steps[1:][ok], won, lost
