"""``khrbm train``: one model headless, resumable bit for bit; writes config.json, metrics.csv/json,
checkpoint.npz, result.json and run.json into ``--out``, which it locks while it writes there (every file
atomically), and records the run in the registry (``khrbm runs``). ``--lesson`` replays a lesson's events at
their steps, as the app's Trainer does."""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path

from ..config import ConfigError, RunConfig
from .common import add_config_flags, config_from_args, fail
from .runs import add_registry_flag

CHECKPOINT = "checkpoint.npz"
DIVERGED_CHECKPOINT = "checkpoint.diverged.npz"


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train one model headless, writing metrics and a checkpoint",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--out", type=Path, default=Path("runs/latest"), help="output directory")
    train.add_argument("--resume", type=Path, help="checkpoint .npz to continue from (bit for bit)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--lesson", metavar="FILE", help="play a lesson (a JSON/YAML file, or a shipped one: "
                       "story, bars, td_to_bu); its config is the base that --config and flags override")
    add_registry_flag(train)
    train.add_argument("--no-registry", action="store_true", help="do not record the run in the registry")
    add_config_flags(train)
    train.set_defaults(handler=run)


def run(args) -> int:
    """The handler: the run from the flags (or ``--resume``), trained into ``--out`` by :func:`train_into`.
    Bad input of any kind (config, checkpoint, data, output folder) is one line and exit 2."""
    from ..data import DataError
    from ..train.checkpoint import CheckpointError, read_checkpoint
    from ..train.lesson import LessonError
    from ..train.outputs import OutputError, OutputFolder
    from ..train.run import Run

    try:
        lesson = _lesson(args)
        if args.resume:
            saved = RunConfig.from_json(str(read_checkpoint(args.resume)["config_json"]))
            cfg = config_from_args(args, base=saved)
        else:
            cfg = config_from_args(args, base=lesson.setup()[0] if lesson else None)
        model = Run.load(args.resume, config=cfg) if args.resume else Run(cfg)    # bad input leaves no folder
        lesson_marks(lesson, model)
        with OutputFolder(args.out) as out:
            return train_into(out, model, progress=not args.no_progress, resumed_from=args.resume, lesson=lesson,
                              registry=False if args.no_registry else args.registry)
    except (ConfigError, CheckpointError, DataError, OutputError, LessonError) as exc:
        return fail(str(exc))


def train_into(out: Path, run, *, progress: bool = True, resumed_from: Path | None = None, lesson=None,
               registry=None, source: str = "train", group_uid: str = "", keep_every: int = 0) -> int:
    """Train ``run`` to its config's epochs in the folder ``out`` (held by an ``OutputFolder``): config.json
    first, then at every epoch end a metric point, metrics.csv/json and checkpoint.npz, last result.json.
    Returns the exit code: 0; 130/143 after Ctrl-C/SIGTERM (checkpoint at the current minibatch); 2 for
    bad input, a file the disk refuses, or divergence (``Run.divergence``, checked after every minibatch:
    checkpoint.npz stays the last finite state, the diverged one goes to checkpoint.diverged.npz).

    ``lesson``: a :class:`~khrbm.train.lesson.Lesson` whose events apply before the minibatches of their steps.
    Recording (:class:`khrbm.store.RunRecorder`): the run goes to the registry (``registry``: None for the
    default file, a path, a Registry, or False for none) as ``source`` (a sweep: "sweep" and its ``group_uid``),
    and to ``out/run.json``; a registry that cannot be written is said once and costs nothing else.
    ``keep_every``: also keep the checkpoint of every n-th epoch as ``checkpoints/epoch-NNNN.npz`` (a sweep's
    receptive fields over the epochs)."""
    import numpy as np

    from ..store import RunRecorder
    from ..train.lesson import LessonPlayer
    from ..train.outputs import OutputError, write_text_atomic
    from ..train.run import history_json

    cfg = run.config
    total = cfg.epochs * run.batches_per_epoch
    if run.step > total:
        return fail(f"the checkpoint has trained {run.epoch:g} epochs (step {run.step}), more than the "
                    f"{cfg.epochs} asked for; give --epochs {math.ceil(run.epoch)} or more to continue it")
    last_good = (resumed_from, run.step) if resumed_from else None     # (file, step) of the last finite state
    player = LessonPlayer(lesson_marks(lesson, run), run.step)
    recorder = RunRecorder(run, out, source=source, registry=registry, lesson=lesson, group_uid=group_uid,
                           resume=resumed_from is not None)
    stop = _StopFlag()
    try:
        recorder.start()
        write_text_atomic(out / "config.json", cfg.to_json() + "\n")
        if run.dataset.notice:
            print(f"note: {run.dataset.notice}", file=sys.stderr)
        eval_seconds = first_point_seconds = train_seconds = 0.0
        start_step = run.step
        with stop, np.errstate(over="ignore", invalid="ignore"):    # overflow is reported as divergence
            if run.step == total:
                print(f"note: the checkpoint is already at epoch {cfg.epochs} (step {run.step}); nothing to train",
                      file=sys.stderr)
            else:
                if cfg.backend != "numpy":        # the NumPy reference has nothing to compile
                    print("compiling kernels (cached after the first time)…", file=sys.stderr)
                if not _warm_up(run.stepper, stop):
                    recorder.end("interrupted", f"{signal.Signals(stop.received).name} while compiling")
                    print("khrbm: interrupted while compiling the kernels", file=sys.stderr)
                    return 128 + stop.received
            if not run.history and not stop.received:
                t0 = time.perf_counter()
                run.evaluate()
                eval_seconds = first_point_seconds = time.perf_counter() - t0
            while run.step < total:
                epoch = run.step // run.batches_per_epoch
                bar = _progress(progress, run, epoch, cfg.epochs)
                t0 = time.perf_counter()
                problem = None
                while run.step < (epoch + 1) * run.batches_per_epoch and not stop.received and not problem:
                    if player.next_step == run.step:
                        _play_lesson(player, run, recorder)
                    run.train_batch()
                    problem = run.divergence()
                    if bar:
                        bar.update(1)
                train_seconds += time.perf_counter() - t0
                if bar:
                    bar.close()
                if problem:
                    diverged = run.save(out / DIVERGED_CHECKPOINT)
                    recorder.end("diverged", problem)
                    return fail(f"{problem}; {_kept(last_good)}; the diverged state is in {diverged}")
                if stop.received:
                    path = run.save(out / CHECKPOINT)
                    recorder.end("interrupted", f"{signal.Signals(stop.received).name} at step {run.step}")
                    print(f"interrupted at step {run.step}; resume with --resume {path}", file=sys.stderr)
                    return 128 + stop.received
                t0 = time.perf_counter()
                point = run.evaluate()                  # the full validation set + the fixed training sample
                eval_seconds += time.perf_counter() - t0
                _write_metrics(out, run.history, history_json)
                last_good = (run.save(out / CHECKPOINT), run.step)
                if keep_every and (epoch + 1) % keep_every == 0:
                    run.save(out / "checkpoints" / f"epoch-{epoch + 1:04d}.npz")
                recorder.progress()
                print(_summary(epoch + 1, cfg.epochs, point), file=sys.stderr)
        final = run.history[-1]
        samples = (run.step - start_step) * cfg.batch_size
        result = {"config": cfg.to_dict(), "final": _clean(final), "steps": run.step,
                  "train_seconds_this_session": round(train_seconds, 3),
                  "evaluate_seconds_this_session": round(eval_seconds, 3),
                  "evaluate_seconds_step0": round(first_point_seconds, 3),     # of the above (0 when resumed)
                  "samples_per_second": round(samples / train_seconds, 1) if train_seconds > 0 else None}
        write_text_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")
        recorder.end("finished")
    except OutputError as exc:
        recorder.end("error", str(exc))
        return fail(f"{exc}; {_kept(last_good)}")
    finally:
        recorder.close()
    print(json.dumps(_clean(final)))
    return 0


def lesson_marks(lesson, run) -> tuple:
    """The lesson's events resolved for ``run`` (() without a lesson); LessonError if it does not fit."""
    from ..train.run import check_ell

    if lesson is None:
        return ()
    return lesson.resolve([run.config], run.batches_per_epoch, lambda cfg: check_ell(cfg, run.dataset))


def _lesson(args):
    """The lesson of ``--lesson``: a file, a shipped lesson, or one saved in the registry (None without one)."""
    from ..store import Registry, RegistryError
    from ..train.lesson import LessonError, load_lesson

    if not args.lesson:
        return None
    try:
        return load_lesson(args.lesson)
    except LessonError as exc:
        if args.no_registry or Path(args.lesson).suffix or len(Path(args.lesson).parts) > 1:
            raise
        try:
            with Registry(args.registry) as registry:
                return registry.lesson(args.lesson).lesson
        except RegistryError:
            raise exc from None


def _play_lesson(player, run, recorder) -> None:
    """Apply the lesson's events due before this minibatch as live changes (recorded); print their captions.
    Headless, ``pause`` is ignored; events for arm B (a compare run's plain arm) do not apply."""
    from ..train.snapshot import ARM_NAMES, Change

    for mark in player.due(run.step):
        if mark.set and mark.arm in ("both", ARM_NAMES[0]):
            for name, (old, new) in run.update(**mark.set).items():
                recorder.change(Change(run.step, run.epoch, ARM_NAMES[0], name, old, new))
        if mark.caption:
            print(f"lesson · epoch {run.epoch:.2f}: {mark.caption}", file=sys.stderr)


def _kept(last_good) -> str:
    if last_good is None:
        return "no finite checkpoint of this run was written yet"
    path, step = last_good
    return f"{path} keeps the last complete finite state (step {step})"


def _warm_up(stepper, stop) -> bool:
    """Compile the kernels (or load them from the disk cache) in a thread of their own while this thread waits
    for them or for ``stop``. A signal's handler runs on the main thread: raised inside the compiler, its
    exception would land in a ctypes callback, which swallows it (the signal lost, or the compile broken).
    False if a signal came first (the compiling thread is a daemon, left to end with the process)."""
    failure: list = []

    def work():
        try:
            stepper.warmup()
        except BaseException as exc:  # noqa: BLE001 - raised again on this thread
            failure.append(exc)

    thread = threading.Thread(target=work, name="khrbm-compile", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        if stop.received:
            return False
    if failure:
        raise failure[0]
    return True


class _StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM sets ``received`` (its number): compiling, :func:`_warm_up` stops waiting;
    training, the loop stops after the current minibatch and saves. Off the main thread (a sweep's Dask
    worker) signals cannot be caught and nothing is installed."""

    received = 0

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
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
