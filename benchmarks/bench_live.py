"""Live-path throughput: how much of the kernels' speed reaches a user, on all 60,000 MNIST training images.

    python benchmarks/bench_live.py            # 3 rounds, 3 epochs per case (~15 min on 2 idle cores)
    python benchmarks/bench_live.py --quick    # 1 round, 1 epoch (CLI: 2), M = 100 and 500 (< 5 min)

Cases: M = 100 and M = 500, one run (KH_TD-CD1, the authors' reconstruction preset for that M, LeCun
init, R = 0.1) and an A/B pair (A: that KH_TD run, B: plain CD-1, as the app's compare mode). Each case
trains the same epochs three ways, timed in one process and interleaved round by round (so a change of
machine load hits all of them alike):

* **bare**: ``NumbaStepper.step`` over the epoch's minibatches (float32 batches prepared beforehand), both
  arms in lockstep for A/B: the kernels' speed;
* **trainer**: :class:`khrbm.train.trainer.Trainer` with its defaults (evaluation and snapshot budgets,
  probe reconstructions), from ``start()`` to ``finished`` (its step-0 point is taken before), with a
  reader polling the snapshot every 0.4 s like the app;
* **cli**: ``python -m khrbm train --no-registry`` in a subprocess for each arm, end to end: start-up, data loading,
  kernel cache, the step-0 point, then per epoch the training, a full point (all 10,000 validation images
  + the fixed training sample) and a checkpoint. Its *per-epoch* rate comes from the times its epoch
  summaries appear (epoch 1 → last, so at least 2 epochs); the one-off start-up is reported apart.

Printed per case: samples/s of each (both arms counted), the ratio to bare (for the trainer also the ratio
of CPU seconds per sample, which other processes on the machine disturb less), the share of the wall time
spent in evaluation and in publishing snapshots (trainer: ``Trainer.timing()``; cli: evaluation seconds
from its result.json over its wall time, start-up and step-0 point included; and "point / epoch": one
epoch-end full point over the per-epoch time, the share a long run pays), the seconds per 60k epoch of
bare, and of an authors-style NumPy float64 reference (``bench_step.reference_step``: dense matmuls,
argsort, np.random) timed on ``--ref-images`` images and scaled. The last line is ``min ratio live/bare:
0.NN`` over the trainer and cli-per-epoch ratios of every case.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_step import PRESETS, RADIUS, machine, reference_step  # noqa: E402

from khrbm.config import RunConfig  # noqa: E402
from khrbm.core import kernels, rng  # noqa: E402
from khrbm.core.rbm import init_params  # noqa: E402
from khrbm.data import load_dataset  # noqa: E402
from khrbm.train.run import Run  # noqa: E402
from khrbm.train.trainer import Trainer  # noqa: E402

DEADLINE = 3600.0


def configs(M: int, arms: int, epochs: int) -> list[RunConfig]:
    eps0, delta = PRESETS[("td", M)]
    a = RunConfig(dataset="mnist", n_hidden=M, kh_mode="td", eps0=eps0, delta=delta, radius=RADIUS, epochs=epochs)
    return [a, a.replace(kh_mode="off")][:arms]


def time_bare(cfgs, dataset, X) -> tuple[float, float, int]:
    """Wall and CPU seconds and samples of ``epochs`` epochs of every arm, in lockstep, through NumbaStepper.step on
    consecutive float32 minibatches of X (all training images), with the settings a Run would use."""
    runs = [Run(c, dataset) for c in cfgs]
    B = cfgs[0].batch_size
    nb = len(X) // B
    samples = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for t in range(nb * cfgs[0].epochs):
        Xb = X[(t % nb) * B:(t % nb + 1) * B]
        for run in runs:
            run.step = t
            run.stepper.step(run.params, Xb, run.settings(), rng.stream(run.config.seed, t))
            samples += len(Xb)
    return time.perf_counter() - t0, time.process_time() - c0, samples


def time_trainer(cfgs, dataset) -> tuple[float, float, int, dict]:
    t = Trainer(*cfgs, dataset=dataset)
    try:
        t.sync(DEADLINE)                                  # compiled, step-0 point taken
        stop = threading.Event()

        def reader():                                     # the app's periodic redraw reads the snapshot
            while not stop.wait(0.4):
                s = t.snapshot
                _ = [arm.W.shape for arm in s.arms]

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        c0 = time.process_time()
        t0 = time.perf_counter()
        t.start()
        s = t.wait_for(lambda s: s.state in ("finished", "diverged", "error"), DEADLINE)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        stop.set()
        th.join()
        if s.state != "finished":
            raise RuntimeError(f"trainer ended {s.state}: {s.message}")
        timing = t.timing()
        samples = sum(arm.step for arm in s.arms) * cfgs[0].batch_size
    finally:
        t.close()
    return wall, cpu, samples, timing


def time_cli(cfgs, out_dir: Path) -> dict:
    """Run `khrbm train` for each arm; wall time, per-epoch time (from the epoch summaries' arrival), the
    evaluation seconds of its result.json and those of one epoch-end point (the session's less its step-0
    point, over the epochs), summed over the arms."""
    total = {"wall": 0.0, "per_epoch": 0.0, "startup": 0.0, "evaluate": 0.0, "epoch_point": 0.0, "samples": 0,
             "epoch_samples": 0}
    for i, cfg in enumerate(cfgs):
        out = out_dir / f"arm{i}"
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = out_dir / f"arm{i}.json"
        cfg_path.write_text(cfg.to_json())
        cmd = [sys.executable, "-m", "khrbm", "train", "--config", str(cfg_path), "--out", str(out), "--no-progress",
               "--no-registry"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
        stamps = []
        for line in proc.stderr:
            if line.startswith("epoch "):
                stamps.append(time.perf_counter() - t0)
        if proc.wait() != 0 or len(stamps) != cfg.epochs:
            raise RuntimeError(f"khrbm train failed (exit {proc.returncode}): {' '.join(cmd)}")
        wall = time.perf_counter() - t0
        result = json.loads((out / "result.json").read_text())
        per_epoch = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
        total["wall"] += wall
        total["per_epoch"] += per_epoch
        total["startup"] += stamps[0] - per_epoch if len(stamps) > 1 else float("nan")
        total["evaluate"] += result["evaluate_seconds_this_session"]
        step0 = result.get("evaluate_seconds_step0", math.nan)          # absent before 2026-11-23
        total["epoch_point"] += (result["evaluate_seconds_this_session"] - step0) / cfg.epochs
        total["samples"] += result["steps"] * cfg.batch_size
        total["epoch_samples"] += result["steps"] * cfg.batch_size // cfg.epochs
    return total


def time_reference(cfgs, images: np.ndarray) -> float:
    """Seconds per 60k epoch of every arm in the authors' style (NumPy float64), from ``images``."""
    seconds = 0.0
    B = 100
    for cfg in cfgs:
        p = init_params(784, cfg.n_hidden, "lecun", 1, np.float64)
        X = images.astype(np.float64)
        gen = np.random.default_rng(1)
        kw = dict(k=1) if cfg.kh_mode == "off" else dict(k=1, kh=cfg.kh_mode, eps=cfg.eps0, delta=cfg.delta)
        nb = len(X) // B
        t0 = time.perf_counter()
        for i in range(nb):
            reference_step(p.W, p.a, p.b, X[i * B:(i + 1) * B], gen, **kw)
        seconds += (time.perf_counter() - t0) * 60_000 / (nb * B)
    time.sleep(0.3)                  # let OpenBLAS's threads park before our next timing (bench_step.py)
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round, 1 epoch (cli 2 epochs)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per timing (default 3; quick 1, cli >= 2)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 500], choices=[100, 500], help="values of M")
    ap.add_argument("--arms", type=int, nargs="+", default=[1, 2], choices=[1, 2], help="1: one run, 2: A/B")
    ap.add_argument("--ref-images", type=int, default=None, help="images timed for the reference (2,000; quick 1,000)")
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    epochs = args.epochs or (1 if args.quick else 3)
    cli_epochs = max(2, epochs)
    ref_images = args.ref_images or (1000 if args.quick else 2000)
    os.environ.setdefault("KHRBM_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    load_before = os.getloadavg()[0]
    info = machine()
    t0 = time.perf_counter()
    dataset = load_dataset("mnist")
    X = dataset.x_train.astype(np.float32)
    kernels.warmup((np.float32,))
    import numba
    print(f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, numpy {info['numpy']}, "
          f"numba {info['numba']} ({numba.threading_layer()}, {numba.get_num_threads()} threads); {info['date']}")
    print(f"data + kernels {time.perf_counter() - t0:.1f} s; {len(dataset.x_train)} training images; {rounds} "
          f"round(s) of {epochs} epoch(s) per case (cli {cli_epochs}); KH_TD-CD1 (A/B: B = CD-1), B = 100", flush=True)
    cases = [(M, arms) for M in args.hidden for arms in args.arms]
    res = {c: {"bare": [], "trainer": [], "cli": [], "timing": [], "cli_raw": [], "cpu": []} for c in cases}
    ref = {c: time_reference(configs(c[0], c[1], 1), dataset.x_train[:ref_images]) for c in cases}
    with tempfile.TemporaryDirectory(prefix="bench_live_") as tmp:
        for rnd in range(rounds):
            for c in cases:
                M, arms = c
                cfgs = configs(M, arms, epochs)
                secs, cpu_bare, n = time_bare(cfgs, dataset, X)
                res[c]["bare"].append(n / secs)
                wall, cpu, n_tr, timing = time_trainer(cfgs, dataset)
                res[c]["trainer"].append(n_tr / wall)
                res[c]["cpu"].append((cpu_bare / n) / (cpu / n_tr))
                res[c]["timing"].append({k: v / wall for k, v in timing.items()})
                cli = time_cli(configs(M, arms, cli_epochs), Path(tmp) / f"r{rnd}_M{M}_{arms}")
                res[c]["cli"].append(cli["epoch_samples"] / cli["per_epoch"])
                res[c]["cli_raw"].append(cli)
                print(f"  round {rnd + 1}/{rounds} M={M} arms={arms}: bare {res[c]['bare'][-1]:,.0f}/s, trainer "
                      f"{res[c]['trainer'][-1]:,.0f}/s, cli {res[c]['cli'][-1]:,.0f}/s per epoch "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    load_end = os.getloadavg()[0]

    def med(xs):
        return statistics.median(xs)

    print()
    print("| M | arms | bare (samples/s) | trainer (samples/s) | trainer/bare | (CPU) | trainer eval % | trainer snapshots % "
          "| cli per epoch (samples/s) | cli/bare | cli end to end (samples/s) | cli eval % | cli point / epoch % "
          "| cli start-up (s) "
          "| bare s per 60k epoch | authors-style NumPy s per 60k epoch |")
    print("| --- " * 16 + "|")
    ratios = []
    for c in cases:
        M, arms = c
        r = res[c]
        # ratios per round (same load), then the median
        tr = med([t / b for t, b in zip(r["trainer"], r["bare"])])
        cr = med([t / b for t, b in zip(r["cli"], r["bare"])])
        ratios += [tr, cr]
        ev = med([x["subset_eval"] + x["full_eval"] for x in r["timing"]]) * 100
        sn = med([x["snapshots"] for x in r["timing"]]) * 100
        e2e = med([x["samples"] / x["wall"] for x in r["cli_raw"]])
        cev = med([x["evaluate"] / x["wall"] for x in r["cli_raw"]]) * 100
        cpe = med([x["epoch_point"] / x["per_epoch"] for x in r["cli_raw"]]) * 100
        start = med([x["startup"] for x in r["cli_raw"]])
        bare_epoch = 60_000 * arms / med(r["bare"])
        print(f"| {M} | {arms} | {med(r['bare']):,.0f} | {med(r['trainer']):,.0f} | {tr:.2f} | {med(r['cpu']):.2f} "
              f"| {ev:.1f} | {sn:.1f} "
              f"| {med(r['cli']):,.0f} | {cr:.2f} | {e2e:,.0f} | {cev:.1f} | {cpe:.1f} | {start:.1f} "
              f"| {bare_epoch:.2f} "
              f"| {ref[c]:.1f} |")
    print(f"\nload average (1 min) before the run {load_before:.2f}, at its end {load_end:.2f} on {os.cpu_count()} "
          "cores (this benchmark alone adds ~2); ratios are taken within each round, then the median")
    print(f"min ratio live/bare: {min(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
