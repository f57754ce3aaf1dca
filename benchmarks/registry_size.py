"""How big the run registry grows: bytes per long run, with the decimation rule of ``khrbm.store.folder.Decimator``.

    python benchmarks/registry_size.py            # a real 500-epoch `khrbm train` on bars, plus an app-like
                                                  # 500-epoch MNIST run written the way TrainerRecorder writes it
    python benchmarks/registry_size.py --quick    # 50 epochs each

1. ``khrbm train`` for 500 epochs on bars (1,000 images, 10 minibatches per epoch, a metric point per epoch),
   recorded into a fresh registry, as a user runs it.
2. The points of a 500-epoch MNIST app run (600 minibatches per epoch, 10 metric points per epoch, 30 live
   changes) pushed through the same Decimator and ``Registry.put_run`` calls as the app's recorder makes
   (a write per epoch), against the same run stored undecimated.
Sizes are of the SQLite file after a WAL checkpoint (``PRAGMA wal_checkpoint(TRUNCATE)``).
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from khrbm.config import RunConfig
from khrbm.store import Registry
from khrbm.store.folder import Decimator
from khrbm.train.run import HISTORY_KEYS
from khrbm.train.snapshot import Change


def file_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def cli_run(folder: Path, epochs: int) -> tuple[int, int, float]:
    path = folder / "cli.sqlite"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "khrbm", "train", "--dataset", "bars", "--n-hidden", "24",
                           "--train-size", "1000", "--val-size", "300", "--eval-size", "300", "--epochs", str(epochs),
                           "--kh-mode", "bu", "--eps0", "0.02", "--no-progress", "--out", str(folder / "run"),
                           "--registry", str(path)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    with Registry(path) as reg:
        (run,) = reg.runs()
        points = reg.count_points(run)
    return file_size(path), points, time.perf_counter() - t0


def app_like_run(path: Path, epochs: int, decimate: bool) -> tuple[int, int]:
    bpe, per_epoch = 600, 10
    rng = random.Random(1)
    cfg = RunConfig(init="std", kh_mode="td", epochs=epochs)
    decimator = Decimator()
    with Registry(path) as reg:
        reg.put_run("app-run", cfg, source="app", arm="A", group_uid="g")
        stored = 0
        for epoch in range(epochs):
            rows = [{"step": epoch * bpe + j * bpe // per_epoch, **{k: rng.random() for k in HISTORY_KEYS[1:]}}
                    for j in range(per_epoch)]
            final = epoch == epochs - 1
            if final:
                rows.append({"step": epochs * bpe, **{k: rng.random() for k in HISTORY_KEYS[1:]}})
            points = decimator.select(rows, final=final) if decimate else rows
            stored += len(points)
            changes = [(epoch, Change(epoch * bpe, float(epoch), "A", "delta", 0.4, 0.0))] if epoch < 30 else []
            reg.put_run("app-run", cfg, source="app", steps=(epoch + 1) * bpe, epoch=epoch + 1.0, points=points,
                        changes=changes, final=rows[-1], state="finished" if final else "running")
    return file_size(path), stored


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 epochs instead of 500")
    args = parser.parse_args()
    epochs = 50 if args.quick else 500
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Registry(tmp / "empty.sqlite").close()
        empty = file_size(tmp / "empty.sqlite")
        size, points, seconds = cli_run(tmp, epochs)
        print(f"empty registry: {empty / 1024:.1f} KiB  (load average {os.getloadavg()[0]:.1f})")
        print(f"khrbm train, bars, {epochs} epochs ({epochs + 1} metric points, {seconds:.0f} s): "
              f"{points} points stored, registry {size / 1024:.1f} KiB")
        for decimate in (True, False):
            size, stored = app_like_run(tmp / f"app-{decimate}.sqlite", epochs, decimate)
            label = "decimated" if decimate else "every point"
            print(f"app-like MNIST run, {epochs} epochs x 10 points ({label}): {stored} points stored, "
                  f"registry {size / 1024:.1f} KiB ({(size - empty) / max(stored, 1):.0f} bytes per point)")


if __name__ == "__main__":
    main()
