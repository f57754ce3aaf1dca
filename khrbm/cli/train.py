"""``khrbm train``: one model headless, resumable bit for bit; writes config.json, metrics.csv/json,
checkpoint.npz and result.json into ``--out``, which it locks while it writes there (every file atomically)."""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import signal
import sys
import time
from pathlib import Path

from ..config import ConfigError, RunConfig
from .common import add_config_flags, config_from_args, fail

CHECKPOINT = "checkpoint.npz"
DIVERGED_CHECKPOINT = "checkpoint.diverged.npz"


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train one model headless, writing metrics and a checkpoint",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--out", type=Path, default=Path("runs/latest"), help="output directory")
    train.add_argument("--resume", type=Path, help="checkpoint .npz to continue from (bit for bit)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(train)
    train.set_defaults(handler=run)


def run(args) -> int:
    """The handler: the run from the flags (or ``--resume``), trained into ``--out`` by :func:`train_into`.
    Bad input of any kind (config, checkpoint, data, output folder) is one line and exit 2."""
    from ..data import DataError
    from ..train.checkpoint import CheckpointError, read_checkpoint
    from ..train.outputs import OutputError, OutputFolder
    from ..train.run import Run

    try:
        if args.resume:
            saved = RunConfig.from_json(str(read_checkpoint(args.resume)["config_json"]))
            cfg = config_from_args(args, base=saved)
        else:
            cfg = config_from_args(args)
        model = Run.load(args.resume, config=cfg) if args.resume else Run(cfg)    # bad input leaves no folder
        with OutputFolder(args.out) as out:
            return train_into(out, model, progress=not args.no_progress, resumed_from=args.resume)
    except (ConfigError, CheckpointError, DataError, OutputError) as exc:
        return fail(str(exc))


def train_into(out: Path, run, *, progress: bool = True, resumed_from: Path | None = None) -> int:
    """Train ``run`` to its config's epochs in the folder ``out`` (held by an ``OutputFolder``): config.json
    first, then at every epoch end a metric point, metrics.csv/json and checkpoint.npz, last result.json.
    Returns the exit code: 0; 130/143 after Ctrl-C/SIGTERM (checkpoint at the current minibatch); 2 for
    bad input, a file the disk refuses, or divergence (``Run.divergence``, checked after every minibatch:
    checkpoint.npz stays the last finite state, the diverged one goes to checkpoint.diverged.npz)."""
    import numpy as np

    from ..train.outputs import OutputError, write_text_atomic
    from ..train.run import history_json

    cfg = run.config
    total = cfg.epochs * run.batches_per_epoch
    if run.step > total:
        return fail(f"the checkpoint has trained {run.epoch:g} epochs (step {run.step}), more than the "
                    f"{cfg.epochs} asked for; give --epochs {math.ceil(run.epoch)} or more to continue it")
    last_good = (resumed_from, run.step) if resumed_from else None     # (file, step) of the last finite state
    try:
        write_text_atomic(out / "config.json", cfg.to_json() + "\n")
        if run.dataset.notice:
            print(f"note: {run.dataset.notice}", file=sys.stderr)
        if run.step == total:
            print(f"note: the checkpoint is already at epoch {cfg.epochs} (step {run.step}); nothing to train",
                  file=sys.stderr)
        else:
            if cfg.backend != "numpy":        # the NumPy reference has nothing to compile
                print("compiling kernels (cached after the first time)…", file=sys.stderr)
            run.stepper.warmup()
        if not run.history:
            run.evaluate()
        start_step, train_seconds = run.step, 0.0
        stop = _StopFlag()
        with stop, np.errstate(over="ignore", invalid="ignore"):    # overflow is reported as divergence
            while run.step < total:
                epoch = run.step // run.batches_per_epoch
                bar = _progress(progress, run, epoch, cfg.epochs)
                t0 = time.perf_counter()
                problem = None
                while run.step < (epoch + 1) * run.batches_per_epoch and not stop.received and not problem:
                    run.train_batch()
                    problem = run.divergence()
                    if bar:
                        bar.update(1)
                train_seconds += time.perf_counter() - t0
                if bar:
                    bar.close()
                if problem:
                    diverged = run.save(out / DIVERGED_CHECKPOINT)
                    return fail(f"{problem}; {_kept(last_good)}; the diverged state is in {diverged}")
                if stop.received:
                    path = run.save(out / CHECKPOINT)
                    print(f"interrupted at step {run.step}; resume with --resume {path}", file=sys.stderr)
                    return 128 + stop.received
                point = run.evaluate()
                _write_metrics(out, run.history, history_json)
                last_good = (run.save(out / CHECKPOINT), run.step)
                print(_summary(epoch + 1, cfg.epochs, point), file=sys.stderr)
        final = run.history[-1]
        samples = (run.step - start_step) * cfg.batch_size
        result = {"config": cfg.to_dict(), "final": _clean(final), "steps": run.step,
                  "train_seconds_this_session": round(train_seconds, 3),
                  "samples_per_second": round(samples / train_seconds, 1) if train_seconds > 0 else None}
        write_text_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")
    except OutputError as exc:
        return fail(f"{exc}; {_kept(last_good)}")
    print(json.dumps(_clean(final)))
    return 0


def _kept(last_good) -> str:
    if last_good is None:
        return "no finite checkpoint of this run was written yet"
    path, step = last_good
    return f"{path} keeps the last complete finite state (step {step})"


class _StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM sets ``received`` (its number); the loop stops after the current minibatch
    and saves."""

    received = 0

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _progress(progress: bool, run, epoch, epochs):
    if not progress:
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
    from ..train.outputs import write_text_atomic

    write_text_atomic(out / "metrics.json", history_json(history) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(out / "metrics.csv", table.getvalue())
