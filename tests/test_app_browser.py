"""The app in a real browser: `panel serve app` in a subprocess, driven by Playwright (Chromium).

Checks what a person at the screen relies on: the page opens without console errors on a ready setup,
Start trains (the step counter and the mosaic change), a live change mid-run drops a marker, Pause stops,
Compare shows two mosaics, exports download, bad files give a message (not a crash), two tabs train
independently and closing a tab frees its trainer. Screenshots at 1440x900 go to tests/artifacts/.
"""
from __future__ import annotations

import csv
import io
import json
import time

import numpy as np
import pytest
from conftest import Tab, no_chromium, panel_serve
from conftest import console_errors as _errors

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.timeout(300), no_chromium]


def test_story_on_mnist(mnist_dir, khrbm_app_server, khrbm_browser):
    """The classroom story on real MNIST: preset loaded on open, Start, Δ → 0 mid-run, TD → BU, Pause."""
    url, _log = khrbm_app_server
    tab = Tab(khrbm_browser, url)
    try:
        text = tab.status_text()
        assert tab.attr("arms") == "2", text                       # Compare on: arms A and B
        assert tab.page.locator(".khrbm-mosaic-a canvas").count() >= 1
        assert tab.page.locator(".khrbm-mosaic-b canvas").count() >= 1
        assert "Init robustness" in tab.page.locator(".khrbm-hint").first.inner_text()
        assert tab.step() == 0
        tab.shot("01_opened.png")

        w0 = tab.wait_attr("mosaic-version", lambda v: v not in ("", "-1"))
        sig0 = tab.attr("wsig")
        tab.click(".khrbm-start")
        tab.wait_attr("step", lambda v: int(v or 0) >= 30, timeout=60)
        tab.wait_attr("wsig", lambda v: v != sig0, timeout=30)          # the weights shown changed
        tab.wait_attr("mosaic-version", lambda v: v != w0, timeout=30)  # and the mosaic was redrawn

        assert tab.attr("changes") == "0"
        tab.mark("delta")
        tab.set_number("delta", 0)                                       # drag Δ to 0 (typed here)
        tab.wait_attr("changes", lambda v: v == "1", timeout=30)
        tab.wait_attr("step", lambda v: int(v) >= 150, timeout=90)       # a few metric points after it
        assert tab.page.locator(".khrbm-comp-wins").count() == 1         # TD: pixels compete
        tab.shot("02_running_td_delta0.png")

        tab.mark("bu")
        tab.radio("kh_mode", "BU")                                        # TD → BU
        tab.wait_attr("changes", lambda v: v == "2", timeout=30)
        tab.page.locator(".khrbm-comp-bars").first.wait_for(timeout=30000)  # BU: hidden units compete
        assert tab.page.locator(".khrbm-comp-wins").count() == 0
        time.sleep(2)
        tab.shot("03_running_bu.png")
        assert tab.curves_in_order() == []                                # rebuilt, then streamed: no point twice

        tab.mark("pause")
        tab.click(".khrbm-pause")
        tab.wait_attr("state", lambda v: v == "paused", timeout=30)
        s1 = tab.step()
        time.sleep(1.5)
        assert tab.step() == s1                                          # paused: the counter stands still

        tab.mark("download")
        raw = tab.download(".khrbm-export-weights")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            key = "A.W" if "A.W" in z.files else "W"
            assert z[key].shape == (784, 100)
            assert np.isfinite(z[key]).all()
            if key == "A.W":
                assert z["B.W"].shape == (784, 100)
        rows = list(csv.DictReader(io.StringIO(tab.download(".khrbm-export-metrics").decode())))
        assert {r["arm"] for r in rows} == {"A", "B"}
        assert all(0 < float(r["val_mse"]) < 1 for r in rows if r["val_mse"] != "nan")
        cfg = json.loads(tab.download(".khrbm-export-config").decode())
        assert cfg["init"] == "std" and cfg["n_hidden"] == 100 and cfg["delta"] == 0 and cfg["kh_mode"] == "bu"
        assert _errors(tab) == [], "\n".join(tab.errors)
    finally:
        tab.close()


def test_bars_controls_files_and_errors(khrbm_app_server, khrbm_browser, tmp_path):
    """Offline bars: Compare off/on, Step, needs-Reset badge, malformed uploads show a message."""
    url, _log = khrbm_app_server
    tab = Tab(khrbm_browser, url)
    try:
        tab.preset("Bars (offline, seconds): units own bars")
        tab.wait_attr("arms", lambda v: v == "2", timeout=60)
        tab.page.locator(".khrbm-compare input, .khrbm-compare .bk-switch, .khrbm-compare").first.click()
        tab.wait_attr("arms", lambda v: v == "1", timeout=60)            # not started: applies at once
        assert tab.page.locator(".khrbm-mosaic-b canvas").count() >= 1   # the placeholder says Compare is off
        tab.wait_attr("state", lambda v: v == "idle", timeout=60)
        tab.click(".khrbm-step")
        tab.wait_attr("step", lambda v: v == "1", timeout=30)

        tab.set_number("n_hidden", 20)                                   # model setting mid-run
        tab.page.locator(".khrbm-label-n_hidden .khrbm-pill").first.wait_for(timeout=10000)
        assert "Reset (1)" in tab.page.locator(".khrbm-reset button").first.inner_text()
        tab.click(".khrbm-reset")
        tab.wait_attr("step", lambda v: v == "0", timeout=30)
        assert tab.page.locator(".khrbm-label-n_hidden .khrbm-pill").count() == 0

        bad = tmp_path / "broken.json"
        bad.write_text('{"n_hidden": 100, "kh_mode": "sideways"')
        tab.upload(bad)
        tab.page.locator(".khrbm-error").first.wait_for(state="visible", timeout=15000)
        tab.wait_text(".khrbm-error", "not valid JSON")
        wrong = tmp_path / "wrong.json"
        wrong.write_text('{"n_hidden": 100, "kh_mode": "sideways"}')
        tab.upload(wrong)
        msg = tab.wait_text(".khrbm-error", "wrong.json")
        assert "kh_mode" in msg and "sideways" in msg
        junk = tmp_path / "junk.npz"
        junk.write_bytes(b"PK\x03\x04 this is not a checkpoint")
        tab.upload(junk)
        tab.wait_text(".khrbm-error", "junk.npz")
        assert tab.attr("state") in ("idle", "paused")                   # the server and the run go on
        assert "up to 10.0 MB" in tab.text(".khrbm-load-label")           # the limit, shown by the input
        big = tmp_path / "big.npz"
        big.write_bytes(b"PK\x03\x04" + bytes(11 * 1024 * 1024))        # over the cap: never sent
        tab.upload(big)
        msg = tab.wait_text(".khrbm-error", "big.npz is 11.0 MB")
        assert "up to 10.0 MB" in msg
        tab.click(".khrbm-step")                                          # the connection is still there
        tab.wait_attr("step", lambda v: v == "1", timeout=30)

        good = tmp_path / "small.json"
        good.write_text(json.dumps({"dataset": "bars", "n_hidden": 12, "kh_mode": "bu", "epochs": 3}))
        tab.upload(good)
        deadline = time.time() + 20
        while tab.page.locator(".khrbm-w-n_hidden input").first.input_value() != "12" and time.time() < deadline:
            time.sleep(0.2)
        assert tab.page.locator(".khrbm-w-n_hidden input").first.input_value() == "12"
        tab.wait_attr("state", lambda v: v == "idle", timeout=60)
        tab.click(".khrbm-start")
        tab.wait_attr("step", lambda v: int(v) > 20, timeout=60)
        tab.page.locator(".khrbm-comp-bars").first.wait_for(timeout=15000)
        shares = tab.page.locator(".khrbm-promise").first.get_attribute("data-shares")   # the bars' promise
        assert len(shares.split(",")) == 1 and 0.0 <= float(shares) <= 1.0
        time.sleep(1.5)
        tab.shot("04_bars_bu.png")
        assert _errors(tab) == []
    finally:
        tab.close()


def test_two_tabs_are_independent_and_closing_frees(khrbm_app_server, khrbm_browser):
    url, log_path = khrbm_app_server
    one = Tab(khrbm_browser, url)
    two = Tab(khrbm_browser, url)
    try:
        live = int(two.page.locator(".khrbm-live").first.get_attribute("data-live"))
        assert live >= 2
        one.click(".khrbm-start")
        one.wait_attr("step", lambda v: int(v) >= 20, timeout=60)
        time.sleep(1.0)
        assert two.step() == 0 and two.attr("state") == "idle"           # the other tab did not train
        before = int(two.page.locator(".khrbm-live").first.get_attribute("data-live"))
        one.close()
        deadline = time.time() + 30
        now = before
        while time.time() < deadline:
            now = int(two.page.locator(".khrbm-live").first.get_attribute("data-live"))
            if now == before - 1:
                break
            time.sleep(0.3)
        assert now == before - 1, f"live trainers stayed {now} (was {before}) after closing a tab"
        assert "trainer closed (tab closed)" in log_path.read_text()
        assert _errors(two) == []
    finally:
        two.close()


def test_offline_opens_on_bars_with_a_banner(khrbm_browser, tmp_path):
    """No MNIST anywhere: the app opens on the bars data and says how to get MNIST."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = dict(KHRBM_DATA_DIR=str(empty), XDG_CACHE_HOME=str(tmp_path / "cache"))
    with panel_serve("app", "server-offline.log", env=env) as (url, _log):
        tab = Tab(khrbm_browser, url)
        try:
            banner = tab.wait_text(".khrbm-banner", "khrbm data fetch mnist")
            assert "KHRBM_DATA_DIR" in banner
            assert tab.page.locator(".khrbm-preset select").first.input_value().startswith("Bars")
            assert tab.page.locator(".khrbm-w-dataset select").first.input_value().startswith("bars")
            assert "not downloaded" in tab.text(".khrbm-w-dataset")
            tab.preset(next(n for n in presets_names(tab) if n.startswith("Init robustness")))
            tab.wait_text(".khrbm-error", "fetch mnist")                  # a message, not a crash
            tab.click(".khrbm-step")
            tab.wait_attr("step", lambda v: v == "1", timeout=60)        # bars still trains
            tab.shot("05_offline_bars.png")
            assert _errors(tab) == []
        finally:
            tab.close()


def presets_names(tab) -> list[str]:
    return tab.page.locator(".khrbm-preset select option").all_inner_texts()


def test_a_link_restores_its_setup_and_the_url_follows_the_settings(khrbm_app_server, khrbm_browser):
    """A link's preset and settings reach the widgets and the trainer; a bad part is named in the banner
    and left at the preset's value; a live change moves the address; Copy link gives that address."""
    url, _log = khrbm_app_server
    link = f"{url}?preset=bars&kh_mode=td&eps0=0.02&n_hidden=20&compare=false&delta=abc"
    tab = Tab(khrbm_browser, link)
    try:
        tab.wait_text(".khrbm-banner", "'delta'")
        assert tab.attr("arms") == "1"                                        # compare=false
        assert tab.page.locator(".khrbm-preset select").first.input_value().startswith("Bars")
        assert tab.page.locator(".khrbm-w-eps0 input").first.input_value() == "0.02"
        assert tab.page.locator(".khrbm-w-n_hidden input").first.input_value() == "20"
        assert tab.page.locator(".khrbm-w-delta input").first.input_value() == "0.1"   # the preset's Δ
        assert "active" in tab.page.locator(".khrbm-w-kh_mode button", has_text="TD").first.get_attribute("class")
        cfg = json.loads(tab.download(".khrbm-export-config").decode())        # what the trainer holds
        assert (cfg["dataset"], cfg["kh_mode"], cfg["eps0"], cfg["n_hidden"], cfg["delta"]) == ("bars", "td", 0.02,
                                                                                              20, 0.1)
        tab.page.wait_for_url(lambda u: "delta" not in u and "eps0=0.02" in u, timeout=30000)   # the link, cleaned

        tab.click(".khrbm-step")
        tab.wait_attr("step", lambda v: v == "1", timeout=60)
        tab.set_number("eps0", 0.03)                                             # a live change
        tab.page.wait_for_url(lambda u: "eps0=0.03" in u, timeout=30000)
        tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
        tab.click(".khrbm-copy-link")
        tab.wait_text(".khrbm-copy-link", "Copied")
        copied = tab.page.evaluate("navigator.clipboard.readText()")
        assert copied == tab.page.url and "preset=bars" in copied and "compare=false" in copied
        assert _errors(tab) == []
    finally:
        tab.close()
    again = Tab(khrbm_browser, copied)                                         # the copied link, reopened
    try:
        assert again.page.locator(".khrbm-w-eps0 input").first.input_value() == "0.03"
        assert again.attr("arms") == "1" and again.step() == 0
        if again.page.locator(".khrbm-banner").first.is_visible():     # offline: it says MNIST is missing, no more
            assert "This link asked for" not in again.wait_text(".khrbm-banner", "khrbm data fetch mnist")
        again.shot("06_link_restored.png")
    finally:
        again.close()


def test_the_served_notebook_is_the_lab(khrbm_browser):
    """`panel serve examples/lab.ipynb`: the notebook's lab opens, Start trains (the step counter moves)."""
    with panel_serve("examples/lab.ipynb", "server-notebook.log") as (url, _log):
        tab = Tab(khrbm_browser, url)
        try:
            tab.wait_attr("step", lambda v: int(v or 0) >= 3, timeout=120)    # the notebook's own 3 steps
            s0 = tab.step()
            tab.click(".khrbm-start")
            tab.wait_attr("step", lambda v: int(v) >= s0 + 20, timeout=90)
            tab.shot("07_served_notebook.png")
            assert _errors(tab) == []
        finally:
            tab.close()
