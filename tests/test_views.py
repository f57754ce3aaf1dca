"""The app's pure view helpers (khrbm/app/views.py) and presets (khrbm/app/presets.py), checked value by value
(the mosaic helpers they share with khrbm.viz are in test_tiles.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from khrbm.app import feed, presets, views
from khrbm.config import RunConfig


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
    assert img.shape == (2 * 5 - 1, 2 * 5 - 1) and img.dtype == np.uint8      # 8-bit codes of w/max|w|
    assert np.flipud(img)[0, 5] == feed.CODES                 # unit 1: top row, second tile, pixel 0 (= 1.0)
    assert np.flipud(img)[0, 0] == feed.CODES // 2             # a zero weight: the middle of the map
    assert np.flipud(img)[4, 0] == feed.NAN_CODE               # the gap between tile rows
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
    for pid, preset in presets.PRESETS.items():
        cfg = RunConfig().replace(**preset.fields)
        assert isinstance(preset.compare, bool) and preset.id == pid, pid
        assert cfg.p == 2.0 and cfg.ell == 1 and cfg.k == 1, pid


def test_presets_follow_the_authors_table():
    auth = presets.PRESETS["rec-mnist-500-std-td"].fields
    assert (auth["eps0"], auth["delta"], auth["radius"], auth["n_hidden"], auth["init"]) == (0.008, 0.2, 1.0, 500,
                                                                                           "std")
    auth = presets.PRESETS["cls-kmnist-100-lecun-bu"].fields
    assert (auth["eps0"], auth["delta"], auth["radius"], auth["task"]) == (0.0005, 0.4, 0.1, "classification")
    assert sum(p.group == presets.AUTHORS for p in presets.PRESETS.values()) == 32
    story = presets.PRESETS[presets.STORY]
    assert story.compare and story.fields["dataset"] == "mnist" and story.fields["n_hidden"] == 100
    f = story.fields
    assert (f["init"], f["kh_mode"], f["eps0"], f["delta"], f["radius"]) == ("std", "td", 0.04, 0.4, 1.0)
    assert f["probe_every"] > 0                                   # Fig. 2 has data
    fig3 = presets.PRESETS[presets.FIG3].fields
    assert (fig3["init"], fig3["radius"], fig3["kh_mode"], fig3["n_hidden"]) == ("lecun", 0.1, "td", 100)
    assert presets.PRESETS[presets.BARS].fields["dataset"] == "bars"


def test_preset_groups_cover_every_preset_once():
    ids = [pid for group in presets.groups().values() for pid in group.values()]
    assert sorted(ids) == sorted(presets.PRESETS) and len(ids) == len(set(ids))
    assert ids[0] == presets.STORY and list(presets.groups())[0] == presets.CLASSROOM


def test_status_html_carries_the_numbers_and_escapes_messages():
    cfg = RunConfig(kh_mode="td", epochs=30)
    arm = SimpleNamespace(name="A", config=cfg, step=1240, epoch=12.4, eps=0.0312, checksum=77, W=np.zeros(1))
    snap = SimpleNamespace(state="paused", arms=(arm,), samples_per_s=0.0, version=9, message="<b>odd</b>",
                           changes=(_change(5, 0.05, "A", "delta", 0.4, 0.0),), notice="")
    out = views.status_html(snap, busy="loading x.npz…", mosaic_version=8)
    for attr in ("data-state='paused'", "data-step='1240'", "data-version='9'", "data-changes='1'",
                 "data-wsig='77'", "data-mosaic-version='8'", "data-arms='1'"):
        assert attr in out, attr
    assert "&lt;b&gt;odd&lt;/b&gt;" in out and "<b>odd" not in out and "loading x.npz" in out
    assert "data-state='starting'" in views.status_html(None)
    assert "data-state='queued'" in views.status_html(None, "queued")          # over the server's cap


def test_every_config_field_has_exactly_one_control():
    from khrbm.app import controls
    from khrbm.config import FIELD

    assert set(controls.CONTROLS) == set(FIELD)
    assert {c.group for c in controls.CONTROLS.values()} == set(controls.GROUPS)
    for name, c in controls.CONTROLS.items():
        if c.buttons:
            assert set(c.buttons) == set(FIELD[name].choices), name
        if c.group in ("kh", "rbm", "diag"):
            assert FIELD[name].live or name == "epochs", name      # the live sections hold live settings


def test_bars_line_counts_the_units_that_own_one_bar():
    from khrbm.core.metrics import bar_masks

    masks = bar_masks(28)
    W = np.stack([masks[0], masks[30], masks[0] + masks[40], np.zeros(784)], axis=1)
    arm = SimpleNamespace(name="A", config=RunConfig(dataset="bars", kh_mode="bu"), W=W, n_pixels=784)
    line = views.bars_line(SimpleNamespace(arms=(arm,)))
    assert "data-shares='0.500'" in line and "50%" in line and "2 of 4 units" in line and "2 of the 56 bars" in line
    mnist = SimpleNamespace(name="A", config=RunConfig(), W=W, n_pixels=784)
    assert views.bars_line(SimpleNamespace(arms=(mnist,))) == ""


def test_the_now_point_continues_the_right_axis_curve():
    pytest.importorskip("bokeh")
    view = views.CurvesView("t", "step", "r", [dict(key="eps", label="ε", color="#666", axis="right")],
                            ylabel_right="ε", now_point="#666")
    view.update({"eps": (np.array([0.0, 60.0]), np.array([0.04, 0.039]))}, now=(211, 0.0385))
    assert view.now.data == {"x": [60.0, 211.0], "y": [0.039, 0.0385], "size": [0, 7]}
