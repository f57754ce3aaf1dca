"""Lessons: parsing names the bad event and field; the Trainer applies each event at exactly its step as a logged
live change (a lesson run equals the same changes made by hand, bit for bit); pause and captions; the headless
replay (`khrbm train --lesson`) gives the Trainer's result; every shipped lesson runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from khrbm.config import ConfigError, RunConfig
from khrbm.data import load_dataset
from khrbm.train.lesson import Lesson, LessonError, LessonPlayer, load_lesson, read_lesson_file, shipped_lessons

DEADLINE = 120.0
SMALL = dict(dataset="bars", n_hidden=16, train_size=600, val_size=200, eval_size=100, epochs=4, batch_size=50,
             radius=1.0, kh_mode="td", eps0=0.04, delta=0.4)          # 12 minibatches per epoch


@pytest.fixture(scope="module")
def bars():
    return load_dataset("bars")


def khrbm(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "khrbm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ})


# --- parsing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("events,fragment", [
    ([{"at": {"epoch": 1}, "set": {"delta": -1}}],
     "events[0] (at epoch 1): set.delta: must be a number in [0.0, 10.0]"),
    ([{"at": {"epoch": 1}, "caption": "ok"}, {"at": {"step": 3}, "set": {"n_hidden": 50}}],
     "events[1] (at step 3): set.n_hidden: not a live setting"),
    ([{"at": {"step": 3}, "set": {"delt": 0}}], "events[0] (at step 3): set.delt: unknown field"),
    ([{"at": {"step": 2.5}, "caption": "x"}], "events[0]: at.step must be an integer >= 0, got 2.5"),
    ([{"at": {"epoch": -1}, "caption": "x"}], "events[0]: at.epoch must be a number >= 0"),
    ([{"at": {"minute": 1}, "caption": "x"}], "events[0]: 'at' must be"),
    ([{"caption": "x"}], "events[0]: 'at' must be"),
    ([{"at": {"step": 1}, "caption": "x", "paus": True}], "events[0]: unknown key 'paus'"),
    ([{"at": {"step": 1}, "set": {"kh_mode": "sideways"}}],
     "events[0] (at step 1): set.kh_mode: must be one of off, td, bu"),
    ([{"at": {"step": 1}, "caption": 3}], "events[0] (at step 1): caption must be text"),
    ([{"at": {"step": 1}, "pause": "yes"}], "events[0] (at step 1): pause must be true or false"),
    ([{"at": {"step": 1}, "arm": "C", "caption": "x"}], "events[0] (at step 1): arm must be one of both, A, B"),
    ([{"at": {"step": 1}}], "events[0] (at step 1): does nothing"),
    ([], "'events' must be a non-empty list"),
])
def test_a_malformed_lesson_names_the_event_and_the_field(events, fragment):
    with pytest.raises(LessonError) as err:
        Lesson.from_dict({"events": events}, "my.json")
    message = str(err.value)
    assert message.startswith("my.json: ") and fragment in message and "\n" not in message


def test_a_lesson_file_reads_as_json_or_yaml_and_bad_json_is_one_line(tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "l.yaml").write_text("events:\n  - at: {epoch: 1}\n    set: {delta: 0}\n    caption: Δ to 0\n")
    (tmp_path / "l.json").write_text(json.dumps({"events": [{"at": {"epoch": 1}, "set": {"delta": 0},
                                                             "caption": "Δ to 0"}]}))
    assert read_lesson_file(tmp_path / "l.yaml") == read_lesson_file(tmp_path / "l.json")
    (tmp_path / "bad.json").write_text('{"events": [')
    with pytest.raises(LessonError, match=r"bad.json: not valid JSON .* line 1"):
        read_lesson_file(tmp_path / "bad.json")
    with pytest.raises(LessonError, match="not a shipped lesson .*story"):
        load_lesson("no-such-lesson")


def test_the_lesson_round_trips_through_json():
    lesson = load_lesson("story")
    again = Lesson.from_json(lesson.to_json(), "again")
    assert again == lesson and again.setup() == lesson.setup()


def test_epochs_resolve_to_the_first_minibatch_at_or_after_them_and_the_end_is_checked():
    lesson = Lesson.from_dict([{"at": {"epoch": 0.5}, "caption": "a"}, {"at": {"step": 7}, "caption": "b"},
                               {"at": {"epoch": 0.1}, "caption": "c"}, {"at": {"epoch": 2}, "set": {"lr": 0.05}}])
    marks = lesson.resolve([RunConfig(epochs=3)], 10)
    assert [(m.index, m.step) for m in marks] == [(2, 1), (0, 5), (1, 7), (3, 20)]
    with pytest.raises(LessonError, match=r"events\[3\] \(at epoch 2\) comes at or after the end of training"):
        lesson.resolve([RunConfig(epochs=2)], 10)


def test_replayed_settings_are_checked_per_arm():
    lesson = Lesson.from_dict([{"at": {"step": 5}, "arm": "B", "set": {"kh_mode": "bu"}},
                               {"at": {"step": 6}, "set": {"ell": 30}}], "l.json")
    a = RunConfig(n_hidden=50, kh_mode="bu")

    def check(cfg):   # what the Trainer passes: ℓ below the units of the mode
        if cfg.kh_mode == "bu" and cfg.ell >= cfg.n_hidden:
            raise ConfigError("ell", "too large")
    with pytest.raises(LessonError, match=r"l.json: events\[1\] \(at step 6\): set.ell: too large"):
        lesson.resolve([a.replace(kh_mode="td"), a.replace(kh_mode="off", n_hidden=20)], 10, check)


def test_the_player_hands_out_each_mark_once_and_skips_marks_before_its_start():
    lesson = Lesson.from_dict([{"at": {"step": 0}, "caption": "zero"}, {"at": {"step": 4}, "caption": "four"},
                               {"at": {"step": 4}, "set": {"lr": 0.2}}, {"at": {"step": 9}, "caption": "nine"}])
    marks = lesson.resolve([RunConfig(epochs=1)], 10)
    player = LessonPlayer(marks, start_step=3)
    assert player.caption == "zero" and player.next_step == 4
    assert player.due(3) == [] and [m.index for m in player.due(4)] == [1, 2] and player.due(4) == []
    assert player.caption == "four" and player.next_step == 9
    assert [m.index for m in player.due(20)] == [3] and player.next_step is None


# --- the Trainer --------------------------------------------------------------------------------------------------
STORY = [{"at": {"epoch": 0}, "caption": "intro", "pause": True},
         {"at": {"step": 13}, "set": {"delta": 0.0}, "caption": "delta to 0"},
         {"at": {"epoch": 2}, "set": {"kh_mode": "bu", "eps0": 0.02}, "pause": True, "caption": "td to bu"}]


def test_a_lesson_run_equals_the_same_changes_made_by_hand_bit_for_bit(trainers, bars):
    cfg = RunConfig(**SMALL)
    lesson = Lesson.from_dict(STORY)
    t = trainers(cfg, dataset=bars, lesson=lesson)
    s = t.sync(DEADLINE)
    assert s.caption == "intro" and s.state == "idle" and "press Start" in s.message
    assert [(m.step, m.caption) for m in s.lesson] == [(0, "intro"), (13, "delta to 0"), (24, "td to bu")]
    t.start()
    s = t.wait_for(lambda s: s.state == "paused", DEADLINE)
    assert s.step == 24 and s.caption == "td to bu" and s.arms[0].config.kh_mode == "bu"
    assert t.configs[0].kh_mode == "bu" and t.configs[0].eps0 == 0.02     # what the app's widgets read
    t.start()
    lesson_run = t.wait_for(lambda s: s.state == "finished", DEADLINE)

    hand = trainers(cfg, dataset=bars)
    hand.sync(DEADLINE)
    hand.step(13)
    hand.sync(DEADLINE)
    hand.update(delta=0.0)
    hand.step(11)
    hand.sync(DEADLINE)
    hand.update(kh_mode="bu", eps0=0.02)
    hand.step(24)
    by_hand = hand.sync(DEADLINE)
    assert lesson_run.step == by_hand.step == 48
    assert lesson_run.changes == by_hand.changes
    assert [(c.step, c.field, c.old, c.new) for c in lesson_run.changes] == [
        (13, "delta", 0.4, 0.0), (24, "kh_mode", "td", "bu"), (24, "eps0", 0.04, 0.02)]
    a, b = lesson_run.arms[0], by_hand.arms[0]
    assert np.array_equal(a.W, b.W) and np.array_equal(a.a, b.a) and np.array_equal(a.b, b.b)
    assert np.array_equal(a.mode_counts["td"][0], b.mode_counts["td"][0])


def test_lesson_events_go_to_their_arm_and_a_reset_replays_the_lesson(trainers, bars):
    cfg = RunConfig(**SMALL)
    lesson = Lesson.from_dict([{"at": {"step": 5}, "arm": "A", "set": {"delta": 0.0}, "caption": "A only"},
                               {"at": {"step": 8}, "set": {"lr": 0.05}}])
    t = trainers(cfg, cfg.replace(kh_mode="off"), dataset=bars, lesson=lesson)
    t.sync(DEADLINE)
    t.step(10)
    s = t.sync(DEADLINE)
    assert [(c.step, c.arm, c.field) for c in s.changes] == [(5, "A", "delta"), (8, "A", "lr"), (8, "B", "lr")]
    assert (s.arm("A").config.delta, s.arm("B").config.delta) == (0.0, 0.4)
    t.reset()
    s = t.sync(DEADLINE)
    assert s.step == 0 and s.changes == () and s.caption == "" and len(s.lesson) == 2
    t.step(6)
    s = t.sync(DEADLINE)
    assert [(c.step, c.arm, c.field) for c in s.changes] == [(5, "A", "delta")] and s.caption == "A only"


def test_a_lesson_that_does_not_fit_is_refused_with_one_line(trainers, bars):
    t = trainers(RunConfig(**SMALL), dataset=bars)
    t.sync(DEADLINE)
    with pytest.raises(LessonError, match=r"events\[0\] \(at epoch 9\) comes at or after the end"):
        t.set_lesson(Lesson.from_dict([{"at": {"epoch": 9}, "caption": "late"}]))
    with pytest.raises(LessonError, match=r"set.ell: must be below the 16 postsynaptic units of mode bu"):
        t.set_lesson(Lesson.from_dict([{"at": {"step": 3}, "set": {"kh_mode": "bu", "ell": 20}}]))
    assert t.lesson is None and t.snapshot.lesson == ()
    t.step(3)
    assert t.sync(DEADLINE).changes == ()


def test_the_headless_replay_gives_the_trainers_result(tmp_path, trainers, bars):
    cfg = RunConfig(**{**SMALL, "batch_size": 100, "train_size": 1000, "val_size": 300})   # 10 minibatches/epoch
    lesson = Lesson.from_dict([{**e, "pause": False} for e in STORY[1:]])     # headless replays go on anyway
    path = tmp_path / "lesson.json"
    path.write_text(lesson.to_json())
    (tmp_path / "config.json").write_text(cfg.to_json())
    proc = khrbm("train", "--config", tmp_path / "config.json", "--lesson", path, "--no-progress",
                 "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "lesson · epoch 1.30: delta to 0" in proc.stderr and "lesson · epoch 2.00: td to bu" in proc.stderr
    t = trainers(cfg, dataset=bars, lesson=lesson)
    t.sync(DEADLINE)
    t.start()
    s = t.wait_for(lambda s: s.state == "finished", DEADLINE)
    with np.load(tmp_path / "run" / "checkpoint.npz", allow_pickle=False) as ck:
        assert int(ck["step"]) == s.step == 40
        assert np.array_equal(ck["W"], s.arms[0].W) and np.array_equal(ck["b"], s.arms[0].b)
        assert RunConfig.from_json(str(ck["config_json"])) == s.arms[0].config
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [(c["step"], c["field"], c["old"], c["new"]) for c in manifest["changes"]] == [
        (c.step, c.field, c.old, c.new) for c in s.changes]


# --- the shipped lessons -----------------------------------------------------------------------------------------
def test_the_shipped_lessons_are_package_data_and_valid():
    assert set(shipped_lessons()) == {"story", "bars", "td_to_bu"}
    for name in shipped_lessons():
        lesson = load_lesson(name)
        a, b = lesson.setup()
        assert lesson.name and lesson.description and lesson.compare and b.kh_mode == "off"
        assert lesson.events[0].pause and lesson.events[0].caption      # opens on a caption, waits for Start
        lesson.resolve([a, b], 600)
    story = load_lesson("story")
    sets = [(e.arm, e.set) for e in story.events if e.set]
    assert sets == [("A", {"delta": 0.0}), ("A", {"kh_mode": "bu", "eps0": 0.02, "delta": 0.2})]
    assert story.setup()[0].init == "std" and story.setup()[0].kh_mode == "td"


def _check_replay(tmp_path, name, *flags):
    """`khrbm train --lesson NAME` runs; the registry's change log holds the lesson's arm-A settings at their steps."""
    out = tmp_path / name
    proc = khrbm("train", "--lesson", name, *flags, "--probe-every", 0, "--no-progress", "--out", out)
    assert proc.returncode == 0, proc.stderr
    show = khrbm("runs", "show", json.loads((out / "run.json").read_text())["arms"][0]["uid"], "--json")
    assert show.returncode == 0, show.stderr
    record = json.loads(show.stdout)
    assert record["state"] == "finished" and record["lesson"]["name"] == load_lesson(name).name
    bpe = -(-record["config"]["train_size"] // record["config"]["batch_size"])
    expected, config = [], RunConfig.from_dict(record["config"])
    for m in load_lesson(name).resolve([config], bpe):
        if m.arm in ("both", "A"):
            for field, value in m.set.items():
                if getattr(config, field) != value:
                    expected.append((m.step, field, getattr(config, field), value))
            config = config.replace(**m.set)
    assert [(c["step"], c["field"], c["old"], c["new"]) for c in record["changes"]] == expected
    return record


def test_the_bars_lesson_runs_headless(tmp_path):
    _check_replay(tmp_path, "bars", "--train-size", 1000, "--val-size", 300)


def test_the_story_and_td_to_bu_lessons_run_headless_on_mnist(tmp_path, mnist_dir):
    story = _check_replay(tmp_path, "story", "--train-size", 500, "--val-size", 300, "--eval-size", 300)
    assert [c["field"] for c in story["changes"]] == ["delta", "kh_mode", "eps0", "delta"]
    _check_replay(tmp_path, "td_to_bu", "--train-size", 500, "--val-size", 300, "--eval-size", 300)
