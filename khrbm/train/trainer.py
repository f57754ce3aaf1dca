"""Threaded training of one run, or of a paired A/B of two runs, with immutable snapshots for the app.

A :class:`Trainer` owns one background thread (daemon, named ``khrbm-trainer-N``) that does all the
work: compiling the kernels, the minibatches, the evaluations and the snapshots. Every public method
can be called from any thread; none of them runs training on the caller's thread.

Controls — :meth:`Trainer.start`, :meth:`~Trainer.pause` (= :meth:`~Trainer.stop`), :meth:`~Trainer.resume`,
:meth:`~Trainer.step`, :meth:`~Trainer.step_epoch`, :meth:`~Trainer.update` — put a command in a queue and
return at once; the loop drains the queue between minibatches, in order. :meth:`~Trainer.reset`,
:meth:`~Trainer.load_checkpoint` and :meth:`~Trainer.save_checkpoint` return once the loop has carried them
out (they wait for the current minibatch, or for the kernels' first compilation). :meth:`~Trainer.sync`
waits until every command issued so far has been handled (requested single steps included).

Snapshots: ``trainer.snapshot`` is the latest :class:`Snapshot`, a frozen object whose arrays are read-only
copies; the loop builds a new one and swaps the reference (atomic in CPython), so a reader never sees a
half-written state. ``snapshot.version`` increments on every publish.

A/B (compare mode): two :class:`~khrbm.run.Run` objects with identical model fields (``MODEL_FIELDS``: same
seed, so the same initial weights and the same minibatch order) share one dataset and are stepped in
lockstep, one minibatch of A then the same minibatch of B. Live settings may differ between the arms.

Checkpoints (``save_checkpoint``): written atomically (temp file in the same folder, fsync, rename).
One run: exactly the format of :meth:`khrbm.run.Run.save` (so ``Run.load`` and the CLI read it) plus a
``trainer_changes`` entry (the change log as JSON). A/B: one ``.npz`` holding each arm's
:meth:`~khrbm.run.Run.state_arrays` under the prefixes ``A.`` and ``B.``, plus ``arms`` (``"A,B"``) and
``trainer_changes``. ``load_checkpoint`` accepts both and puts the trainer in the mode of the file.

Lessons (:mod:`khrbm.train.lesson`, :meth:`Trainer.set_lesson`): each event is applied on the loop thread right
before the minibatch of its step, as ordinary live changes (logged in the change log); an event with ``pause``
stops the trainer there. A reset replays the lesson from its start; a loaded checkpoint continues it.

Recording (``recorder``, e.g. :class:`khrbm.store.TrainerRecorder`): an object whose methods the loop thread
calls — ``published(snapshot, save)`` after every publish, ``ending(snapshot, save)`` just before the arms are
replaced (reset, load_checkpoint), ``closed()`` when the loop ends. ``save(path)`` writes a checkpoint of the
current arms. A recorder must return quickly; anything it raises is logged, never stops training.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import FIELD, FIELDS, MID_RUN_FIELDS, RUN_WIDE_FIELDS, ConfigError, RunConfig
from ..data import Dataset, load_dataset
from .checkpoint import CheckpointError, changes_json, read_trainer_checkpoint, write_npz_atomic
from .competition import Thinned
from .lesson import Lesson, LessonError, LessonPlayer
from .run import HISTORY_KEYS, XI_KEYS, Run, check_ell, history_columns
from .snapshot import ARM_NAMES, ArmSnapshot, Change, CompetitionRecord, Snapshot, frozen_copies, readonly

log = logging.getLogger(__name__)

# Fields both arms of an A/B must share (everything that is not live: the model, the data, the seed).
MODEL_FIELDS = tuple(f.name for f in FIELDS if not f.live)
EVAL_SHARE = 0.05          # subsample points take at most this share of the running loop's time
FULL_EVAL_SHARE = 0.05     # full-set points too (on 60k MNIST: one per epoch if it costs <= 5 % of an epoch)
SNAPSHOT_SHARE = 0.01      # publishing snapshots while running (plus one at least every snapshot_interval)
EVALS_PER_EPOCH = 10       # at most this many subsample points per epoch
THROUGHPUT_WINDOW = 2.0    # seconds of the sliding window of samples/s
COMPETITION_INTERVAL = 2.0  # while running, a snapshot's CompetitionRecord (the M×M or N×N matrix) is renewed at
#                             most this often, and only when it changed (within the snapshots' share of time)
RF_HISTORY = 8             # weights kept per arm at thinned metric points (a unit's receptive field over time)
_counter = itertools.count(1)


class ResetNeeded(ConfigError):
    """A setting that needs a new model (M, init, dataset, task, dtype, …) was changed while training."""

    def __init__(self, field_name: str, message: str | None = None):
        self.field = field_name
        symbol = FIELD[field_name].symbol if field_name in FIELD else ""
        label = f"{field_name} ({symbol})" if symbol else field_name
        ValueError.__init__(self, message or f"{label} needs a reset (Reset applies it): it changes the model "
                                             f"and cannot change during training")


def check_pair(config_a: RunConfig, config_b: RunConfig | None) -> tuple:
    """The configs of the arms; ConfigError unless an A/B pair shares every model field."""
    configs = []
    for name, cfg in zip(ARM_NAMES, (config_a, config_b)):
        if cfg is None:
            continue
        if isinstance(cfg, dict):
            cfg = RunConfig.from_dict(cfg)
        if not isinstance(cfg, RunConfig):
            raise TypeError(f"config_{name.lower()} must be a RunConfig, not {type(cfg).__name__}")
        configs.append(cfg)
    if not configs or config_a is None:
        raise TypeError("config_a is required")
    if len(configs) == 2:
        a, b = configs
        for f in MODEL_FIELDS:
            if getattr(a, f) != getattr(b, f):
                raise ConfigError(f, f"the A/B arms must share the model, data and seed: A has "
                                     f"{getattr(a, f)!r}, B has {getattr(b, f)!r}")
    return tuple(configs)


class _Budget:
    """A share of the running loop's time for one kind of side work (subsample points, full-set points,
    snapshots). Credit grows by ``share`` × the loop's time and is capped at the expected cost of one job
    (an average of its measured costs), so jobs never come in a burst; a job is due when the credit covers
    it, and its measured time is charged. Over any stretch the work takes at most ``share`` of the loop's
    time plus one job."""

    def __init__(self, share: float):
        self.share = share
        self.credit = 0.0
        self.cost = 0.0           # expected seconds of one job (0: not measured yet, so the first is due)
        self.spent = 0.0          # seconds charged so far

    def due(self) -> bool:
        return self.credit >= self.cost

    def observe(self, seconds: float):
        self.cost = seconds if self.cost == 0 else 0.7 * self.cost + 0.3 * seconds

    def charge(self, seconds: float):
        self.observe(seconds)
        self.credit -= seconds
        self.spent += seconds

    def earn(self, seconds: float):
        self.credit = min(self.credit + self.share * seconds, self.cost)


class _Core:
    """All state and the loop. Holds no reference to the Trainer, so a dropped Trainer can be collected
    (its weakref.finalize then closes this core and joins the thread)."""

    def __init__(self, configs, dataset, snapshot_every, snapshot_interval, probe_size, full_eval_every=1,
                 recorder=None, lesson: Lesson | None = None):
        if full_eval_every < 0:
            raise ValueError(f"full_eval_every must be >= 0, got {full_eval_every}")
        self.full_eval_every = int(full_eval_every)
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError(f"snapshot_every must be None or >= 1, got {snapshot_every}")
        if not snapshot_interval > 0:
            raise ValueError(f"snapshot_interval must be > 0, got {snapshot_interval}")
        if probe_size < 1:
            raise ValueError(f"probe_size must be >= 1, got {probe_size}")
        self.snapshot_every = None if snapshot_every is None else int(snapshot_every)
        self.snapshot_interval = float(snapshot_interval)
        self.probe_size = int(probe_size)
        self.cv = threading.Condition(threading.Lock())
        # shared, guarded by cv
        self.queue: list = []          # ("op", fn, future) | ("update", i, config) | ("start",) | ...
        self.issued = 1                # commands queued so far (the first one: compile and evaluate step 0)
        self.handled = 0               # commands whose effect is complete
        self.closing = False
        self.state = "compiling"
        self.pending = tuple(configs)  # configs including queued live changes
        # loop-owned (read elsewhere only as plain attributes)
        self.dataset = dataset
        self.runs: list[Run] = self._build_runs(configs)
        self.dataset = self.runs[0].dataset
        self.running = False
        self.steps_left = 0
        self.message = ""
        self.changes: list[Change] = []
        self.version = 0
        self.competition_version = 0   # CompetitionRecord.version: grows with every new record
        self.dirty = False
        self.recorder = recorder
        self.lesson: Lesson | None = lesson      # played from the end of _prepare on
        self.player: LessonPlayer | None = None
        self.lesson_base: tuple = ()            # the configs the lesson started from (what a reset goes back to)
        self._reset_bookkeeping()
        if lesson is not None:
            self.resolve_lesson(lesson)          # LessonError on the caller's thread
        self.state, self.message = "compiling", self._compiling_message()
        self.snapshot = self._build_snapshot()
        self.thread = threading.Thread(target=self._loop, name=f"khrbm-trainer-{next(_counter)}", daemon=True)
        self.thread.start()

    # ----------------------------------------------------------------------------------------------
    # caller side
    def _build_runs(self, configs, dataset: Dataset | None = None) -> list[Run]:
        if dataset is None:
            dataset = self.dataset
            if dataset is None or dataset.name != configs[0].dataset:
                dataset = load_dataset(configs[0].dataset)
        return [Run(cfg, dataset) for cfg in configs]

    def _compiling_message(self) -> str:
        if any(r.config.backend == "numba" for r in self.runs):
            return "compiling the Numba kernels (the first run of a session takes a while)"
        return "preparing"

    def command(self, *cmd, clear: bool = False):
        with self.cv:
            if self.closing:
                return
            if clear:
                self.queue = [c for c in self.queue if c[0] in ("op", "update")]
            self.queue.append(cmd)
            self.issued += 1
            self.cv.notify_all()

    def submit(self, fn: Callable, *, clear_control: bool = False, timeout=None):
        """Run ``fn()`` on the loop thread between minibatches; return its result (or raise its error)."""
        if threading.current_thread() is self.thread:
            return fn()
        fut: Future = Future()
        with self.cv:
            if self.closing:
                raise RuntimeError("the trainer is closed")
            if clear_control:
                self.queue = [c for c in self.queue if c[0] in ("op", "update")]
            self.queue.append(("op", fn, fut))
            self.issued += 1
            self.cv.notify_all()
        return fut.result(timeout)

    def busy_locked(self) -> bool:
        return (self.running or self.steps_left > 0 or self.state == "running"
                or any(c[0] in ("start", "steps", "epoch") for c in self.queue))

    def sync(self, timeout=None):
        with self.cv:
            target = self.issued
            if not self.cv.wait_for(lambda: self.handled >= target or not self.thread.is_alive(), timeout):
                raise TimeoutError(f"the trainer did not finish its commands within {timeout} s "
                                   f"(state {self.snapshot.state})")
            return self.snapshot

    def wait_for(self, predicate, timeout=None):
        with self.cv:
            ok = self.cv.wait_for(lambda: predicate(self.snapshot) or not self.thread.is_alive(), timeout)
            snap = self.snapshot
        if not ok or not predicate(snap):
            raise TimeoutError(f"condition not reached within {timeout} s (state {snap.state}: {snap.message})")
        return snap

    def close(self, timeout=None):
        with self.cv:
            self.closing = True
            self.cv.notify_all()
        if self.thread is not threading.current_thread() and self.thread.is_alive():
            self.thread.join(timeout)

    # ----------------------------------------------------------------------------------------------
    # loop thread
    def _reset_bookkeeping(self):
        self.last_mode = [r.config.kh_mode if r.config.kh_mode != "off" else self._mode_with_counts(r)
                          for r in self.runs]
        self._hist_cache: dict = {}
        self._xi_cache: dict = {}
        probe_x, probe_y = self.runs[0].split("val", self.probe_size)
        self.probe_input = readonly(np.array(probe_x, np.float32))
        self.probe_V = [r.visible(probe_x, probe_y) for r in self.runs]
        self.window: collections.deque = collections.deque()
        self.samples = 0
        self.loop_seconds = 0.0       # time spent in minibatches and the side work they call for
        self.batch_time = 0.0         # average time of one lockstep minibatch (training only)
        self.budget_subset, self.budget_full = _Budget(EVAL_SHARE), _Budget(FULL_EVAL_SHARE)
        self.budget_publish = _Budget(SNAPSHOT_SHARE)
        self.last_eval_step = self.runs[0].step
        self.since_publish = 0
        self.last_publish = time.monotonic()
        self.probe_visible = [readonly(np.array(v, np.float32)) for v in self.probe_V]
        self.rf_history = [Thinned(RF_HISTORY) for _ in self.runs]      # (step, W copy) per arm
        self._competition_cache: dict = {}       # arm -> (key, CompetitionRecord, time.monotonic() of the copy)
        self._keep_weights()

    @staticmethod
    def _mode_with_counts(run: Run):
        used = [m for m in ("td", "bu") if run.win_counts[m].any()]
        return used[0] if len(used) == 1 else None

    def _loop(self):
        try:
            self._prepare()
        except Exception as exc:  # noqa: BLE001 - reported in the snapshot
            self._fail(exc)
        with self.cv:
            self.handled = max(self.handled, 1)
            self.cv.notify_all()
        try:
            while True:
                with self.cv:
                    while not (self.closing or self.queue or self.running or self.steps_left > 0):
                        self.cv.wait()
                    if self.closing:
                        break
                    queue, self.queue = self.queue, []
                    seq = self.issued
                try:
                    self._process(queue)
                    if self.dirty:
                        self._publish()
                    if self.running or self.steps_left > 0:
                        self._advance()
                except Exception as exc:  # noqa: BLE001 - reported in the snapshot; the thread idles on
                    self._fail(exc)
                if self.steps_left == 0:
                    with self.cv:
                        self.handled = max(self.handled, seq)
                        self.cv.notify_all()
        finally:
            self._shutdown()

    def _shutdown(self):
        with self.cv:
            self.closing = True
            queue, self.queue = self.queue, []
        for cmd in queue:
            if cmd[0] == "op" and not cmd[2].done():
                cmd[2].set_exception(RuntimeError("the trainer was closed"))
        self.running, self.steps_left = False, 0
        self._set_state("closed", "closed")
        try:
            self._publish()
        except Exception:  # noqa: BLE001
            log.exception("final snapshot failed")
        self._tell("closed")
        with self.cv:
            self.handled = self.issued
            self.cv.notify_all()

    def _prepare(self):
        """Compile the kernels (state compiling), evaluate step 0 if there is no history yet, then settle."""
        self._set_state("compiling", self._compiling_message())
        self._publish()
        for run in self.runs:
            warmup = getattr(run.stepper, "warmup", None)
            if warmup is not None:
                warmup()
        if not self.runs[0].history:
            self._evaluate(full=True)
        self.state = "idle"
        self._settle(force_message=True)
        self._restart_lesson()
        self._publish()

    def _set_state(self, state: str, message: str):
        with self.cv:
            self.state = state
            self.message = message
            self.dirty = True

    def _default_message(self, state: str) -> str:
        run = self.runs[0]
        if state == "idle":
            return "ready"
        if state == "running":
            return "running"
        if state == "paused":
            return f"paused at step {run.step} (epoch {run.epoch:.2f})"
        if state == "finished":
            return f"finished {run.config.epochs} epochs (step {run.step})"
        return self.message

    def _finished(self) -> bool:
        return all(r.step >= r.config.epochs * r.batches_per_epoch for r in self.runs)

    def _settle(self, force_message=False, message=None):
        """Derive the state from the loop's intent and the runs' progress (terminal states stay)."""
        if self.state in ("diverged", "error", "closed", "compiling"):
            return
        if self._finished():
            self.running, self.steps_left = False, 0
            new = "finished"
        elif self.running or self.steps_left > 0:
            new = "running"
        else:
            new = "paused" if self.runs[0].step > 0 else "idle"
        if new != "running":
            self.window.clear()
        if new != self.state or force_message or message:
            self._set_state(new, message or self._default_message(new))

    def _blocked(self) -> bool:
        return self.state in ("diverged", "error", "closed", "compiling")

    def _process(self, queue):
        for cmd in queue:
            kind = cmd[0]
            if kind == "op":
                _, fn, fut = cmd
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(exc)
            elif kind == "update":
                self._apply_update(cmd[1], cmd[2])
            elif kind == "start":
                if not self._blocked() and not self._finished():
                    self.running, self.steps_left = True, 0
            elif kind in ("pause", "stop"):
                was = self.running or self.steps_left > 0
                self.running, self.steps_left = False, 0
                if was and self.state == "running":
                    run = self.runs[0]
                    self._settle(message=f"{'stopped' if kind == 'stop' else 'paused'} at step {run.step} "
                                         f"(epoch {run.epoch:.2f})")
            elif kind == "steps":
                if not self._blocked():
                    self.running = False
                    self.steps_left += cmd[1]
            elif kind == "epoch":
                if not self._blocked():
                    self.running = False
                    run = self.runs[0]
                    target = run.step + self.steps_left
                    bpe = run.batches_per_epoch
                    self.steps_left = (target // bpe + 1) * bpe - run.step
        if self.steps_left > 0:
            run = self.runs[0]
            self.steps_left = min(self.steps_left, max(0, run.config.epochs * run.batches_per_epoch - run.step))
        self._settle()

    def _apply_update(self, i: int, config: RunConfig):
        """Arm i takes ``config``, checked by :meth:`Trainer.update`; every setting that changed is logged."""
        if i >= len(self.runs):
            return
        run = self.runs[i]
        try:
            diff = run.apply(config)
        except ConfigError as exc:   # queued for a model that a reset or a load has replaced since
            log.warning("live change to arm %s dropped: %s", ARM_NAMES[i], exc)
            return
        for name, (old, new) in diff.items():
            self.changes.append(Change(run.step, run.epoch, ARM_NAMES[i], name, old, new))
            if name == "kh_mode" and new != "off":
                run.reset_counts(new)
                self.last_mode[i] = new
        if diff:
            self.dirty = True
        if "epochs" in diff and self.state == "finished" and not self._finished():
            self.state = "paused"
            self._settle(force_message=True)

    def _advance(self):
        """One lockstep minibatch of every arm, then the checks, evaluations and snapshots it calls for
        (each kind within its share of the loop's time: :class:`_Budget`)."""
        if self.player is not None and self.player.next_step == self.runs[0].step and self._play_lesson():
            return
        t0 = time.perf_counter()
        n = 0
        for run in self.runs:
            n += len(run.batch_indices(run.step))
            run.train_batch()
        if self.steps_left > 0:
            self.steps_left -= 1
        dt = time.perf_counter() - t0
        self.batch_time = dt if self.batch_time == 0 else 0.95 * self.batch_time + 0.05 * dt
        now = time.monotonic()
        self.samples += n
        self.window.append((now, self.samples))
        while len(self.window) > 2 and now - self.window[0][0] > THROUGHPUT_WINDOW:
            self.window.popleft()
        self.since_publish += 1
        for i, run in enumerate(self.runs):
            problem = run.divergence()
            if problem:
                self.running, self.steps_left = False, 0
                self.window.clear()
                prefix = f"arm {ARM_NAMES[i]}: " if len(self.runs) > 1 else ""
                self._set_state("diverged", f"{prefix}{problem}; lower η or ε0 and Reset")
                self._publish()
                return
        run = self.runs[0]
        epoch, within = divmod(run.step, run.batches_per_epoch)
        if within == 0:
            last = run.step >= run.config.epochs * run.batches_per_epoch
            if last or (self.full_eval_every and epoch % self.full_eval_every == 0 and self._full_point_due()):
                self._evaluate(full=True)
            # other epoch ends get no point, so that history["full"] = (step at an epoch end)
        elif (run.step - self.last_eval_step >= max(1, round(run.batches_per_epoch / EVALS_PER_EPOCH))
              and self.budget_subset.due()):
            self._evaluate(full=False)
        was = self.state
        self._settle()
        if (self.state != was or self.steps_left == 0 and not self.running
                or now - self.last_publish >= self.snapshot_interval
                or (self.budget_publish.due() if self.snapshot_every is None
                    else self.since_publish >= self.snapshot_every)):
            self._publish()
        dt = time.perf_counter() - t0
        self.loop_seconds += dt
        for budget in (self.budget_subset, self.budget_full, self.budget_publish):
            budget.earn(dt)

    def _full_point_due(self) -> bool:
        """A full-set point fits its budget: FULL_EVAL_SHARE of the loop's time, or it costs at most that
        share of the time the arms take to train on 60,000 images (so cheap points come every epoch)."""
        run = self.runs[0]
        epoch_60k = 60_000 / run.config.batch_size * self.batch_time
        return self.budget_full.due() or self.budget_full.cost <= FULL_EVAL_SHARE * epoch_60k

    def _evaluate(self, full: bool):
        """Append a metric point to every arm: a subsample of eval_size validation and training images, or
        (at epoch boundaries) the full validation set plus the training sample; its time is charged to
        the budget of its kind (the point of step 0, taken before training, only sets the estimate)."""
        t0 = time.perf_counter()
        for run in self.runs:
            n = run.config.eval_size
            run.evaluate(n_val=None if full else n, n_train=n)
        self._keep_weights()
        self.last_eval_step = self.runs[0].step
        self.dirty = True
        seconds = time.perf_counter() - t0
        budget = self.budget_full if full else self.budget_subset
        if self.runs[0].step == 0:
            budget.observe(seconds)
        else:
            budget.charge(seconds)

    def _keep_weights(self):
        """Offer every arm's W at this step to its thinned receptive-field history (once per step)."""
        for run, kept in zip(self.runs, self.rf_history):
            if not kept.items or kept.items[-1][0] != run.step:
                kept.offer(lambda: (run.step, readonly(run.params.W.copy())))

    def timing(self) -> dict:
        """Seconds spent since the last reset by the running loop, and by its evaluations and snapshots."""
        return {"loop": self.loop_seconds, "subset_eval": self.budget_subset.spent,
                "full_eval": self.budget_full.spent, "snapshots": self.budget_publish.spent}

    def _fail(self, exc: BaseException):
        log.error("trainer loop failed", exc_info=exc)
        self.running, self.steps_left = False, 0
        text = str(exc).strip().splitlines()
        self._set_state("error", f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
                        + " — Reset (or load a checkpoint) to continue")
        try:
            self._publish()
        except Exception:  # noqa: BLE001
            log.exception("snapshot after the error failed")
            self._publish(keep_arms=True)

    # ----------------------------------------------------------------------------------------------
    # snapshots
    def _columns(self, cache: dict, i: int, run: Run, rows: list, keys, full_col: bool) -> dict:
        key = (id(run), len(rows), rows[-1]["step"] if rows else -1)
        hit = cache.get(i)
        if hit is None or hit[0] != key:
            cols = history_columns(rows, keys)
            if full_col:
                cols["full"] = (cols["step"] % run.batches_per_epoch == 0).astype(np.float64)
            hit = (key, {k: readonly(v) for k, v in cols.items()})
            cache[i] = hit
        return dict(hit[1])

    def _arm_snapshot(self, i: int, run: Run) -> ArmSnapshot:
        p = run.params
        (W, a, b), crc = frozen_copies(p.W, p.a, p.b)
        with np.errstate(all="ignore"):
            recon = np.array(run.reconstruct(self.probe_V[i])[:, : run.n_pixels], np.float32)
        mode = run.config.kh_mode if run.config.kh_mode != "off" else self.last_mode[i]
        if mode is None:
            mode, win, inh = "off", np.zeros(0, np.int64), np.zeros(0, np.int64)
        else:
            win, inh = run.win_counts[mode].copy(), run.inhibit_counts[mode].copy()
        mode_counts = {m: (readonly(run.win_counts[m].copy()), readonly(run.inhibit_counts[m].copy())) for m in ("td", "bu")}
        return ArmSnapshot(
            name=ARM_NAMES[i], config=run.config, step=run.step, epoch=run.epoch, eps=float(run.settings().eps),
            W=W, n_pixels=run.n_pixels, image_shape=tuple(run.dataset.image_shape),
            probe_input=self.probe_input, probe_recon=readonly(recon),
            history=self._columns(self._hist_cache, i, run, run.history, HISTORY_KEYS, True),
            xi=self._columns(self._xi_cache, i, run, run.xi_history, XI_KEYS, False),
            counts_mode=mode, win_counts=readonly(win), inhibit_counts=readonly(inh), a=a, b=b,
            checksum=crc,
            n_labels=run.n_labels, batches_per_epoch=run.batches_per_epoch, mode_counts=mode_counts,
            competition=self._competition_record(i, run, mode), probe_visible=self.probe_visible[i])

    def _competition_record(self, i: int, run: Run, mode: str) -> CompetitionRecord:
        """Arm i's CompetitionRecord: the last one while nothing changed, or while running and younger than
        COMPETITION_INTERVAL; else fresh copies (the matrix, the count history; the kept weights are shared)."""
        kept = self.rf_history[i]
        key = (id(run), run.competition_version, mode, kept.seen)
        now = time.monotonic()
        last = self._competition_cache.get(i)
        if last is not None and (last[0] == key or self.state == "running" and now - last[2] < COMPETITION_INTERVAL):
            return last[1]
        c = run.competition.get(mode)           # None while KH never ran ("off")
        matrix = readonly(c.matrix.copy()) if c is not None and c.matrix is not None else None
        steps, wins, inhibited = (readonly(x) for x in (c.history_arrays() if c is not None else
                                                        (np.zeros(0, np.int64), np.zeros((0, 0), np.int32),
                                                         np.zeros((0, 0), np.int32))))
        self.competition_version += 1
        record = CompetitionRecord(
            version=self.competition_version, step=run.step, mode=mode, matrix=matrix, count_steps=steps,
            count_wins=wins, count_inhibited=inhibited,
            rf_steps=readonly(np.array([s for s, _ in kept.items], np.int64)),
            rf_weights=tuple(w for _, w in kept.items))
        self._competition_cache[i] = (key, record, now)
        return record

    def _rate(self) -> float:
        if self.state != "running" or len(self.window) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self.window[0], self.window[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def _build_snapshot(self, keep_arms=False) -> Snapshot:
        arms = self.snapshot.arms if keep_arms else tuple(self._arm_snapshot(i, r) for i, r in enumerate(self.runs))
        player = self.player
        return Snapshot(version=self.version, state=self.state, message=self.message, samples_per_s=self._rate(),
                        changes=tuple(self.changes), arms=arms, notice=self.runs[0].dataset.notice, time=time.time(),
                        caption=player.caption if player else "", lesson=player.marks if player else ())

    def _publish(self, keep_arms=False):
        t0 = time.perf_counter()
        self.version += 1
        snap = self._build_snapshot(keep_arms)
        with self.cv:
            self.snapshot = snap
            self.cv.notify_all()
        if self.state == "running":
            self.budget_publish.charge(time.perf_counter() - t0)
        self.dirty = False
        self.since_publish = 0
        self.last_publish = time.monotonic()
        self._tell("published", snap, self.save)

    # ----------------------------------------------------------------------------------------------
    # ops (run on the loop thread)
    def install(self, runs: list[Run], changes: list, message: str | None):
        if self.recorder is not None:
            self._tell("ending", self._build_snapshot(), self.save)
        self.runs = runs
        self.dataset = runs[0].dataset
        self.changes = list(changes)
        self.running, self.steps_left = False, 0
        self._reset_bookkeeping()
        self.state = "compiling"
        try:
            self._prepare()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            return
        if message:
            self._settle(message=message)
            self._publish()

    # ----------------------------------------------------------------------------------------------
    # lessons and the recorder (loop thread)
    def start_lesson(self, lesson: Lesson | None):
        """Attach ``lesson`` (None: detach) at the current step: earlier events count as played, events due
        now are applied at once. LessonError if it does not fit the runs."""
        if lesson is None:
            self.lesson, self.player = None, None
        else:
            self.lesson, self.player = lesson, LessonPlayer(self.resolve_lesson(lesson), self.runs[0].step)
            if self.runs[0].step == 0 or not self.lesson_base:
                self.lesson_base = tuple(r.config for r in self.runs)
            self._play_lesson()
        self.dirty = True

    def resolve_lesson(self, lesson: Lesson) -> tuple:
        run = self.runs[0]
        return lesson.resolve([r.config for r in self.runs], run.batches_per_epoch,
                              lambda cfg: check_ell(cfg, run.dataset))

    def _restart_lesson(self):
        """Replay the lesson on newly installed runs from their step (dropped, saying why, if it no longer fits)."""
        if self.lesson is None:
            return
        try:
            self.start_lesson(self.lesson)
        except LessonError as exc:
            self.lesson, self.player = None, None
            self._set_state(self.state, f"lesson dropped: {exc}")

    def _play_lesson(self) -> bool:
        """Apply the lesson's events due at this step, as logged live changes; True if one pauses here."""
        marks = self.player.due(self.runs[0].step)
        for m in marks:
            for i in range(len(self.runs)):
                if m.set and m.arm in ("both", ARM_NAMES[i]):
                    self._apply_update(i, self.runs[i].config.replace(**m.set))   # checked by Lesson.resolve
                    with self.cv:
                        pending = list(self.pending)
                        pending[i] = pending[i].replace(**m.set)
                        self.pending = tuple(pending)
        self.dirty = self.dirty or bool(marks)
        if not any(m.pause for m in marks):
            return False
        self.running, self.steps_left = False, 0
        run = self.runs[0]
        self._settle(message=f"lesson: paused at step {run.step} (epoch {run.epoch:.2f}) — press Start to go on")
        self._publish()
        return True

    def _tell(self, hook: str, *args):
        """Call the recorder's ``hook`` on the loop thread; what it raises is logged, never passed on."""
        if self.recorder is None:
            return
        try:
            getattr(self.recorder, hook)(*args)
        except Exception:  # noqa: BLE001 - recording must never stop training
            log.exception("the run recorder's %s failed", hook)

    def save(self, path) -> Path:
        if len(self.runs) == 1:
            arrays = dict(self.runs[0].state_arrays())
        else:
            arrays = {"arms": np.array(",".join(ARM_NAMES[: len(self.runs)]))}
            for name, run in zip(ARM_NAMES, self.runs):
                arrays.update({f"{name}.{k}": v for k, v in run.state_arrays().items()})
        arrays["trainer_changes"] = changes_json(self.changes)
        return write_npz_atomic(path, arrays)


class Trainer:
    """Trains one run, or an A/B pair (``config_b``), on a background thread; see the module docstring.

    ``dataset``: an already loaded :class:`~khrbm.data.Dataset` (else ``load_dataset(config_a.dataset)``),
    shared by the arms. ``snapshot_every``: publish every n minibatches (default None: within
    SNAPSHOT_SHARE of the loop's time), and at least every ``snapshot_interval`` seconds while running.
    ``probe_size``: the first n validation images whose reconstructions the snapshots carry.

    Metric points: the full validation set (plus the fixed sample of ``eval_size`` training images) at step 0,
    at the end of training and at every ``full_eval_every``-th epoch end (0: none between) as long as these
    points take at most FULL_EVAL_SHARE (5 %) of the loop's time — on 60k MNIST, one per epoch when a point
    costs at most 5 % of an epoch, else every few epochs; plus subsample points (``eval_size`` validation
    and training images), at most EVALS_PER_EPOCH per epoch and within EVAL_SHARE (5 %) of the loop's time.
    ``history["full"]`` marks the full-set points. Snapshots: published every ``snapshot_every`` minibatches,
    or by default (None) as often as SNAPSHOT_SHARE (1 %) of the loop's time allows; and at least every
    ``snapshot_interval`` seconds while running. :meth:`timing` says where the time went.

    ``lesson``: a :class:`~khrbm.train.lesson.Lesson` to play (see :meth:`set_lesson`). ``recorder``: notified
    of every publish, e.g. a :class:`khrbm.store.TrainerRecorder` that records the runs in the registry (see the
    module docstring).

    The thread starts at construction (it compiles the kernels: state "compiling", then "idle") and ends
    at :meth:`close`, or when the Trainer is garbage-collected.
    """

    def __init__(self, config_a: RunConfig, config_b: RunConfig | None = None, *, dataset: Dataset | None = None,
                 snapshot_every: int | None = None, snapshot_interval: float = 0.5, probe_size: int = 16,
                 full_eval_every: int = 1, lesson: Lesson | None = None, recorder=None):
        configs = check_pair(config_a, config_b)
        if dataset is not None and dataset.name != configs[0].dataset:
            raise ConfigError("dataset", f"the config asks for {configs[0].dataset!r} but the dataset given "
                                         f"is {dataset.name!r}")
        self._core = _Core(configs, dataset, snapshot_every, snapshot_interval, probe_size, full_eval_every,
                           recorder, lesson)
        self._finalizer = weakref.finalize(self, self._core.close, 30.0)

    # --- reading -----------------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        """The latest published :class:`Snapshot` (never None)."""
        return self._core.snapshot

    @property
    def state(self) -> str:
        return self._core.snapshot.state

    @property
    def compare(self) -> bool:
        return len(self._core.pending) == 2

    @property
    def configs(self) -> tuple:
        """The arms' configs with every queued live change applied (what the next minibatch will use)."""
        return self._core.pending

    @property
    def thread(self) -> threading.Thread:
        return self._core.thread

    @property
    def lesson(self) -> Lesson | None:
        """The lesson being played (None without one); its progress is in ``snapshot.caption`` / ``.lesson``."""
        return self._core.lesson

    # --- controls (queued; return at once) -------------------------------------------------------------
    def start(self):
        """Train continuously until paused, finished or diverged. No effect when finished, diverged or in
        error (reset, load a checkpoint, or for finished raise ``epochs``)."""
        self._core.command("start", clear=True)

    resume = start

    def pause(self):
        """Stop after the current minibatch (also cancels requested single steps)."""
        self._core.command("pause", clear=True)

    def stop(self):
        """Same as :meth:`pause` (the message says "stopped"); the thread lives on until :meth:`close`."""
        self._core.command("stop", clear=True)

    def step(self, n: int = 1):
        """Train ``n`` more minibatches, then pause. Calls add up; a running trainer switches to stepping."""
        n = int(n)
        if n < 0:
            raise ValueError(f"step count must be >= 0, got {n}")
        if n:
            self._core.command("steps", n)

    def step_epoch(self):
        """Train to the end of the current epoch, then pause."""
        self._core.command("epoch")

    def update(self, arm: str = "both", **changes):
        """Change settings; live ones (config.LIVE_FIELDS) take effect at the next minibatch and are logged as
        :class:`Change`. Run-wide ones (config.RUN_WIDE_FIELDS: ``epochs``) may change any time and apply to
        every arm. Other fields need a new model: :class:`ResetNeeded` once training has begun (or while it
        runs); before the first minibatch they are applied at once by a reset with the changed config. After
        :meth:`close`, values are still checked (ConfigError), then RuntimeError says the trainer is closed.

        This is where a change is checked, once (ConfigError here, on the caller's thread); the loop takes
        the checked config as it is."""
        core = self._core
        if not changes:
            return
        if arm not in ("both", "A", "B"):
            raise ValueError(f"arm must be 'both', 'A' or 'B', not {arm!r}")
        if arm == "B" and len(core.pending) < 2:
            raise ValueError("there is no arm B: this trainer runs a single model")
        for name in changes:
            if name not in FIELD:
                raise ConfigError(name, f"unknown field; known fields: {', '.join(FIELD)}")
        model = [n for n in changes if n not in MID_RUN_FIELDS]
        targets = range(len(core.pending)) if arm == "both" else [ARM_NAMES.index(arm)]
        if model:
            with core.cv:
                busy = core.busy_locked() or any(r.step > 0 for r in core.runs)
                pending = core.pending
            if busy:
                raise ResetNeeded(model[0])
            if len(pending) == 2 and arm != "both":
                raise ConfigError(model[0], "the A/B arms share the model: change it for both (arm='both')")
            new = [c.replace(**changes) for c in pending]
            self.reset(config_a=new[0], config_b=new[1] if len(new) == 2 else None)
            return
        shared = {k: v for k, v in changes.items() if k in RUN_WIDE_FIELDS}
        with core.cv:
            new, queued = list(core.pending), []
            for i in range(len(new)):
                mine = dict(changes) if i in targets else dict(shared)
                if mine:
                    new[i] = new[i].replace(**mine)
                    check_ell(new[i], core.dataset)
                    queued.append(("update", i, new[i]))
            if core.closing:          # checked after the values, so that a bad value is refused either way
                raise RuntimeError("the trainer is closed")
            core.queue.extend(queued)
            core.issued += len(queued)
            core.pending = tuple(new)
            core.cv.notify_all()

    # --- operations carried out by the loop (return when done) ------------------------------------------
    def reset(self, seed: int | None = None, config_a: RunConfig | None = None, config_b=...):
        """New model(s) from step 0; state "idle". Defaults: the current configs (live changes included), or
        while a lesson plays the configs it started from (so the lesson replays as before).
        ``seed`` replaces the seed of every arm. ``config_b``: ``...`` keeps the current arms (B takes A's
        model fields if ``config_a`` is given), None drops arm B, a RunConfig sets it. Clears the change log."""
        core = self._core
        if core.closing:
            raise RuntimeError("the trainer is closed")
        current = core.lesson_base if core.lesson is not None and core.lesson_base else core.pending
        a = config_a if config_a is not None else current[0]
        if config_b is ...:
            b = current[1] if len(current) == 2 else None
            if b is not None and config_a is not None:
                b = b.replace(**{f: getattr(a, f) for f in MODEL_FIELDS})
        else:
            b = config_b
        if seed is not None:
            a = a.replace(seed=seed)
            b = b.replace(seed=seed) if b is not None else None
        configs = check_pair(a, b)
        runs = core._build_runs(configs)
        with core.cv:
            core.pending = configs
        core.submit(lambda: core.install(runs, [], None), clear_control=True)
        return core.snapshot

    def set_lesson(self, lesson: Lesson | None) -> Snapshot:
        """Play ``lesson`` from the current step (None: stop playing one). Events before the current step count
        as played; those due now apply at once (a lesson attached at step 0 shows its first caption before
        Start). A reset replays it from its start. LessonError (one line naming the event) if it does not fit
        the runs, e.g. an event after the last epoch or a setting out of range for an arm."""
        core = self._core
        core.submit(lambda: core.start_lesson(lesson))
        return self.sync()

    def save_checkpoint(self, path) -> Path:
        """Write the state of every arm to ``path`` atomically (between two minibatches); returns the path."""
        core = self._core
        if not core.thread.is_alive():
            return core.save(path)
        return core.submit(lambda: core.save(path))

    def load_checkpoint(self, path):
        """Replace the arms by those saved in ``path`` (a trainer or Run checkpoint; the trainer takes the
        file's mode, single or A/B); state "paused" (or "finished"). CheckpointError if unusable."""
        core = self._core
        if core.closing:
            raise RuntimeError("the trainer is closed")
        per_arm, changes = read_trainer_checkpoint(path)
        saved = [RunConfig.from_json(str(x["config_json"])) for x in per_arm]
        try:
            configs = check_pair(saved[0], saved[1] if len(saved) == 2 else None)
        except ConfigError as exc:
            raise CheckpointError(f"{path}: its arms do not form an A/B pair: {exc}")
        runs = core._build_runs(configs)
        for run, arrays in zip(runs, per_arm):
            run.restore(arrays, str(path))
        with core.cv:
            core.pending = configs
        core.submit(lambda: core.install(runs, changes, f"loaded {Path(path).name} at step {runs[0].step} "
                                                        f"(epoch {runs[0].epoch:.2f})"), clear_control=True)
        return core.snapshot

    def sync(self, timeout: float | None = None) -> Snapshot:
        """Wait until every command issued so far is handled (requested steps done; a continuous run counts
        as handled once started); return the latest snapshot. TimeoutError after ``timeout`` seconds."""
        return self._core.sync(timeout)

    def wait_for(self, predicate: Callable[[Snapshot], bool], timeout: float | None = None) -> Snapshot:
        """Wait until ``predicate(snapshot)`` holds for a published snapshot; return it (TimeoutError if not)."""
        return self._core.wait_for(predicate, timeout)

    def close(self, timeout: float | None = None):
        """End the loop after the current minibatch and join the thread (state "closed"). Idempotent."""
        self._finalizer.detach()
        self._core.close(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        s = self.snapshot
        return f"<Trainer {self._core.thread.name} {s.state} step {s.step} arms {len(s.arms)}>"

    def timing(self) -> dict:
        """Seconds since the last reset or load: ``loop`` (minibatches with their evaluations and snapshots
        while training), ``subset_eval``, ``full_eval`` (step 0's point excluded) and ``snapshots``."""
        core = self._core
        return core.submit(core.timing) if core.thread.is_alive() else core.timing()

    # --- test hook ------------------------------------------------------------------------------------
    def _inject(self, fn: Callable[[list], Any]):
        """Run ``fn(runs)`` on the loop thread between two minibatches and return its result. For tests
        (e.g. set a weight to NaN, or replace a stepper by one that raises)."""
        core = self._core
        return core.submit(lambda: fn(core.runs))
