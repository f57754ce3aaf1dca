"""``khrbm train``: one model headless, resumable bit for bit; writes config.json, metrics.csv/json,
checkpoint.npz and result.json into ``--out``."""
from __future__ import annotations

import argparse
import csv
import json
import math
import signal
import sys
import time
from pathlib import Path

from ..config import ConfigError, RunConfig
from .common import add_config_flags, config_from_args, fail


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train one model headless, writing metrics and a checkpoint",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--out", type=Path, default=Path("runs/latest"), help="output directory")
    train.add_argument("--resume", type=Path, help="checkpoint .npz to continue from (bit for bit)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(train)
    train.set_defaults(handler=run)


def run(args) -> int:
    from ..data import DataError
    from ..train.run import CheckpointError, Run, history_json, read_checkpoint

    try:
        if args.resume:
            saved = RunConfig.from_json(str(read_checkpoint(args.resume)["config_json"]))
            cfg = config_from_args(args, base=saved)
            run = Run.load(args.resume, config=cfg)
        else:
            cfg = config_from_args(args)
            run = Run(cfg)
    except (ConfigError, CheckpointError, DataError) as exc:
        return fail(str(exc))

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.to_json() + "\n")
    if run.dataset.notice:
        print(f"note: {run.dataset.notice}", file=sys.stderr)
    warmup = getattr(run.stepper, "warmup", None)
    if warmup:
        print("compiling kernels (cached after the first time)…", file=sys.stderr)
        warmup()
    eval_seconds = 0.0
    if run.step == 0 and not run.history:
        t0 = time.perf_counter()
        run.evaluate()
        eval_seconds += time.perf_counter() - t0
    total = cfg.epochs * run.batches_per_epoch
    start_step, train_seconds = run.step, 0.0
    stop = _InterruptFlag()
    with stop:
        while run.step < total:
            epoch = run.step // run.batches_per_epoch
            bar = _progress(args, run, epoch, cfg.epochs)
            t0 = time.perf_counter()
            while run.step < (epoch + 1) * run.batches_per_epoch and not stop.requested:
                run.train_batch()
                if bar:
                    bar.update(1)
            train_seconds += time.perf_counter() - t0
            if bar:
                bar.close()
            if stop.requested:
                run.save(out / "checkpoint.npz")
                print(f"interrupted at step {run.step}; resume with --resume {out / 'checkpoint.npz'}",
                      file=sys.stderr)
                return 130
            if not run.is_finite():
                run.save(out / "checkpoint.npz")
                return fail(f"weights became NaN/inf in epoch {epoch + 1}; std init with a large eps0 or "
                             f"lr often diverges. Lower them (checkpoint of the diverged state in {out})")
            t0 = time.perf_counter()
            point = run.evaluate()              # the full validation set + the fixed training sample
            eval_seconds += time.perf_counter() - t0
            _write_metrics(out, run.history, history_json)
            run.save(out / "checkpoint.npz")
            print(_summary(epoch + 1, cfg.epochs, point), file=sys.stderr)
    final = run.history[-1]
    samples = (run.step - start_step) * cfg.batch_size
    result = {"config": cfg.to_dict(), "final": _clean(final), "steps": run.step,
              "train_seconds_this_session": round(train_seconds, 3),
              "evaluate_seconds_this_session": round(eval_seconds, 3),
              "samples_per_second": round(samples / train_seconds, 1) if train_seconds > 0 else None}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(_clean(final)))
    return 0


class _InterruptFlag:
    """Ctrl-C (SIGINT) sets ``requested``; the loop stops after the current minibatch and saves."""

    requested = False

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def _progress(args, run, epoch, epochs):
    if args.no_progress:
        return None
    from tqdm import tqdm
    done = run.step - epoch * run.batches_per_epoch
    return tqdm(total=run.batches_per_epoch, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                leave=False, file=sys.stderr)


def _summary(epoch, epochs, point) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"val MSE/pixel {point['val_mse']:.4f}", f"val CE {point['val_ce']:.4f}"]
    if not math.isnan(point["accuracy"]):
        parts.append(f"accuracy {100 * point['accuracy']:.2f}%")
    parts += [f"overlap {point['overlap']:.3f}", f"ε {point['eps']:.4g}"]
    return " · ".join(parts)


def _clean(point: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in point.items()}


def _write_metrics(out: Path, history: list[dict], history_json) -> None:
    (out / "metrics.json").write_text(history_json(history) + "\n")
    with open(out / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
