"""Pure array helpers for pictures of an RBM: near-square tile grids, receptive-field mosaics, probe
rows and TD competition images. Shared by the app (``app/views.py``) and the HoloViews figures
(``khrbm.viz``); NumPy only, so importing it costs the app nothing.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

MAX_TILES = 500                                 # a mosaic shows at most this many hidden units
NAN = float("nan")


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding ``n`` tiles, filled row by row."""
    n = max(int(n), 1)
    if cols is None:
        cols = math.ceil(math.sqrt(n))
    cols = max(1, min(int(cols), n))
    return math.ceil(n / cols), cols


def scale_tiles(tiles: np.ndarray) -> np.ndarray:
    """Each row divided by its own max |value| (a zero row stays zero): values land in [-1, 1]."""
    tiles = np.asarray(tiles, dtype=np.float64)
    peak = np.abs(tiles).max(axis=1, keepdims=True) if tiles.size else np.zeros((tiles.shape[0], 1))
    return np.divide(tiles, peak, out=np.zeros_like(tiles), where=peak > 0)


def tile_mosaic(tiles: np.ndarray, image_shape: Sequence[int], cols: int | None = None, gap: int = 1,
                fill: float = NAN) -> tuple[np.ndarray, tuple[int, int]]:
    """Lay out ``tiles`` (n x h*w) as a grid image; tile i goes to row i // cols, column i % cols.

    Returns ``(mosaic, (rows, cols))``; the mosaic is ``rows*(h+gap)-gap`` by ``cols*(w+gap)-gap``,
    row 0 of the array is the top row, and the gaps and unused cells hold ``fill``.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    tiles = np.asarray(tiles, dtype=np.float64).reshape(-1, h * w)
    n = tiles.shape[0]
    rows, cols = grid_shape(n, cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), fill, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i].reshape(h, w)
    return out, (rows, cols)


def tile_boxes(n: int, image_shape: Sequence[int], cols: int, gap: int = 1) -> np.ndarray:
    """Plot-coordinate boxes (x0, y0, x1, y1) of the ``n`` tiles of a mosaic made by ``tile_mosaic``.

    The mosaic is drawn with its lower-left corner at (0, 0) and one unit per pixel, so tile i
    covers x in [c*(w+gap), c*(w+gap)+w] and y in [H - r*(h+gap) - h, H - r*(h+gap)].
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    rows = math.ceil(max(n, 1) / cols)
    height = rows * (h + gap) - gap
    idx = np.arange(n)
    r, c = np.divmod(idx, cols)
    x0 = c * (w + gap)
    y1 = height - r * (h + gap)
    return np.stack([x0, y1 - h, x0 + w, y1], axis=1).astype(np.float64)


def receptive_fields(W: np.ndarray, n_pixels: int, image_shape: Sequence[int], max_units: int = MAX_TILES,
                     gap: int = 1) -> dict:
    """Mosaic of hidden units' receptive fields W[:n_pixels, j], each tile scaled to [-1, 1]."""
    W = np.asarray(W)
    m = min(W.shape[1], max_units)
    tiles = W[:n_pixels, :m].T
    peak = np.abs(tiles).max(axis=1) if tiles.size else np.zeros(0)
    mosaic, (rows, cols) = tile_mosaic(scale_tiles(tiles), image_shape, gap=gap)
    return {"mosaic": mosaic.astype(np.float32), "rows": rows, "cols": cols, "n_units": W.shape[1],
            "shown": m, "boxes": tile_boxes(m, image_shape, cols, gap), "peak": peak}


def probe_mosaic(rows: Sequence[np.ndarray], image_shape: Sequence[int], max_cols: int = 8,
                 gap: int = 1) -> np.ndarray:
    """Stack of image rows (input, reconstruction A, reconstruction B ...) each showing the first
    ``max_cols`` probe images side by side; values stay as given (probabilities in [0, 1])."""
    blocks = []
    for arr in rows:
        arr = np.asarray(arr, dtype=np.float64)[:max_cols]
        blocks.append(arr)
    n = min(len(b) for b in blocks) if blocks else 0
    tiles = np.concatenate([b[:n] for b in blocks], axis=0) if n else np.zeros((0, int(np.prod(image_shape))))
    mosaic, _ = tile_mosaic(tiles, image_shape, cols=max(n, 1), gap=gap)
    return mosaic.astype(np.float32)


def competition_images(win_counts: np.ndarray, inhibit_counts: np.ndarray, n_pixels: int,
                       image_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """TD mode: per-visible-unit counts reshaped to images (label units, if any, are dropped)."""
    h, w = int(image_shape[0]), int(image_shape[1])
    wins = np.asarray(win_counts, dtype=np.float64)[:n_pixels].reshape(h, w)
    inh = np.asarray(inhibit_counts, dtype=np.float64)[:n_pixels].reshape(h, w)
    return wins, inh
