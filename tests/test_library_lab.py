"""The lab's My setups, Recent runs and lessons in-process (a Lab outside a server, as in a notebook; its
callbacks called directly): what the browser tests cannot see cheaply — arm B exactly as saved, Reset during
a lesson, a `khrbm train` run continued in the app, and a registry that cannot be written."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytest.importorskip("panel")

from khrbm.app import layout  # noqa: E402
from khrbm.app.lab import Lab  # noqa: E402
from khrbm.app.urlstate import plain_twin, preset_setup  # noqa: E402
from khrbm.store import Registry  # noqa: E402
from khrbm.train.lesson import Lesson  # noqa: E402

BARS = preset_setup("bars").config.replace(n_hidden=12, epochs=2, eval_size=100)


@pytest.fixture
def registry_file(tmp_path, monkeypatch):
    path = tmp_path / "registry.sqlite"
    monkeypatch.setenv("KHRBM_REGISTRY", str(path))
    return path


@pytest.fixture
def lab():
    made = Lab()
    layout.notebook(made)                       # builds the sidebar's card (as a page does)
    yield made
    trainer = made.trainer
    made.close()
    if trainer is not None:
        trainer.close(60)


def settle(lab, predicate, timeout=120.0):
    """Tick the lab (as its periodic callback does) until ``predicate()`` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lab.tick()
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached in {timeout} s; error shown: {lab.errorbox.object!r}")


def test_a_recalled_setup_gives_the_trainer_both_saved_arms(registry_file, lab):
    a, b = BARS.replace(delta=0.0), plain_twin(BARS).replace(lr=0.05)
    with Registry() as reg:
        reg.save_setup("two arms", a, b, "B learns slower")
    lab.onload(query="", preset="bars")
    lab.library.setups.refresh()
    lab.library.setups.list.value = "two arms"
    lab.library.setups._on_recall(None)
    assert not lab.errorbox.visible, lab.errorbox.object
    assert lab.trainer.configs == (a, b)
    assert lab.controls.widgets["n_hidden"].value == 12 and lab.controls.widgets["delta"].value == 0.0
    assert "B.lr=0.05" in lab.link_query() and "Recalled setup “two arms”: B learns slower" in lab._loaded_msg
    lab._on_field("eps0", 0.02)                 # not started: both arms take it, B keeps its own η
    assert lab.trainer.configs == (a.replace(eps0=0.02), b.replace(eps0=0.02))


def test_reset_during_a_lesson_replays_it_from_its_setup(registry_file, lab):
    lesson = Lesson.from_dict({"config": BARS.to_dict(), "compare": True,
                               "events": [{"at": {"step": 0}, "caption": "start", "pause": True},
                                          {"at": {"step": 2}, "set": {"delta": 0.0}, "arm": "A", "caption": "Δ 0"}]})
    with Registry() as reg:
        reg.save_lesson("reset me", lesson)
    lab.onload(query="", preset="bars")
    lab.library.lessons.refresh()
    lab.library.lessons.picker.value = "saved:reset me"
    lab.library.lessons._on_play(None)
    assert lab.trainer.configs == lesson.setup() and lab.lesson == lesson
    settle(lab, lambda: lab.trainer.snapshot.state == "idle")
    lab.trainer.step(4)
    lab.trainer.sync(60)
    assert lab.trainer.configs[0].delta == 0.0 and lab.trainer.configs[1].delta == BARS.delta
    lab._on_reset(None)
    settle(lab, lambda: lab.trainer.snapshot.state == "idle")
    assert lab.trainer.configs == lesson.setup() and lab.trainer.lesson == lesson    # back to the lesson's start
    assert lab.trainer.snapshot.caption == "start" and lab.library.band.visible
    lab._on_preset(type("Event", (), {"new": "bars", "old": "bars"})())            # another setup: no lesson
    assert lab.lesson is None and lab.trainer.lesson is None


def test_a_khrbm_train_run_is_shown_and_continued_in_the_app(registry_file, lab, tmp_path):
    out = tmp_path / "cli-run"
    subprocess.run([sys.executable, "-m", "khrbm", "train", "--dataset", "bars", "--n-hidden", "12", "--epochs", "1",
                    "--kh-mode", "bu", "--eval-size", "100", "--no-progress", "--out", str(out)], check=True,
                   capture_output=True)
    lab.onload(query="", preset="bars")
    runs = lab.library.runs
    runs.refresh()
    record = runs.records[runs.list.value]
    assert record.source == "train" and record.can_continue and record.steps == 100
    runs._on_show(None)
    assert runs.viewer.visible and "data-weights='1'" in runs.past_head.object
    runs._on_continue(None)
    settle(lab, lambda: lab.trainer.snapshot.step == 100 and not lab._busy)
    assert not lab.trainer.compare and lab.trainer.configs[0].n_hidden == 12 and not lab.errorbox.visible


def test_a_registry_that_cannot_be_written_is_said_once_and_training_goes_on(tmp_path, monkeypatch, lab):
    bad = tmp_path / "registry.sqlite"
    bad.write_bytes(b"not a database" * 1000)
    monkeypatch.setenv("KHRBM_REGISTRY", str(bad))
    lab.onload(query="", preset="bars")
    for _ in range(2):                           # two trainers, each with its own recorder
        settle(lab, lambda: lab.trainer.snapshot.state == "idle")
        lab.trainer.step(5)
        lab.trainer.sync(60)
        settle(lab, lambda: lab.banner.visible, timeout=30)
        assert lab.trainer.snapshot.step == 5
        lab._on_reset(None)
    assert lab.banner.object.count("Runs are not recorded in the registry") == 1
    assert "not a readable khrbm registry" in lab.banner.object
    lab.library.refresh()                       # opening the card: each list says why it is empty, no error box
    assert not lab.errorbox.visible
    assert "Not listed: registry" in lab.library.setups.details.object
    assert "Not listed: registry" in lab.library.runs.details.object
