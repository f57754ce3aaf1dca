"""Live switching of the KH mode: TD → BU → off in one run, driven through a Trainer's snapshots.

Trains an RBM (M = 100, LeCun init, CD-1) on MNIST with the SPEC's KH_TD preset (ε0 = 0.04, Δ = 0.4,
R = 0.1), switches to KH_BU with its preset (ε0 = 0.008, Δ = 0.2) a third of the way through, and turns
KH off at two thirds — all while the trainer keeps running. Then prints, from the snapshots only, the
change log, ε over time, validation metrics, and the KH winner / inhibited counts of each mode.

    KHRBM_DATA_DIR=../shared/data python examples/live_switch.py [--epochs 6] [--train-size 10000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KHRBM_DATA_DIR", str((ROOT.parent / "shared" / "data").resolve()))

import numpy as np  # noqa: E402

from khrbm.config import RunConfig  # noqa: E402
from khrbm.train.trainer import Trainer  # noqa: E402


def top(counts: np.ndarray, k: int = 5) -> list[tuple[int, int]]:
    order = np.argsort(-counts, kind="stable")[:k]
    return [(int(i), int(counts[i])) for i in order if counts[i] > 0]


def unit_name(mode: str, i: int, n_pixels: int, side: int) -> str:
    if mode == "td":                      # postsynaptic units are the visible pixels
        return f"px({i // side},{i % side})" if i < n_pixels else f"label{i - n_pixels}"
    return f"h{i}"                        # BU: hidden units


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-size", type=int, default=None, help="first n training images (default: all)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    cfg = RunConfig(dataset="mnist", n_hidden=100, init="lecun", epochs=args.epochs, train_size=args.train_size,
                    kh_mode="td", eps0=0.04, delta=0.4, radius=0.1, seed=args.seed)
    t0 = time.perf_counter()
    with Trainer(cfg) as t:
        s = t.snapshot
        print(f"{s.state}: {s.message}" + (f"  [{s.notice}]" if s.notice else ""))
        s = t.sync(600)
        if s.state == "error":
            sys.exit(f"cannot train: {s.message}")
        print(f"{s.state} after {time.perf_counter() - t0:.1f} s; {s.arms[0].batches_per_epoch} minibatches "
              f"per epoch, {args.epochs} epochs; KH_TD ε0={cfg.eps0} Δ={cfg.delta} R={cfg.radius}")
        t.start()
        t.sync(60)                       # the start has been handled: the snapshots now say "running"
        eps_trace = []

        def watch(until_epoch):
            last = None
            while True:
                s = t.wait_for(lambda s: s.version != last, 60)
                last = s.version
                a = s.arms[0]
                if not eps_trace or a.epoch - eps_trace[-1][0] >= 0.25 or s.state != "running":
                    eps_trace.append((a.epoch, a.eps, a.config.kh_mode, s.samples_per_s))
                if s.state in ("diverged", "error"):
                    sys.exit(f"{s.state}: {s.message}")
                if a.epoch >= until_epoch or s.state != "running":
                    return s

        third = args.epochs / 3
        s = watch(third)
        td_seen = s.arms[0].win_counts.copy()
        print(f"switching TD → BU at epoch {s.epoch:.2f}: {int(td_seen.sum())} TD wins so far")
        t.update(kh_mode="bu", eps0=0.008, delta=0.2)            # the SPEC's KH_BU preset for lecun
        s = watch(2 * third)
        print(f"switching BU → off at epoch {s.epoch:.2f}: {int(s.arms[0].win_counts.sum())} BU wins so far "
              f"(counts_mode {s.arms[0].counts_mode!r})")
        t.update(kh_mode="off")
        watch_end = watch(args.epochs)         # returns when the run stops running (finished)
        elapsed = time.perf_counter() - t0

    a = watch_end.arms[0]
    print(f"\nfinal state: {watch_end.state} — {watch_end.message} ({elapsed:.1f} s wall, incl. compilation)")
    print("\nchange log (step, epoch, arm, field, old → new):")
    for c in watch_end.changes:
        print(f"  step {c.step:5d}  epoch {c.epoch:5.2f}  {c.arm}  {c.field:8s} {c.old!r} → {c.new!r}")
    print("\nε as seen in the snapshots (epoch, mode, ε, samples/s):")
    shown = eps_trace[:: max(1, len(eps_trace) // 16)]
    shown += [x for x in eps_trace[-2:] if x not in shown]
    for ep, eps, mode, rate in shown:
        print(f"  epoch {ep:5.2f}  {mode:3s}  ε = {eps:.5f}  {rate:8.0f} samples/s")
    h = a.history
    full = h["full"] == 1.0
    print("\nfull-validation points (epoch, val MSE/pixel, val CE, train MSE, RF overlap):")
    for ep, vm, vc, tm, ov in zip(h["epoch"][full], h["val_mse"][full], h["val_ce"][full], h["train_mse"][full],
                                  h["overlap"][full]):
        print(f"  epoch {ep:4.1f}  {vm:.4f}  {vc:.4f}  {tm:.4f}  {ov:.3f}")
    print(f"  ({int((~full).sum())} subsample points in between)")
    side = a.image_shape[1]
    print("\nKH winner / inhibited counts per postsynaptic unit, since each mode was switched on:")
    for mode in ("td", "bu"):
        win, inh = a.mode_counts[mode]
        K = len(win)
        print(f"  {mode.upper()} ({K} postsynaptic units): {int(win.sum())} wins; "
              f"{int((win > 0).sum())} units ever won, {int((inh > 0).sum())} ever inhibited")
        print("    top-5 winners:  " + ", ".join(f"{unit_name(mode, i, a.n_pixels, side)}×{n}"
                                                 for i, n in top(win)))
        print("    top-5 inhibited: " + ", ".join(f"{unit_name(mode, i, a.n_pixels, side)}×{n}"
                                                  for i, n in top(inh)))
    print(f"  snapshot counts_mode now: {a.counts_mode!r} (KH is {a.config.kh_mode})")


if __name__ == "__main__":
    main()
