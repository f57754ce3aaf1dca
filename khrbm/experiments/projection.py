"""How long a sweep will take, measured here before it starts, so that a person knows what they start.

Runs that cost the same per minibatch form a *speed class* (their config with the seed, schedule and KH
strengths set to the defaults). For each class a short calibration, on a sweep worker (one thread), times
a few minibatches with KH on and off, one evaluation exactly as the training loop makes it, and ξ probes of
1 and 6 trials when KH is on. A run's time is then

    batches/epoch × (KH epochs × t_KH + plain epochs × t_plain) + evaluations × t_eval
        + probes × (t_probe + trials × t_trial)

over the epochs it still has to go (KH is active for epoch < S only), and the wall time on W workers is the
longest-first greedy schedule of those times. Calibrations are kept in ``calibration.json`` in the sweep folder.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import FIELD, RunConfig

# fields that do not change the cost of a minibatch (KH's ε only matters through whether it is > 0)
NOT_SPEED = ("seed", "epochs", "horizon", "eps0", "delta", "radius", "lr", "label_sampling", "probe_every",
             "probe_trials", "init")
CALIBRATION = "calibration.json"
CALIBRATION_VERSION = 3          # bump when measure() changes what it measures


def speed_class(cfg: RunConfig) -> RunConfig:
    return cfg.replace(**{name: FIELD[name].default for name in NOT_SPEED})


def class_key(cfg: RunConfig) -> str:
    return json.dumps(speed_class(cfg).to_dict(), sort_keys=True)


def measure(cls: RunConfig, batches: int = 3, repeats: int = 3) -> dict:
    """Seconds per minibatch with KH on (``kh``) and off (``plain``), per evaluation (``eval``), per ξ-probe
    trial (``trial``) and per probe besides its trials (``probe``), of speed class ``cls``, on one Numba thread.
    Each time but the evaluation's is the best of ``repeats`` (a machine shared with others slows some)."""
    import numba

    from ..core.probe import xi_probe
    from ..train.run import Run

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        run = Run(cls)
        warmup = getattr(run.stepper, "warmup", None)
        if warmup:
            warmup()

        def some_batches():
            for _ in range(batches):
                run.train_batch()

        def per_batch() -> float:
            run.train_batch()
            return _best_of(repeats, some_batches) / batches

        seconds = {"kh": per_batch() if cls.kh_mode != "off" else None}
        t0 = time.perf_counter()
        run.evaluate()
        seconds["eval"] = time.perf_counter() - t0
        idx = run.batch_indices(run.step)
        X = run.visible(run.dataset.x_train[idx], run.dataset.y_train[idx])
        if cls.kh_mode != "off":
            xi_probe(X, run.params, run.settings(), 1, 1)        # the first call pays one-off costs
            one, six = (_best_of(repeats, xi_probe, X, run.params, run.settings(), 1, n) for n in (1, 6))
            seconds["trial"] = max(six - one, 0.0) / 5
            seconds["probe"] = max(one - seconds["trial"], 0.0)
        run.update(kh_mode="off")
        seconds["plain"] = per_batch()
        seconds["batches_per_epoch"] = run.batches_per_epoch
        return seconds
    finally:
        numba.set_num_threads(threads)


def measure_or_none(class_json: str) -> dict:
    """:func:`measure` of a speed class given as JSON (a Dask task), or ``{"error": why}`` if its run cannot
    even start (such a run fails at once in the sweep, which records why; the projection says so first)."""
    try:
        return measure(RunConfig.from_json(class_json))
    except Exception as exc:  # noqa: BLE001
        return {"error": str(exc).split("; searched:")[0][:300] or type(exc).__name__}


def _best_of(repeats: int, f, *args) -> float:
    """The shortest of ``repeats`` timed calls ``f(*args)``, in seconds."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def calibrate(configs, folder: Path | None = None, client=None, log=None) -> dict[str, dict | None]:
    """{:func:`class_key`: :func:`measure`} for every class among ``configs``, on the Dask ``client``'s workers
    (in parallel, in the runs' own environment) or else here; reuses and updates ``folder/calibration.json``."""
    path = Path(folder) / CALIBRATION if folder else None
    saved = json.loads(path.read_text()) if path and path.exists() else {}
    known = saved.get("classes", {}) if saved.get("version") == CALIBRATION_VERSION else {}
    missing = {class_key(c): speed_class(c).to_json() for c in configs}
    missing = {k: v for k, v in missing.items() if k not in known}
    if missing and log:
        log(f"calibrating {len(missing)} speed classes ({'on the workers' if client else 'here'})…")
    if client is not None:
        known.update(zip(missing, client.gather(client.map(measure_or_none, list(missing.values()), pure=False))))
    else:
        known.update({k: measure_or_none(v) for k, v in missing.items()})
    if path and missing:
        kept = {k: v for k, v in known.items() if v is not None and "error" not in v}   # fixed data: measure again
        path.write_text(json.dumps({"version": CALIBRATION_VERSION, "classes": kept}, indent=1) + "\n")
    return known


def run_seconds(cfg: RunConfig, seconds: dict, epochs_done: float = 0.0) -> float:
    """Projected seconds for ``cfg`` to go from ``epochs_done`` to its last epoch (see the module docstring);
    0 for a run that cannot start (``seconds`` None or an error)."""
    if seconds is None or "error" in seconds:
        return 0.0
    left = max(cfg.epochs - epochs_done, 0.0)
    kh_epochs = max(min(cfg.epochs, cfg.kh_horizon) - epochs_done, 0.0) if cfg.kh_mode != "off" and cfg.eps0 > 0 else 0.0
    bpe = seconds["batches_per_epoch"]
    total = bpe * (kh_epochs * (seconds["kh"] or 0.0) + (left - kh_epochs) * seconds["plain"])
    total += (math.ceil(left) + (epochs_done == 0)) * seconds["eval"]
    if cfg.probe_every and kh_epochs:
        total += kh_epochs * bpe / cfg.probe_every * (seconds["probe"] + cfg.probe_trials * seconds["trial"])
    return total


@dataclass(frozen=True)
class Projection:
    runs: int                # runs still to go
    work_seconds: float      # their summed projected time
    run_seconds: tuple       # each one's
    errors: tuple = ()       # why runs cannot start (one entry per such run)

    def wall_seconds(self, workers: int) -> float:
        """Longest-first greedy schedule of the runs on ``workers`` workers."""
        loads = [0.0] * max(int(workers), 1)
        for t in sorted(self.run_seconds, reverse=True):
            loads[loads.index(min(loads))] += t
        return max(loads)

    def describe(self, workers: int, also: int = 10) -> str:
        if not self.runs:
            return "projected: nothing to run (every run is done or failed; --retry-failed runs failed ones again)"
        if self.errors:
            return (f"projected: {len(self.errors)} of {self.runs} runs cannot start: {self.errors[0]}"
                    + ("" if len(self.errors) == self.runs else f"; the other {self.runs - len(self.errors)} "
                       f"take ~{fmt_duration(self.wall_seconds(workers))} on {workers} workers"))
        more = f"; on {also} such workers ~{fmt_duration(self.wall_seconds(also))}" if also != workers else ""
        return (f"projected: {self.runs} runs to go, {fmt_duration(self.work_seconds)} of single-core work → "
                f"~{fmt_duration(self.wall_seconds(workers))} wall on {workers} workers{more} "
                f"(calibrated on this machine, one thread per run)")


def project(todo: dict[str, RunConfig], calibration: dict[str, dict], epochs_done: dict[str, float]) -> Projection:
    times = tuple(run_seconds(c, calibration[class_key(c)], epochs_done.get(k, 0.0))
                  for k, c in todo.items())
    errors = tuple(calibration[class_key(c)]["error"] for c in todo.values()
                   if "error" in (calibration[class_key(c)] or {}))
    return Projection(len(times), sum(times), times, errors)


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
