"""The Panel-free helpers behind My setups, Recent runs and lessons in the app (khrbm/app/setups.py, lessons.py,
urlstate's arm B, presets.nearest): a saved setup opens exactly as saved, a link carries arm B, and what the
caption band and the timeline show follows the trainer's own timing (a real Trainer on the bars data)."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from khrbm.app import lessons, presets, setups
from khrbm.app.urlstate import Setup, encode, parse, plain_twin, preset_setup
from khrbm.config import RunConfig
from khrbm.store import Registry
from khrbm.train.lesson import Lesson, LessonMark

BARS = preset_setup("bars")


def test_importing_the_helpers_leaves_panel_out():
    code = ("import sys, khrbm.app.lessons, khrbm.app.setups, khrbm.app.urlstate; "
            "assert 'panel' not in sys.modules and 'bokeh' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- arm B in a setup and in a link ----------------------------------------------------------------------
def test_a_link_carries_arm_b_where_it_is_not_the_plain_twin():
    a = BARS.config.replace(delta=0.0)
    b = plain_twin(BARS.config)                          # B kept Δ = 0.1 (a lesson's event for arm A only)
    setup = Setup.of("bars", a, b)
    assert setup.config_b == b and setup.arms() == (a, b)
    query = encode(setup)
    assert query == "preset=bars&delta=0.0&B.delta=0.1"
    assert parse(query, "story") == (setup, [])
    twin = Setup.of("bars", a, plain_twin(a))              # the plain twin is not spelled out
    assert twin.config_b is None and twin.arms() == (a, plain_twin(a)) and "B." not in encode(twin)
    assert Setup.of("bars", a, b, compare=False).arms() == (a, None)


@pytest.mark.parametrize("query,needle", [
    ("preset=bars&B.n_hidden=20", "arm B shares every setting but the live ones"),
    ("preset=bars&B.delta=abc", "arm B: config field 'delta'"),
    ("preset=bars&compare=false&B.delta=0.3", "while Compare is off"),
    ("preset=bars&B.nonsense=1", "unknown setting 'B.nonsense'"),
])
def test_a_bad_arm_b_part_of_a_link_is_named_and_left_out(query, needle):
    setup, problems = parse(query, "story")
    assert len(problems) == 1 and needle in problems[0], problems
    assert setup.config_b is None and setup.config == BARS.config


def test_a_change_goes_to_both_arms_but_the_kh_mode_to_a_only():
    s = Setup.of("bars", BARS.config, plain_twin(BARS.config).replace(delta=0.3))
    eps = s.changed("eps0", 0.02)
    assert eps.arms() == (BARS.config.replace(eps0=0.02), plain_twin(BARS.config).replace(delta=0.3, eps0=0.02))
    mode = s.changed("kh_mode", "td")
    assert mode.arms()[0].kh_mode == "td" and mode.arms()[1].kh_mode == "off" and mode.arms()[1].delta == 0.3
    assert Setup.of("bars", BARS.config, None, True).changed("delta", 0.3).config_b is None


def test_the_nearest_preset_is_the_one_that_differs_least():
    for p in presets.PRESETS.values():
        cfg = preset_setup(p.id).config
        near = presets.PRESETS[presets.nearest(cfg, p.compare)]
        assert all(getattr(cfg, k) == v for k, v in near.fields.items()) and near.compare == p.compare
    assert presets.nearest(BARS.config.replace(eps0=0.3, n_hidden=20), False) == "bars"
    assert presets.nearest(preset_setup("story").config.replace(kh_mode="bu"), True) == "story"


# --- My setups and Recent runs ---------------------------------------------------------------------------
def test_a_saved_setup_opens_with_exactly_its_arms(tmp_path):
    a = BARS.config.replace(n_hidden=20, delta=0.0)
    b = plain_twin(BARS.config.replace(n_hidden=20))
    with Registry(tmp_path / "r.sqlite") as reg:
        saved = reg.save_setup("mine", a, b, "for class 3")
        single = reg.save_setup("single", a, None)
    opened = setups.setup_of(saved)
    assert opened.preset == "bars" and opened.arms() == (a, b)
    assert setups.setup_of(single).arms() == (a, None)
    assert setups.setup_label(saved) == "mine · A/B" and setups.setup_label(single) == "single · single"
    details = setups.setup_details(saved, now=saved.updated + 125)
    assert "<i>for class 3</i>" in details and "2 min ago" in details and "<b>B</b> bars · M=20" in details


@pytest.mark.parametrize("seconds,words", [(5, "just now"), (61, "1 min ago"), (3 * 3600, "3 h ago"),
                                           (3 * 86400, "3 days ago")])
def test_ago(seconds, words):
    assert setups.ago(seconds) == words


def test_a_recent_run_says_whether_it_can_be_continued(tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    checkpoint.write_bytes(b"stand-in: only its existence is read here")
    with Registry(tmp_path / "r.sqlite") as reg:
        reg.put_run("u1", BARS.config, source="train", state="finished", epoch=10.0, steps=1000,
                    checkpoint=checkpoint, arm="")
        record = reg.run(1)
    assert setups.run_label(record, now=record.started + 90) == \
        "#1 · train · 1 min ago · bars M=56 KH_BU · finished @ 10.0"
    assert "checkpoint: " + str(checkpoint) in setups.run_details(record)
    checkpoint.unlink()
    assert "its checkpoint is gone" in setups.run_details(record)


def test_the_registry_helper_turns_its_failures_into_one_line(tmp_path, monkeypatch):
    from khrbm.app.errors import UserError
    bad = tmp_path / "not-a-registry.sqlite"
    bad.write_bytes(b"this is not an SQLite file" * 100)
    monkeypatch.setenv("KHRBM_REGISTRY", str(bad))
    with pytest.raises(UserError, match="not a readable khrbm registry"):
        with setups.registry():
            pass


# --- lessons --------------------------------------------------------------------------------------------
def test_the_catalogue_lists_the_shipped_lessons_then_the_saved_ones(tmp_path):
    lesson = Lesson.from_dict([{"at": {"step": 3}, "caption": "hello"}])
    with Registry(tmp_path / "r.sqlite") as reg:
        reg.save_lesson("mine", lesson)
        saved = reg.lessons()
    choices = lessons.catalogue(saved)
    assert [c.key for c in choices] == ["shipped:bars", "shipped:story", "shipped:td_to_bu", "saved:mine"]
    assert choices[-1].label == "mine (saved)" and choices[-1].lesson == lesson
    assert choices[1].label.startswith("Init robustness")


def test_a_lesson_opens_its_own_setup_or_the_current_one():
    story = next(c.lesson for c in lessons.catalogue() if c.key == "shipped:story")
    opened = lessons.lesson_setup(story, BARS)
    a, b = story.setup()
    assert opened.arms() == (a, b) and opened.preset == "story"
    bare = Lesson.from_dict([{"at": {"step": 3}, "caption": "hello"}])
    assert lessons.lesson_setup(bare, BARS) is BARS


def _mark(step, set_=None, arm="both", pause=False, caption=None, per_epoch=100):
    return LessonMark(0, step, step / per_epoch, arm, dict(set_ or {}), caption, pause)


def test_event_labels_are_short():
    assert lessons.event_label(_mark(0, pause=True, caption="x"), 1) == "1 ❚❚"
    assert lessons.event_label(_mark(500, {"delta": 0.0}, arm="A"), 3) == "3 Δ=0 (A)"
    assert lessons.event_label(_mark(800, {"kh_mode": "bu", "eps0": 0.02}, arm="A", pause=True), 4) == \
        "4 ❚❚ KH_BU… (A)"
    assert lessons.event_label(_mark(9, {"ell_band": True}), 2) == "2 ell_band on"
    assert lessons.setting_label("kh_mode", "off") == "KH off" and lessons.setting_label("horizon", None) == "S auto"


def test_the_timeline_shows_the_events_that_came_and_the_next():
    marks = (_mark(0, pause=True, caption="a"), _mark(100, caption="b"), _mark(500, {"delta": 0.0}, arm="A"),
             _mark(500, caption="c"), _mark(800, pause=True, caption="d"))
    x, labels = lessons.timeline(marks, "epoch", 40)
    assert x.tolist() == [0.0, 1.0] and labels == ["1 ❚❚", "2"]
    x, labels = lessons.timeline(marks, "step", 100)
    assert x.tolist() == [0.0, 100.0, 500.0] and labels == ["1 ❚❚", "2", "3 Δ=0 (A) · 4"]
    x, labels = lessons.timeline(marks, "epoch", 900)
    assert x.tolist() == [0.0, 1.0, 5.0, 8.0]
    assert lessons.timeline((), "epoch", 3)[1] == []


def test_the_caption_band_follows_the_trainer(trainers):
    """caption_state on a real trainer's snapshots: an event at step s shows from minibatch s on; a pause
    event holds the run at its step, waiting; the next event's epoch is announced."""
    lesson = Lesson.from_dict([{"at": {"step": 0}, "caption": "first", "pause": True},
                               {"at": {"step": 3}, "caption": "second", "set": {"eps0": 0.05}},
                               {"at": {"step": 5}, "caption": "third", "pause": True}])
    cfg = RunConfig(dataset="bars", n_hidden=8, epochs=1, kh_mode="bu", eval_size=50)
    t = trainers(cfg, plain_twin(cfg), lesson=lesson)
    snap = t.wait_for(lambda s: s.state == "idle", 120)
    assert lessons.caption_state(snap) == lessons.CaptionState("first", 1, 0, 3, True, 0.03)
    t.step(3)
    snap = t.sync(60)
    assert snap.step == 3
    assert lessons.caption_state(snap) == lessons.CaptionState("first", 1, 0, 3, False, 0.03)   # not yet played
    t.step(1)
    snap = t.sync(60)
    assert lessons.caption_state(snap) == lessons.CaptionState("second", 2, 3, 3, False, 0.05)
    assert [(c.step, c.field) for c in snap.changes] == [(3, "eps0"), (3, "eps0")]              # both arms
    t.start()
    snap = t.wait_for(lambda s: s.state == "paused", 60)
    time.sleep(0.3)
    snap = t.snapshot
    assert snap.step == 5 and lessons.caption_state(snap) == lessons.CaptionState("third", 3, 5, 3, True, None)
    assert lessons.caption_state(t.snapshot.__class__(**{**snap.__dict__, "lesson": ()})) is None
    x, labels = lessons.timeline(snap.lesson, "step", snap.step)
    assert np.array_equal(x, [0.0, 3.0, 5.0]) and labels == ["1 ❚❚", "2 ε0=0.05", "3 ❚❚"]
