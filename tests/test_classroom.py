"""The classroom server's parts without a browser: the training places and their queue (capacity.Slots), share
codes, forking a run through its checkpoint (follow.checkpoint_bytes / follow.restore) with real Trainers, and
the images computed once for every tab (feed.Memo). What a person sees of them is in tests/test_classroom_browser.py."""
import time

import numpy as np
import pytest

from khrbm.app import capacity, feed, follow
from khrbm.config import RunConfig
from khrbm.data import load_dataset

DEADLINE = 60.0
SMALL = dict(dataset="bars", n_hidden=16, train_size=600, val_size=200, eval_size=100, epochs=50, batch_size=50,
             kh_mode="bu", eps0=0.05, sampler="pcd")


def test_places_go_first_come_first_served():
    slots = capacity.Slots(2)
    assert slots.request("a") and slots.request("b")
    assert not slots.request("c") and not slots.request("d")
    assert (slots.position("c"), slots.position("d"), slots.position("a")) == (1, 2, 0)
    assert not slots.request("c") and slots.position("c") == 1          # asking again keeps the spot
    slots.release("d")                                                   # a queued tab closed
    assert slots.counts() == (2, 1)
    slots.release("a")                                                   # a place frees: the next one gets it
    assert slots.holds("c") and slots.position("c") == 0 and slots.counts() == (2, 0)
    assert not slots.request("e") and slots.position("e") == 1
    slots.resize(3)
    assert slots.holds("e")


def test_bad_limits_in_the_environment_fall_back(monkeypatch):
    monkeypatch.setenv(capacity.MAX_TRAINERS_ENV, "lots")
    assert capacity._from_env(capacity.MAX_TRAINERS_ENV, 3, int, 1) == 3
    monkeypatch.setenv(capacity.MAX_TRAINERS_ENV, "0")
    assert capacity._from_env(capacity.MAX_TRAINERS_ENV, 3, int, 1) == 3
    monkeypatch.setenv(capacity.MAX_TRAINERS_ENV, " 5 ")
    assert capacity._from_env(capacity.MAX_TRAINERS_ENV, 3, int, 1) == 5


def test_share_codes_are_short_unambiguous_and_unlisted_when_ended():
    item = follow.share("teacher-session", trainer=None, preset="bars", label="Bars")
    try:
        assert len(item.code) == follow.CODE_LENGTH and set(item.code) <= set(follow.CODE_ALPHABET)
        assert not set("01OI") & set(follow.CODE_ALPHABET)
        assert follow.lookup(f" {item.code.lower()} ") is item                 # typed in lower case, with spaces
        assert follow.normalize("AB") == "" and follow.lookup("<script>") is None
        item.join("s1"), item.join("s2"), item.join("s1")
        assert item.followers == 2
    finally:
        follow.end(item)
    assert item.ended and follow.lookup(item.code) is None and item not in follow.listing()


def _step_to(trainer, step):
    trainer.step(step - trainer.snapshot.step)
    return trainer.sync(DEADLINE)


def test_a_copy_starts_at_the_teachers_step_with_its_weights_then_trains_on_its_own(trainers):
    """A forked A/B run (PCD chains, the change log) continues exactly as the teacher's would: both are pure
    functions of config, seed and step; and each trains only when told."""
    bars = load_dataset("bars")
    cfg = RunConfig(**SMALL)
    teacher = trainers(cfg, cfg.replace(kh_mode="off"), dataset=bars)
    _step_to(teacher, 5)
    teacher.update(arm="A", delta=0.0)
    snap = _step_to(teacher, 7)
    raw = follow.checkpoint_bytes(teacher)
    copy = follow.restore(raw, tuple(a.config for a in snap.arms), bars, name="copy-of-TEST.npz")
    try:
        mine = copy.sync(DEADLINE)
        assert mine.step == 7 and mine.compare
        assert [a.checksum for a in mine.arms] == [a.checksum for a in snap.arms]
        assert [c.field for c in mine.changes] == ["delta"] and mine.arms[0].config.delta == 0.0
        assert "copy-of-TEST.npz" in mine.message

        after_teacher = _step_to(teacher, 10)
        after_copy = _step_to(copy, 10)
        for a, b in zip(after_teacher.arms, after_copy.arms):
            np.testing.assert_array_equal(a.W, b.W)                         # the same run, bit for bit

        _step_to(copy, 12)
        assert teacher.snapshot.step == 10 and copy.snapshot.step == 12       # independent trainers
        assert copy.thread is not teacher.thread
    finally:
        copy.close()


def test_a_copy_of_an_ended_run_is_its_last_state(trainers):
    bars = load_dataset("bars")
    cfg = RunConfig(**{**SMALL, "sampler": "cd"})
    teacher = trainers(cfg, dataset=bars)
    snap = _step_to(teacher, 4)
    teacher.close()                                                          # the teacher's tab closed
    assert not teacher.thread.is_alive()
    copy = follow.restore(follow.checkpoint_bytes(teacher), (cfg,), bars)
    try:
        assert copy.sync(DEADLINE).step == 4 and copy.snapshot.arms[0].checksum == snap.arms[0].checksum
    finally:
        copy.close()


def test_a_release_that_kept_nothing_brings_back_a_fresh_run():
    bars = load_dataset("bars")
    cfg = RunConfig(**{**SMALL, "sampler": "cd"})
    fresh = follow.restore(None, (cfg,), bars)
    try:
        assert fresh.sync(DEADLINE).step == 0 and fresh.configs == (cfg,)
    finally:
        fresh.close()


def test_tabs_drawing_the_same_snapshot_compute_it_once():
    memo, computed = feed.Memo(size=2), []

    def compute(key):
        return lambda: computed.append(key) or f"image of {key}"
    assert [memo.get(k, compute(k)) for k in "abab"] == ["image of a", "image of b"] * 2
    assert computed == ["a", "b"]
    memo.get("c", compute("c"))                    # the least recently used one ("a") goes
    assert memo.get("b", compute("b")) == "image of b" and memo.get("a", compute("a")) == "image of a"
    assert computed == ["a", "b", "c", "a"]


def test_the_pace_keeps_all_followers_redraws_within_the_budget():
    pace = follow.Pace(budget=0.15)
    assert pace.interval(followers=30) == follow.FOLLOW_REDRAW            # nothing measured yet
    pace.record(0.010)                                                   # a follower's redraw: 10 ms of the loop
    assert pace.interval(followers=5) == follow.FOLLOW_REDRAW            # 5 × 10 ms a second: within 15 %
    assert pace.interval(followers=30) == pytest.approx(2.0)             # 30 × 10 ms every 2 s: 15 % of a core
    assert pace.scale() >= 1.0
    pace.record(5.0)                             # a tab's first redraw, building its figures: not 16 s frames
    assert pace.interval(followers=30) == pytest.approx(30 * (0.8 * 0.010 + 0.2 * 0.030) / 0.15)
    for _ in range(60):                                                  # redraws got cheaper: back to 1 s
        pace.record(0.002)
    assert pace.interval(followers=30) == follow.FOLLOW_REDRAW


def test_followers_draw_one_frame_renewed_at_once_when_the_teacher_acts(trainers):
    """Every follower of a run gets the same snapshot object; a newer one of the same state and settings waits
    for the pace's interval, while the teacher's change of a setting (or of the run's state) shows at once."""
    bars = load_dataset("bars")
    teacher = trainers(RunConfig(**{**SMALL, "sampler": "cd"}), dataset=bars)
    _step_to(teacher, 3)
    item = follow.share("teacher-session", teacher, "bars", "Bars")
    slow, fast = follow.Pace(), follow.Pace()
    slow.record(1e4)                                   # a redraw that cost hours: a frame would last for ever
    try:
        item.join("s1"), item.join("s2")
        frame = item.frame(slow)
        assert frame is teacher.snapshot and item.frame(slow) is frame
        newer = _step_to(teacher, 5)
        assert newer is not frame and newer.state == frame.state and item.frame(slow) is frame
        teacher.update(arm="A", delta=0.0)
        changed = _step_to(teacher, 6)
        assert [c.field for c in changed.changes] == ["delta"] and item.frame(slow) is changed
        _step_to(teacher, 8)
        time.sleep(follow.FOLLOW_REDRAW)                # a free server: a new frame every FOLLOW_REDRAW s
        assert item.frame(fast) is teacher.snapshot and item.frame(fast).step == 8
    finally:
        follow.end(item)


def test_two_followers_draw_the_frame_from_one_computation_with_the_teachers_markers(trainers):
    """Two followers' dashboards drawing one frame hold the same mosaic image and marker arrays (computed once,
    not per tab), and the markers show where the teacher changed a setting."""
    from khrbm.app.dashboard import Dashboard

    bars = load_dataset("bars")
    cfg = RunConfig(**{**SMALL, "sampler": "cd", "kh_mode": "td"})
    teacher = trainers(cfg, cfg.replace(kh_mode="off"), dataset=bars)
    _step_to(teacher, 4)
    teacher.update(arm="A", delta=0.0)
    frame = _step_to(teacher, 9)
    change_step = frame.changes[0].step
    boards = [Dashboard(), Dashboard()]
    for board in boards:
        board.rebuild(frame)
        board.update(frame, heavy=True)
    one, two = boards
    for name in ("mosaic0", "mosaic1"):
        assert one.v[name].image.data["image"][0] is two.v[name].image.data["image"][0]
    for name in ("ratio", "cos", "mse"):
        marks = [board.v[name].markers.data["x"] for board in boards]
        assert marks[0] is marks[1]
    assert list(one.v["ratio"].markers.data["x"]) == [float(change_step)]
    assert list(one.v["wins"].src.data["image"][0].shape) == list(frame.arms[0].image_shape)
