"""My setups, Recent runs and lessons in a real browser (the server of conftest's ``khrbm_app_server``, which
records into the tests' registry, ``KHRBM_REGISTRY``; this process reads the same file to check what the app
wrote). Screenshots at 1440x900 go to tests/artifacts/.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Tab, no_chromium
from conftest import console_errors as errors

from khrbm.store import Registry
from khrbm.train.lesson import Lesson

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.timeout(300), no_chromium]


def open_library(tab: Tab, which: str):
    """Open the sidebar's "My setups · Recent runs · Lessons" card at the tab ``which``."""
    card = tab.page.locator(".khrbm-library").first
    if tab.page.locator(".khrbm-library-tabs").first.is_hidden():
        card.locator(".card-header").first.click()
        tab.page.locator(".khrbm-library-tabs").first.wait_for(state="visible", timeout=10000)
    tab.page.locator(".khrbm-library-tabs .bk-tab", has_text=which).first.click()


def wait_for(what, predicate, timeout=30.0, every=0.2):
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        value = what()
        if predicate(value):
            return value
        time.sleep(every)
    raise AssertionError(f"still {value!r} after {timeout} s")


def input_value(tab: Tab, field: str) -> str:
    return tab.page.locator(f".khrbm-w-{field} input").first.input_value()


def titles(tab: Tab) -> list[str]:
    """The titles of the figures the browser holds (drawn on canvas, so not in the page's text)."""
    return tab.page.evaluate("""() => {
        const out = [];
        for (const doc of window.Bokeh.documents)
            for (const m of doc.all_models) if (m.type === "Title") out.push(m.text);
        return out; }""")


def caption(tab: Tab, name: str) -> str:
    return tab.page.locator(".khrbm-caption").first.get_attribute(f"data-{name}") or ""


def test_a_saved_setup_survives_a_reload_and_is_renamed_and_deleted(khrbm_app_server, khrbm_browser):
    url, _log = khrbm_app_server
    tab = Tab(khrbm_browser, f"{url}?preset=bars")
    try:
        for field, value in (("n_hidden", 20), ("eps0", 0.03), ("epochs", 3)):    # not started: applied at once
            tab.set_number(field, value)
            tab.page.wait_for_url(lambda u, f=f"{field}={value}": f in u, timeout=30000)
        open_library(tab, "My setups")
        tab.page.locator(".khrbm-setup-name input").first.fill("bars small")
        tab.page.locator(".khrbm-setup-comment input").first.fill("for class 3")
        tab.click(".khrbm-setup-save")
        tab.wait_text(".khrbm-setup-said", "Saved “bars small” (A/B)")
        assert "bars small · A/B" in tab.page.locator(".khrbm-setups-list select").first.inner_text()
        tab.wait_text(".khrbm-setup-details", "for class 3")
        tab.shot("10_my_setups.png")
        with Registry() as reg:                             # what the app saved, read by this process
            saved = reg.setup("bars small")
        assert saved.comment == "for class 3"
        assert (saved.config_a.n_hidden, saved.config_a.eps0, saved.config_a.epochs, saved.config_a.kh_mode) == \
            (20, 0.03, 3, "bu")
        assert saved.config_b == saved.config_a.replace(kh_mode="off")

        tab.page.goto(url)                                  # reload: the page opens on its default setup
        tab.wait_attr("state", lambda v: v in ("idle", "paused"), timeout=120)
        assert input_value(tab, "n_hidden") != "20"
        open_library(tab, "My setups")
        tab.page.locator(".khrbm-setups-list select").first.select_option(label="bars small · A/B")
        tab.click(".khrbm-setup-recall")
        wait_for(lambda: input_value(tab, "n_hidden"), lambda v: v == "20")
        assert (input_value(tab, "eps0"), input_value(tab, "epochs"), input_value(tab, "n_hidden")) == \
            ("0.03", "3", "20")
        assert "active" in tab.page.locator(".khrbm-w-kh_mode button", has_text="BU").first.get_attribute("class")
        tab.wait_attr("arms", lambda v: v == "2")
        tab.wait_text(".khrbm-hint", "Recalled setup “bars small”: for class 3")
        cfg = json.loads(tab.download(".khrbm-export-config").decode())     # the config the trainer holds
        assert cfg == saved.config_a.to_dict()
        tab.page.wait_for_url(lambda u: "preset=bars" in u and "n_hidden=20" in u, timeout=30000)

        tab.page.locator(".khrbm-setup-name input").first.fill("bars tiny")
        tab.click(".khrbm-setup-rename")
        tab.wait_text(".khrbm-setup-said", "Renamed “bars small” to “bars tiny”")
        tab.click(".khrbm-setup-delete")                    # asks first
        tab.wait_text(".khrbm-setup-delete", "Again")
        with Registry() as reg:
            assert [s.name for s in reg.setups()] == ["bars tiny"]
        tab.click(".khrbm-setup-delete")
        tab.wait_text(".khrbm-setup-said", "Deleted “bars tiny”")
        with Registry() as reg:
            assert reg.setups() == []
        assert errors(tab) == [], "\n".join(tab.errors)
    finally:
        tab.close()


def test_recent_runs_show_overlay_and_continue(khrbm_app_server, khrbm_browser):
    url, _log = khrbm_app_server
    tab = Tab(khrbm_browser, f"{url}?preset=bars&n_hidden=20&epochs=2")
    try:
        tab.click(".khrbm-start")
        tab.wait_attr("state", lambda v: v == "finished", timeout=120)
        finished_step = tab.step()
        def recorded():                                     # the app recorded both arms, with a checkpoint
            with Registry() as reg:
                return [r for r in reg.recent(10) if r.source == "app" and r.state == "finished"
                        and (r.config.n_hidden, r.config.epochs) == (20, 2)]
        ours = wait_for(recorded, lambda runs: len(runs) == 2, timeout=30)
        assert {r.arm for r in ours} == {"A", "B"} and all(r.can_continue for r in ours)
        run_a = next(r for r in ours if r.arm == "A")

        open_library(tab, "Recent runs")
        tab.click(".khrbm-runs-refresh")
        options = wait_for(lambda: tab.page.locator(".khrbm-runs-list option").all_inner_texts(),
                           lambda texts: any(t.startswith(f"#{run_a.id} A · app") for t in texts))
        label = next(t for t in options if t.startswith(f"#{run_a.id} A · app"))
        tab.page.locator(".khrbm-runs-list select").first.select_option(label=label)
        tab.click(".khrbm-run-show")
        head = tab.page.locator(".khrbm-past-title").first
        head.wait_for(timeout=15000)
        assert head.get_attribute("data-run") == str(run_a.id) and head.get_attribute("data-weights") == "1"
        assert tab.page.locator(".khrbm-past canvas").count() >= 3            # mosaic and two curves
        tab.click(".khrbm-run-overlay")
        wait_for(lambda: titles(tab), lambda t: f"Reconstruction error · grey: #{run_a.id} A (past)" in t)
        tab.click(".khrbm-past-close")

        tab.set_number("eps0", 0.0)                                           # a different run beside it
        tab.click(".khrbm-reset")
        tab.wait_attr("step", lambda v: v == "0")
        tab.click(".khrbm-start")
        tab.wait_attr("state", lambda v: v == "finished", timeout=120)
        time.sleep(1.0)
        assert f"Reconstruction error · grey: #{run_a.id} A (past)" in titles(tab)   # it outlives the reset
        past = tab.page.evaluate("""() => {
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.type === "GlyphRenderer" && m.name && m.name.endsWith("(past)"))
                        return m.data_source.get_length();
            return -1; }""")
        with Registry() as reg:                                      # its points reached the browser, all of them
            stored = int(np.isfinite(reg.points(run_a)["val_mse"]).sum())
        assert past >= stored >= 2, (past, stored)
        tab.shot("11_recent_run_overlaid.png")

        tab.click(".khrbm-run-continue")                                      # continue run A from its checkpoint
        tab.wait_attr("step", lambda v: v == str(finished_step), timeout=60)
        assert tab.attr("state") == "finished"
        cfg = json.loads(tab.download(".khrbm-export-config").decode())       # run A's settings, not eps0 = 0
        assert cfg["eps0"] == run_a.config.eps0 > 0 and tab.attr("arms") == "2"

        Path(run_a.checkpoint).unlink()                                       # its checkpoint is gone
        tab.click(".khrbm-run-show")
        tab.wait_text(".khrbm-past-note", "no such checkpoint file")
        head = tab.page.locator(".khrbm-past-title").first
        assert head.get_attribute("data-weights") == "0" and int(head.get_attribute("data-points")) >= stored >= 2
        tab.click(".khrbm-runs-refresh")
        tab.wait_text(".khrbm-run-details", "its checkpoint is gone")
        tab.click(".khrbm-run-continue")
        tab.wait_text(".khrbm-error", "cannot be continued")
        assert errors(tab) == [], "\n".join(tab.errors)
    finally:
        tab.close()


def test_a_lesson_shows_its_captions_at_their_steps_and_waits_for_continue(khrbm_app_server, khrbm_browser):
    lesson = Lesson.from_dict({
        "name": "Tiny bars", "description": "four events at small steps",
        "config": {"dataset": "bars", "n_hidden": 20, "kh_mode": "bu", "eps0": 0.08, "delta": 0.1, "epochs": 1},
        "compare": True,
        "events": [{"at": {"step": 0}, "caption": "First: press Continue.", "pause": True},
                   {"at": {"step": 5}, "set": {"eps0": 0.05}, "caption": "Second: ε0 drops at step 5."},
                   {"at": {"step": 12}, "set": {"delta": 0.0}, "arm": "A", "pause": True,
                    "caption": "Third: Δ → 0 in A, and the lesson waits."},
                   {"at": {"step": 30}, "caption": "Fourth: the end."}]})
    with Registry() as reg:
        reg.save_lesson("tiny bars", lesson, replace=True)
    url, _log = khrbm_app_server
    tab = Tab(khrbm_browser, f"{url}?preset=bars")
    try:
        open_library(tab, "Lessons")
        tab.page.locator(".khrbm-lesson-pick select").first.select_option(label="tiny bars (saved)")
        tab.click(".khrbm-lesson-play")
        wait_for(lambda: caption(tab, "event"), lambda v: v == "1")
        assert caption(tab, "waiting") == "1" and tab.step() == 0
        assert "First: press Continue." in tab.text(".khrbm-caption-pane")
        tab.page.locator(".khrbm-continue button").first.wait_for(state="visible", timeout=10000)
        assert input_value(tab, "n_hidden") == "20"                          # the lesson's own setup

        for n in range(1, 6):                                                # step to the event's step ...
            tab.click(".khrbm-step")
            tab.wait_attr("step", lambda v, n=n: v == str(n), timeout=30)
        assert caption(tab, "event") == "1"                                   # ... it plays before minibatch 5
        tab.click(".khrbm-step")
        tab.wait_attr("step", lambda v: v == "6", timeout=30)
        wait_for(lambda: caption(tab, "event"), lambda v: v == "2")
        assert caption(tab, "event-step") == "5" and "Second" in tab.text(".khrbm-caption-pane")
        tab.wait_attr("changes", lambda v: v == "1")                          # ε0 → 0.05, logged at step 5
        wait_for(lambda: input_value(tab, "eps0"), lambda v: v == "0.05")     # and shown in the sidebar
        assert tab.page.locator(".khrbm-continue button").first.is_hidden()

        tab.click(".khrbm-start")                                             # runs on to the pause at step 12
        wait_for(lambda: caption(tab, "waiting"), lambda v: v == "1", timeout=60)
        tab.wait_attr("state", lambda v: v == "paused")
        assert tab.step() == 12 and caption(tab, "event") == "3" and caption(tab, "event-step") == "12"
        tab.page.locator(".khrbm-continue button").first.wait_for(state="visible", timeout=10000)
        time.sleep(1.5)
        assert tab.step() == 12 and tab.attr("state") == "paused"            # it waits for the teacher
        assert input_value(tab, "delta") == "0"
        labels = tab.page.evaluate("""() => {                            // the timeline's labels on the curves
            const out = [];
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.get_column && m.columns && m.columns().includes("label")) out.push(...m.get_column("label"));
            return out; }""")
        assert "3 ❚❚ Δ=0 (A)" in labels and "2 ε0=0.05" in labels, labels
        tab.shot("12_lesson_waits.png")

        tab.click(".khrbm-continue")
        wait_for(lambda: caption(tab, "event"), lambda v: v == "4", timeout=60)
        tab.wait_attr("state", lambda v: v == "finished", timeout=120)
        def recorded():                                                       # with the lesson's changes
            with Registry() as reg:
                run = next(r for r in reg.recent(10) if r.arm == "A" and r.lesson)
                return run, [(c["step"], c["field"], c["new"]) for c in reg.changes(run)]
        run, changes = wait_for(recorded, lambda found: found[0].state == "finished")
        assert changes == [(5, "eps0", 0.05), (12, "delta", 0.0)] and len(run.lesson["events"]) == 4
        assert errors(tab) == [], "\n".join(tab.errors)
    finally:
        tab.close()


def test_the_story_lesson_on_mnist(mnist_dir, khrbm_app_server, khrbm_browser):
    """The shipped story lesson tells UX.md's story by itself: it opens its setup and waits with its first
    caption; Continue trains; at epoch 1 the next caption comes."""
    url, _log = khrbm_app_server
    tab = Tab(khrbm_browser, url)
    try:
        open_library(tab, "Lessons")
        tab.page.locator(".khrbm-lesson-pick select").first.select_option(
            label="Init robustness: plain vs KH_TD, then Δ → 0, then TD → BU")
        tab.click(".khrbm-lesson-play")
        wait_for(lambda: caption(tab, "waiting"), lambda v: v == "1", timeout=60)
        assert "Two RBMs learn MNIST from one bad start" in tab.text(".khrbm-caption-pane")
        tab.page.locator(".khrbm-library .card-header").first.click()         # fold the card away for the class
        tab.click(".khrbm-continue")
        wait_for(lambda: caption(tab, "event"), lambda v: v == "2", timeout=180, every=0.5)
        assert "validation MSE" in tab.text(".khrbm-caption-pane")
        time.sleep(2.0)
        tab.shot("13_story_lesson.png")
        assert errors(tab) == [], "\n".join(tab.errors)
    finally:
        tab.close()
