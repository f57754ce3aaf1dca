"""The classroom in a real browser (issue 9): following the teacher's run, the server's cap on trainers and its
queue, idle tabs giving their trainer back, and no khrbm thread left once every tab closed. `panel serve app`
with the limits in its environment (KHRBM_MAX_TRAINERS, KHRBM_IDLE_SECONDS), driven by Playwright (Chromium);
offline (the bars data)."""
from __future__ import annotations

import csv
import io
import re
import time

import pytest
from conftest import Tab, no_chromium, panel_serve
from conftest import console_errors as _errors

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.timeout(300), no_chromium]
BARS = "preset=bars&epochs=2000"          # long enough to keep training through a test
MARKERS_JS = """() => {
    let n = 0;                            // change markers: the data sources of one column x (vspans)
    for (const doc of window.Bokeh.documents) for (const m of doc.all_models)
        if (m.get_column && m.columns && m.columns().length === 1 && m.columns()[0] === "x") n += m.get_length() || 0;
    return n;
}"""


def seat(tab: Tab, attr: str) -> str | None:
    """A data attribute of the notice above the figures (None when there is none: the tab trains its own run)."""
    loc = tab.page.locator(".khrbm-seat")
    return loc.first.get_attribute(f"data-{attr}") if loc.count() else None


def wait_seat(tab: Tab, css: str | None, timeout=60.0):
    """Wait for the notice matching ``.khrbm-seat{css}``, or (``css`` None) for no notice at all."""
    if css is None:
        tab.page.locator(".khrbm-seat").first.wait_for(state="detached", timeout=timeout * 1000)
    else:
        tab.page.locator(f".khrbm-seat{css}").first.wait_for(timeout=timeout * 1000)


def wait_status(tab: Tab, pred, timeout=30.0):
    deadline = time.time() + timeout
    while not pred(tab.status_text()):
        assert time.time() < deadline, f"status line: {tab.status_text()!r}"
        time.sleep(0.2)


def disabled(tab: Tab, css: str) -> bool:
    return tab.page.locator(css).first.is_disabled()


def server(tab: Tab, attr: str) -> int:
    return int(tab.page.locator(".khrbm-live").first.get_attribute(f"data-{attr}"))


def wait_all_freed(log_path, timeout=60.0) -> str:
    """The server's last word on closed trainers once every tab closed: no trainer, no khrbm thread."""
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        lines = re.findall(r"live trainers: \d+; khrbm threads: \d+", log_path.read_text())
        last = lines[-1] if lines else ""
        if last == "live trainers: 0; khrbm threads: 0":
            return last
        time.sleep(0.5)
    raise AssertionError(f"after every tab closed the server still says {last!r}")


def test_followers_watch_the_teachers_run_and_can_copy_it(khrbm_browser):
    env = {"KHRBM_MAX_TRAINERS": "3"}
    with panel_serve("app", "server-follow.log", env=env) as (url, log_path):
        teacher = Tab(khrbm_browser, f"{url}?{BARS}")
        follower = late = None
        try:
            teacher.click(".khrbm-share")
            teacher.page.locator(".khrbm-share-info [data-code]").first.wait_for(timeout=20000)
            info = teacher.page.locator(".khrbm-share-info [data-code]").first
            code = info.get_attribute("data-code")
            assert f"?follow={code}" in info.inner_text()                       # the link to give the class
            teacher.click(".khrbm-start")

            follower = Tab(khrbm_browser, f"{url}?follow={code}", ready=None)
            wait_seat(follower, f"[data-following='{code}']")
            s0 = int(follower.wait_attr("step", lambda v: int(v or 0) > 0))
            follower.wait_attr("step", lambda v: int(v) > s0 + 20)              # the teacher's counter moves here
            wait_status(follower, lambda text: f"following {code}" in text)
            teacher.page.locator(".khrbm-share-info [data-followers='1']").first.wait_for(timeout=20000)
            for css in (".khrbm-w-delta input", ".khrbm-w-kh_mode button", ".khrbm-start button", ".khrbm-step button",
                        ".khrbm-reset button", ".khrbm-preset select"):
                assert disabled(follower, css), f"{css} is enabled for a follower"
            assert server(follower, "live") == 1                               # following trains nothing

            teacher.set_number("delta", 0)                                      # the teacher's live change
            follower.wait_attr("changes", lambda v: v == "1", timeout=30)
            deadline = time.time() + 20
            while follower.page.evaluate(MARKERS_JS) == 0 and time.time() < deadline:
                time.sleep(0.3)
            assert follower.page.evaluate(MARKERS_JS) > 0                       # its Δ marker on the curves
            follower.shot("10_follower.png")

            teacher.click(".khrbm-pause")
            teacher.wait_attr("state", lambda v: v == "paused")
            step, wsig = teacher.step(), teacher.attr("wsig")
            follower.wait_attr("step", lambda v: int(v) == step)
            # the pause reached the follower with its status and curves; the paused frame's mosaics come when due
            follower.wait_attr("mosaic-version", lambda v: v == follower.attr("version"), timeout=30)
            follower.page.locator(".khrbm-copy-run button").first.click()       # Make my own copy
            wait_seat(follower, None)
            wait_status(follower, lambda text: "following" not in text)
            assert follower.step() == step and follower.attr("wsig") == wsig     # the teacher's step and weights
            follower.click(".khrbm-start")               # (waits until enabled) its own trainer, independent
            follower.wait_attr("step", lambda v: int(v) > step + 30)
            assert teacher.step() == step and teacher.attr("state") == "paused"
            assert not disabled(follower, ".khrbm-w-delta input")
            assert server(follower, "live") == 2

            late = Tab(khrbm_browser, f"{url}?follow={code}", ready=None)
            wait_seat(late, f"[data-following='{code}']")
            teacher.close()                                                      # the teacher's tab closes
            wait_seat(late, "[data-ended='1']")
            wait_status(late, lambda text: f"following {code} (ended)" in text)
            late.page.locator(".khrbm-copy-run button").first.click()            # a copy of its last state
            wait_seat(late, None)
            assert late.step() == step and late.attr("wsig") == wsig
            assert _errors(follower) == [] and _errors(late) == []
        finally:
            for tab in (teacher, follower, late):
                if tab is not None:
                    tab.close()
        wait_all_freed(log_path)


def test_a_tab_over_the_cap_waits_and_an_idle_tab_gives_its_trainer_back(khrbm_browser):
    """Cap 1: a second tab is queued (position 1); when the first pauses past the idle limit its trainer is
    released and the second starts; the first, pressing Start, waits in turn and gets its run back (the step
    and the metric history it had) when the second closes."""
    env = {"KHRBM_MAX_TRAINERS": "1", "KHRBM_IDLE_SECONDS": "8"}
    with panel_serve("app", "server-cap.log", env=env) as (url, log_path):
        first = Tab(khrbm_browser, f"{url}?{BARS}")
        second = None
        try:
            first.click(".khrbm-start")                                          # training: never idle
            first.wait_attr("step", lambda v: int(v) > 100)
            second = Tab(khrbm_browser, f"{url}?{BARS}", ready=None)
            wait_seat(second, "[data-mode='waiting']")
            assert "Queued, position 1 of 1" in second.page.locator(".khrbm-seat").first.inner_text()
            second.wait_attr("state", lambda v: v == "queued")                 # its status line says so too
            assert disabled(second, ".khrbm-start button") and disabled(second, ".khrbm-w-delta input")
            assert server(second, "live") == 1 and server(second, "queued") == 1
            second.shot("11_queued.png")

            first.click(".khrbm-pause")
            first.wait_attr("state", lambda v: v == "paused")
            step = first.step()
            wait_seat(first, "[data-mode='released']", timeout=40)               # idle for 8 s: released
            assert f"back from step {step:,}" in first.page.locator(".khrbm-seat").first.inner_text()
            wait_seat(second, None)                                              # the queue moved up
            second.wait_attr("state", lambda v: v == "idle")
            assert server(second, "live") == 1
            second.click(".khrbm-start")
            second.wait_attr("state", lambda v: v == "running")

            first.click(".khrbm-start")                                          # the person returns
            wait_seat(first, "[data-position='1']")
            second.close()
            second = None
            wait_seat(first, None)
            first.wait_attr("state", lambda v: v == "running")
            assert first.step() >= step
            rows = csv.DictReader(io.StringIO(first.download(".khrbm-export-metrics").decode()))
            assert any(0 < int(r["step"]) < step for r in rows)                  # its history came back with it
            assert _errors(first) == []
        finally:
            for tab in (first, second):
                if tab is not None:
                    tab.close()
        wait_all_freed(log_path)
