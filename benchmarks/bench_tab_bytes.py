"""Bytes the server sends each browser tab while a run trains (issue 9, "Many tabs").

Starts `khrbm serve` on a free port, opens ``--tabs`` Chromium tabs on a link (default: the classroom story
on MNIST, else the offline bars), presses Start in each, and counts the bytes of every websocket frame each
tab receives (Playwright's ``framereceived``), in consecutive windows. Prints, per window, the bytes per
second per tab and per redraw tick (the app redraws every TICK_MS), the share of binary frames (arrays:
images, curve points) and the step the run reached: with a
whole history re-sent on every redraw the figure grows with the run; with increments it stays flat.

    python benchmarks/bench_tab_bytes.py                  # 1 tab, story, 3 windows of 10 s
    python benchmarks/bench_tab_bytes.py --link "preset=bars&epochs=2000" --history 300   # a class 300 epochs in

``--history E`` first loads, in every tab, a checkpoint of the link's setup whose metric history is that of
E epochs (synthetic curves, 10 points per epoch): what a redraw costs late in a long run. Timings on a shared
machine vary; the bytes depend on how far the run got (the step column), so compare two versions at similar
steps. Last line: ``bytes per tick per tab: B (last window)``.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


def long_checkpoint(link: str, epochs: int, path: Path) -> tuple[Path, int]:
    """A checkpoint of the link's setup after one minibatch, given the metric history of ``epochs`` epochs
    (10 points per epoch, MSE and cross-entropy falling smoothly) and the matching step counter."""
    import numpy as np

    from khrbm.app import urlstate
    from khrbm.train.run import HISTORY_KEYS, XI_KEYS
    from khrbm.train.trainer import Trainer

    setup, _ = urlstate.parse(link, "bars")
    cfg = setup.config
    with Trainer(cfg, cfg.replace(kh_mode="off") if setup.compare else None) as t:
        t.step(1)
        bpe = t.sync(300).arms[0].batches_per_epoch
        t.save_checkpoint(path)
    arrays = dict(np.load(path, allow_pickle=False))
    n = epochs * 10
    epoch = np.linspace(0.0, epochs, n + 1)
    curve = {"step": np.rint(epoch * bpe), "epoch": epoch, "eps": cfg.eps0 * np.ones(n + 1),
             "val_mse": 0.08 + 0.4 * np.exp(-epoch), "val_ce": 0.3 + 2 * np.exp(-epoch),
             "train_mse": 0.07 + 0.4 * np.exp(-epoch), "train_ce": 0.28 + 2 * np.exp(-epoch),
             "accuracy": np.full(n + 1, np.nan), "overlap": 0.3 - 0.1 * np.exp(-epoch)}
    xi_step = np.arange(0, epochs * bpe, 50, dtype=np.float64)
    xi = {"step": xi_step, "ratio": np.ones_like(xi_step), "cosine": np.zeros_like(xi_step)}
    for prefix in ("A.", "B.") if "arms" in arrays else ("",):
        arrays[prefix + "history"] = np.stack([curve[k] for k in HISTORY_KEYS], axis=1)
        arrays[prefix + "xi_history"] = np.stack([xi[k] for k in XI_KEYS], axis=1)
        arrays[prefix + "step"] = np.int64(epochs * bpe)
    np.savez(path, **arrays)
    return path, epochs * bpe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default=None, help="query of the link to open (default: preset=story, or bars "
                                                 "without MNIST)")
    ap.add_argument("--tabs", type=int, default=1)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of one window")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of training before the first window")
    ap.add_argument("--history", type=int, default=0, help="epochs of metric history to load first (0: none)")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from khrbm import data
    from khrbm.app.lab import TICK_MS

    link = args.link or ("preset=story" if data.dataset_status("mnist")[0] else "preset=bars&epochs=1000")
    start = long_checkpoint(link, args.history, REPO / "runs" / "bench-history.npz") if args.history else None
    server = subprocess.Popen([sys.executable, "-m", "khrbm", "serve", "--port", "0"], cwd=REPO,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.search(r":(\d+)/app", server.stdout.readline()).group(1))
        url = f"http://127.0.0.1:{port}/app?{link}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            counts, binary = [0] * args.tabs, [0]       # bytes per tab; bytes of binary frames (arrays), all tabs
            pages = []
            for i in range(args.tabs):
                page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()

                def on_frame(payload, i=i):
                    n = len(payload) if isinstance(payload, bytes) else len(payload.encode())
                    counts[i] += n
                    binary[0] += n if isinstance(payload, bytes) else 0

                page.on("websocket", lambda ws, on_frame=on_frame: ws.on("framereceived", on_frame))
                page.goto(url)
                status = page.locator(".khrbm-statusline").first
                deadline = time.time() + 180
                while status.get_attribute("data-state") not in ("idle", "paused") and time.time() < deadline:
                    page.wait_for_timeout(200)
                if start is not None:
                    page.locator(".khrbm-load input[type=file]").first.set_input_files(str(start[0]))
                    while int(status.get_attribute("data-step") or 0) < start[1] and time.time() < deadline:
                        page.wait_for_timeout(200)
                pages.append(page)
            for page in pages:
                page.locator(".khrbm-start button").first.click()
            # Playwright delivers frame events only inside its own calls: wait with wait_for_timeout, never sleep
            pages[0].wait_for_timeout(args.warmup * 1000)
            print(f"{args.tabs} tab(s) on ?{link}; windows of {args.seconds:g} s; one tick = {TICK_MS} ms")
            print(f"{'window':>6} {'step':>7} {'kB/s per tab':>13} {'bytes per tick per tab':>23} {'arrays':>7}")
            per_tick = 0.0
            for w in range(args.windows):
                before, before_bin, t0 = sum(counts), binary[0], time.time()
                pages[0].wait_for_timeout(args.seconds * 1000)
                sent, dt = sum(counts) - before, time.time() - t0
                step = pages[0].locator(".khrbm-statusline").first.get_attribute("data-step")
                per_tab = sent / args.tabs / dt
                per_tick = per_tab * TICK_MS / 1000
                share = (binary[0] - before_bin) / sent if sent else 0.0
                print(f"{w + 1:>6} {step:>7} {per_tab / 1000:>13.1f} {per_tick:>23,.0f} {share:>7.0%}")
            browser.close()
        print(f"bytes per tick per tab: {per_tick:,.0f} (last window)")
    finally:
        server.terminate()
        server.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
