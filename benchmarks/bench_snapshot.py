"""What publishing snapshots costs the trainer's loop once they carry the competition record (the unit panel's
matrix, count history and kept weights), at M = 500 on MNIST.

    python benchmarks/bench_snapshot.py                 # KH_BU and KH_TD, one run each, 20,000 images x 2 epochs
    python benchmarks/bench_snapshot.py --arms 2 --images 10000 --epochs 1

For each mode, one Trainer (defaults: snapshots within SNAPSHOT_SHARE of the loop's time, plus one every
0.5 s; a reader polls the snapshot every 0.4 s like the app) trains from start() to finished. Printed, all from
that one run (so the machine's load hits every figure alike): the share of the loop's time spent publishing
(``Trainer.timing()``), the publishes, the competition records built (at most one per COMPETITION_INTERVAL
while running), the cost of one record (the matrix and history copies, timed on the loop thread after the
run, median of 20) and of one whole publish, and the records' share of the loop's time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from khrbm.config import RunConfig  # noqa: E402
from khrbm.data import load_dataset  # noqa: E402
from khrbm.train.trainer import COMPETITION_INTERVAL, SNAPSHOT_SHARE, Trainer  # noqa: E402


def record_cost(trainer: Trainer, repeats: int = 20) -> float:
    """Median seconds to build arm A's competition record afresh, on the loop thread."""
    core = trainer._core

    def build(_runs):
        times = []
        for _ in range(repeats):
            core._competition_cache.clear()
            t0 = time.perf_counter()
            core._competition_record(0, core.runs[0], core.runs[0].config.kh_mode)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    return trainer._inject(build)


def one_case(mode: str, arms: int, images: int, epochs: int, hidden: int, dataset) -> dict:
    cfg = RunConfig(n_hidden=hidden, init="lecun", kh_mode=mode, eps0=0.02, delta=0.2, radius=0.1,
                    train_size=images, epochs=epochs)
    trainer = Trainer(cfg, cfg.replace(kh_mode="off") if arms == 2 else None, dataset=dataset)
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            _ = trainer.snapshot.arms[0].competition
            time.sleep(0.4)
    try:
        v0 = trainer.sync(600).version
        r0 = trainer._core.competition_version
        poll = threading.Thread(target=reader, daemon=True)
        poll.start()
        trainer.start()
        snap = trainer.wait_for(lambda s: s.state == "finished", 3600)
        stop.set()
        timing = trainer.timing()
        records = trainer._core.competition_version - r0
        cost = record_cost(trainer)
    finally:
        stop.set()
        trainer.close()
    publishes = snap.version - v0
    return {"mode": mode, "arms": arms, "loop_s": timing["loop"], "share": timing["snapshots"] / timing["loop"],
            "publishes": publishes, "records": records, "record_ms": 1e3 * cost,
            "publish_ms": 1e3 * timing["snapshots"] / max(publishes, 1),
            "record_share": records * cost / timing["loop"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--arms", type=int, choices=(1, 2), default=1)
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--modes", default="bu,td")
    args = ap.parse_args(argv)
    dataset = load_dataset("mnist")
    print(f"M = {args.hidden}, {args.arms} arm(s), {args.images:,} images x {args.epochs} epochs; "
          f"SNAPSHOT_SHARE {SNAPSHOT_SHARE:.0%}, COMPETITION_INTERVAL {COMPETITION_INTERVAL:g} s")
    print("| mode | loop (s) | publishing / loop | publishes | records | one record (ms) | one publish (ms) "
          "| records / loop |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in args.modes.split(","):
        r = one_case(mode, args.arms, args.images, args.epochs, args.hidden, dataset)
        print(f"| KH_{mode.upper()} | {r['loop_s']:.1f} | {r['share']:.2%} | {r['publishes']} | {r['records']} "
              f"| {r['record_ms']:.2f} | {r['publish_ms']:.2f} | {r['record_share']:.3%} |", flush=True)


if __name__ == "__main__":
    main()
