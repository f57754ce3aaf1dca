"""The app's pure view helpers (app/views.py) and presets (app/presets.py), checked value by value
(the mosaic helpers they share with khrbm.viz are in test_tiles.py)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app import presets, views  # noqa: E402
from khrbm.config import RunConfig  # noqa: E402


# --- change markers, status ------------------------------------------------------------------------
def _change(step, epoch, arm, field, old, new):
    return SimpleNamespace(step=step, epoch=epoch, arm=arm, field=field, old=old, new=new)


def test_change_markers_positions_and_count():
    changes = [_change(120, 1.2, "A", "delta", 0.4, 0.0), _change(120, 1.2, "B", "delta", 0.4, 0.0),
               _change(300, 3.0, "A", "kh_mode", "td", "bu"), _change(300, 3.0, "A", "eps0", 0.04, 0.02),
               _change(50, 0.5, "A", "lr", 0.1, 0.05)]
    assert views.change_markers(changes, "step").tolist() == [50.0, 120.0, 300.0]
    assert views.change_markers(changes, "epoch").tolist() == [0.5, 1.2, 3.0]
    assert views.count_changes(changes) == 4           # the Δ change applied to both arms counts once
    assert views.change_markers([], "step").shape == (0,)


def test_status_text_says_state_epoch_rate_and_eps():
    cfg = RunConfig(kh_mode="td", epochs=30)
    arm = SimpleNamespace(name="A", config=cfg, step=1240, epoch=12.4, eps=0.0312)
    snap = SimpleNamespace(state="running", arms=(arm,), samples_per_s=41000.4)
    assert views.status_text(snap) == "running · epoch 12.40 / 30 · step 1,240 · 41,000 samples/s · ε=0.0312"
    plain = SimpleNamespace(state="idle", arms=(SimpleNamespace(name="A", config=RunConfig(), step=0, epoch=0.0,
                                                                eps=0.04),), samples_per_s=0.0)
    assert views.status_text(plain) == "idle · epoch 0.00 / 30 · step 0"


def test_history_arrays_drop_nan_and_csv_has_every_arm():
    hist = {"step": np.array([0, 10, 20]), "epoch": np.array([0.0, 0.1, 0.2]),
            "val_mse": np.array([0.5, np.nan, 0.3])}
    x, y = views.history_arrays(hist, "epoch", "val_mse")
    assert x.tolist() == [0.0, 0.2] and y.tolist() == [0.5, 0.3]
    assert views.history_arrays({}, "epoch", "val_mse")[0].size == 0
    arms = [SimpleNamespace(name="A", config=RunConfig(kh_mode="td"), history=hist),
            SimpleNamespace(name="B", config=RunConfig(), history=hist)]
    lines = views.history_csv(arms).strip().splitlines()
    assert lines[0].startswith("arm,kh_mode,step,epoch")
    assert len(lines) == 7 and lines[1].startswith("A,td,0,") and lines[4].startswith("B,off,0,")


def test_axis_range_pads_and_handles_empty_and_flat():
    assert views.axis_range([]) == (0.0, 1.0)
    assert views.axis_range([np.array([np.nan])]) == (0.0, 1.0)
    lo, hi = views.axis_range([np.array([1.0, 3.0])], pad=0.5)
    assert (lo, hi) == (0.0, 4.0)
    lo, hi = views.axis_range([np.array([2.0, 2.0])])
    assert lo < 2.0 < hi
    assert views.axis_range([np.array([0.5])], zero=True)[0] <= 0.0


def test_frame_size_keeps_pixels_square():
    assert views.frame_size(57, 86, 240) == {"frame_width": 240, "frame_height": 159}
    assert views.frame_size(100, 50, 200) == {"frame_width": 100, "frame_height": 200}


# --- Bokeh views update their data in place ----------------------------------------------------------
def test_mosaic_view_updates_image_and_hover_columns():
    pytest.importorskip("bokeh")
    W = np.zeros((16, 4))
    W[0, 1] = 2.0
    view = views.MosaicView("t", 4, (4, 4), frame=100)
    view.update(W, 16, wins=np.array([5, 6, 7, 8]), inhibited=np.array([1, 2, 3, 4]), title="new")
    img = view.image.data["image"][0]
    assert img.shape == (2 * 5 - 1, 2 * 5 - 1)
    assert np.flipud(img)[0, 5] == 1.0                        # unit 1: top row, second tile, pixel 0
    assert list(view.boxes.data["wins"]) == ["5", "6", "7", "8"]
    assert view.fig.title.text == "new"
    view.update(W, 16)                                        # TD / off: no per-unit counts
    assert view.boxes.data["wins"][0].startswith("n/a")


def test_curves_view_sets_ranges_and_markers():
    pytest.importorskip("bokeh")
    view = views.CurvesView("t", "epoch", "MSE", [dict(key="A", label="A", color="red")])
    view.update({"A": (np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.3, 0.2]))}, markers=np.array([1.5]))
    assert list(view.markers.data["x"]) == [1.5]
    assert view.fig.x_range.start <= 0.0 and view.fig.x_range.end >= 2.0
    assert view.fig.y_range.start < 0.2 and view.fig.y_range.end > 0.5


# --- presets -------------------------------------------------------------------------------------
def test_every_preset_is_a_valid_config():
    for name, preset in presets.PRESETS.items():
        fields, compare = presets.split(preset)
        cfg = RunConfig().replace(**fields)
        assert isinstance(compare, bool), name
        assert cfg.p == 2.0 and cfg.ell == 1 and cfg.k == 1, name


def test_presets_follow_the_authors_table():
    auth = presets.PRESETS["Authors: reconstruction, mnist, M=500, std, KH_TD"]
    assert (auth["eps0"], auth["delta"], auth["radius"], auth["n_hidden"], auth["init"]) == (0.008, 0.2, 1.0, 500,
                                                                                           "std")
    auth = presets.PRESETS["Authors: classification, kmnist, M=100, lecun, KH_BU"]
    assert (auth["eps0"], auth["delta"], auth["radius"], auth["task"]) == (0.0005, 0.4, 0.1, "classification")
    assert sum(name.startswith("Authors:") for name in presets.PRESETS) == 32
    story = presets.PRESETS[presets.INIT_ROBUSTNESS]
    assert story["compare"] and story["dataset"] == "mnist" and story["n_hidden"] == 100
    assert (story["init"], story["kh_mode"], story["eps0"], story["delta"], story["radius"]) == ("std", "td", 0.04,
                                                                                               0.4, 1.0)
    assert story["probe_every"] > 0                               # Fig. 2 has data
    fig3 = presets.PRESETS[presets.FIG3]
    assert (fig3["init"], fig3["radius"], fig3["kh_mode"], fig3["n_hidden"]) == ("lecun", 0.1, "td", 100)
    assert presets.PRESETS[presets.BARS]["dataset"] == "bars"


def test_preset_groups_cover_every_preset_once():
    names = [n for group in presets.groups().values() for n in group]
    assert sorted(names) == sorted(presets.PRESETS) and len(names) == len(set(names))
    assert names[0] == presets.INIT_ROBUSTNESS
