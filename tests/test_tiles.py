"""The mosaic helpers shared by the app and khrbm.viz (khrbm/tiles.py), checked value by value."""
from __future__ import annotations

import numpy as np
import pytest

from khrbm import tiles


# --- mosaic -------------------------------------------------------------------------------------
def test_grid_shape_is_near_square_and_holds_every_tile():
    assert tiles.grid_shape(100) == (10, 10)
    assert tiles.grid_shape(56) == (7, 8)
    assert tiles.grid_shape(1) == (1, 1)
    assert tiles.grid_shape(5, cols=2) == (3, 2)
    for n in range(1, 60):
        rows, cols = tiles.grid_shape(n)
        assert rows * cols >= n and (rows - 1) * cols < n


def test_tile_mosaic_order_shape_and_gaps():
    # 5 tiles of 2x3 pixels; tile i is filled with the value i (row-major inside the tile)
    stack = np.stack([np.full(6, float(i)) for i in range(5)])
    stack[1] = np.arange(6)                                    # a tile with distinct pixels
    mosaic, (rows, cols) = tiles.tile_mosaic(stack, (2, 3), gap=1)
    assert (rows, cols) == (2, 3)
    assert mosaic.shape == (2 * 3 - 1, 3 * 4 - 1)              # rows*(h+gap)-gap, cols*(w+gap)-gap
    # tile i sits at row i // cols, column i % cols, row 0 at the top of the array
    assert np.all(mosaic[0:2, 0:3] == 0)
    assert np.array_equal(mosaic[0:2, 4:7], np.arange(6).reshape(2, 3))
    assert np.all(mosaic[0:2, 8:11] == 2)
    assert np.all(mosaic[3:5, 0:3] == 3)
    assert np.all(mosaic[3:5, 4:7] == 4)
    # gaps and the unused sixth cell are NaN
    assert np.isnan(mosaic[2, :]).all() and np.isnan(mosaic[:, 3]).all() and np.isnan(mosaic[:, 7]).all()
    assert np.isnan(mosaic[3:5, 8:11]).all()


def test_receptive_fields_scale_each_tile_by_its_own_max_abs():
    rng = np.random.default_rng(0)
    n_pixels, m = 28 * 28, 6
    W = rng.normal(size=(n_pixels + 10, m))                      # 10 label rows (cRBM) are ignored
    W[:, 2] *= 1000.0                                            # one unit with huge weights
    W[:n_pixels, 4] = 0.0                                        # one dead unit
    W[5, 5], W[7, 5] = -3.0, 2.0                                 # extreme values of unit 5
    W[:n_pixels, 5] = np.clip(W[:n_pixels, 5], -3.0, 2.0)
    rf = tiles.receptive_fields(W, n_pixels, (28, 28))
    assert (rf["rows"], rf["cols"]) == (2, 3)
    mos = rf["mosaic"]
    assert mos.shape == (2 * 29 - 1, 3 * 29 - 1)
    for j in range(m):
        r, c = divmod(j, rf["cols"])
        tile = mos[r * 29:r * 29 + 28, c * 29:c * 29 + 28]
        if j == 4:
            assert np.all(tile == 0)
            continue
        assert np.nanmax(np.abs(tile)) == pytest.approx(1.0, abs=1e-6)      # each tile spans [-1, 1]
        assert np.allclose(tile, (W[:n_pixels, j] / np.abs(W[:n_pixels, j]).max()).reshape(28, 28), atol=1e-6)
    # unit 5: the most negative weight maps to -1, the positive max to 2/3
    tile5 = mos[29:57, 58:86]
    assert tile5.flat[5] == pytest.approx(-1.0) and tile5.flat[7] == pytest.approx(2 / 3)
    assert rf["peak"][2] == pytest.approx(np.abs(W[:n_pixels, 2]).max())


def test_receptive_fields_show_at_most_max_units():
    W = np.ones((16, 30))
    rf = tiles.receptive_fields(W, 16, (4, 4), max_units=9)
    assert rf["shown"] == 9 and rf["n_units"] == 30 and (rf["rows"], rf["cols"]) == (3, 3)


def test_tile_boxes_match_the_mosaic_tiles():
    """Box i (plot coordinates, y up, mosaic drawn flipped so row 0 is on top) covers tile i."""
    n, shape, gap = 7, (3, 2), 1
    stack = np.stack([np.full(6, float(i)) for i in range(n)])
    mosaic, (rows, cols) = tiles.tile_mosaic(stack, shape, gap=gap)
    boxes = tiles.tile_boxes(n, shape, cols, gap)
    H = mosaic.shape[0]
    shown = np.flipud(mosaic)            # what Bokeh draws: array row 0 at the bottom
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        assert (x1 - x0, y1 - y0) == (2, 3)
        block = shown[int(y0):int(y1), int(x0):int(x1)]
        assert np.all(block == i), i
    assert boxes[:, 3].max() == H and boxes[:, 0].min() == 0


def test_scale_tiles_keeps_zero_rows_zero():
    out = tiles.scale_tiles(np.array([[0.0, 0.0], [2.0, -4.0]]))
    assert np.array_equal(out, [[0.0, 0.0], [0.5, -1.0]])


# --- competition ---------------------------------------------------------------------------------
def test_competition_images_reshape_pixels_and_drop_label_units():
    n_pixels = 12
    wins = np.arange(n_pixels + 3)                 # 3 label units at the end (cRBM) are not pixels
    inh = 100 + np.arange(n_pixels + 3)
    w, i = tiles.competition_images(wins, inh, n_pixels, (3, 4))
    assert w.shape == (3, 4) and i.shape == (3, 4)
    assert w[0, 0] == 0 and w[0, 3] == 3 and w[1, 0] == 4 and w[2, 3] == 11   # row-major, as the images
    assert i[2, 3] == 111


def test_probe_mosaic_rows_are_input_then_reconstructions():
    inp = np.zeros((5, 4))
    rec = np.ones((5, 4))
    mos = tiles.probe_mosaic([inp, rec], (2, 2), max_cols=3)
    assert mos.shape == (2 * 3 - 1, 3 * 3 - 1)
    assert np.all(mos[0:2, 0:2] == 0) and np.all(mos[3:5, 6:8] == 1)


def test_importing_tiles_loads_no_plotting_library():
    import subprocess
    import sys
    code = "import sys, khrbm.tiles; print(sorted(m for m in ('holoviews', 'panel', 'bokeh', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
