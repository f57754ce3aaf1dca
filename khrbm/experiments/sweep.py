"""Many runs (configs × seeds) on Dask distributed: one folder per run, keyed by a hash of its config, and
one tidy table.

A sweep is a list of :class:`RunConfig`; :func:`expand` makes it from a spec (``base`` fields, a ``grid`` of
field → values crossed with a list of ``configs``, and ``seeds``). Layout of the output folder::

    sweep.json              the plan: every run's key and config, in order
    runs/<key>/             the files of ``khrbm train`` (config.json, metrics.csv/json, checkpoint.npz,
                            result.json, run.json), train.log, and failed.json when the run failed
    table.csv, table.json   a row per run and evaluated epoch: run, status, epochs_done, error, every config
                            field, the metrics of ``HISTORY_KEYS``, the ξ-probe means of that epoch, samples/s

``<key>`` is :func:`run_key`, the first 12 hex digits of the SHA-256 of the config's JSON, so the same config
always lands in the same folder: a finished run is skipped, an interrupted one continues from its
checkpoint bit for bit (:func:`khrbm.cli.train.train_into`, the loop of ``khrbm train``), a failed one is
recorded and the others go on. Every run is recorded in the run registry (``khrbm runs``) as source "sweep",
with the sweep's uid (kept in ``sweep.json``) as its group.

Executor: by default a ``LocalCluster`` with one single-threaded worker process per core (spawned, never
forked: GNU OpenMP must not fork after a step ran); ``scheduler="tcp://host:port"`` uses an existing cluster,
whose workers must see ``out`` at the same path (shared filesystem) and should run one thread each
(``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 dask worker ADDR --nthreads 1 --nworkers N``).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import logging
import math
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Iterable

from ..config import FIELD, FIELDS, ConfigError, RunConfig, read_json_or_yaml
from ..store.folder import CHECKPOINT
from ..train.outputs import write_text_atomic

RESULT = "result.json"
FAILED = "failed.json"
LOG = "train.log"
ERROR_PREFIX = "khrbm: error: "
SPEC_KEYS = ("base", "grid", "configs", "seeds")
XI_COLUMNS = ("xi_ratio", "xi_cosine", "xi_probes")
# One BLAS thread per worker. Numba's pool size is left alone: a worker whose main module imports khrbm (a user's
# script) starts Numba before Dask applies this environment, and a NUMBA_NUM_THREADS that changes after the pool
# started makes every later compilation fail; the tasks call numba.set_num_threads(1) instead.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NEEDS_DASK = ("khrbm sweep needs Dask distributed, which is not installed: "
              "pip install 'khrbm[dist]' (or: pip install 'dask[distributed]')")


class SweepError(ValueError):
    """A sweep spec or its executor is unusable. ``str(err)`` is one line."""


# --------------------------------------------------------------------------------------------------
# the plan: spec -> configs -> keyed runs
# --------------------------------------------------------------------------------------------------
def load_spec(path: str | Path) -> dict:
    """A sweep spec from a JSON file, or a YAML file (``.yaml``/``.yml``, needs PyYAML)."""
    try:
        spec = read_json_or_yaml(path, "sweep spec")
    except ValueError as exc:
        raise SweepError(str(exc)) from None
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: a sweep spec is a mapping with keys {', '.join(SPEC_KEYS)}")
    return spec


def seed_list(seeds) -> list[int]:
    """``seeds`` as a list: an integer n means seeds 1..n."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list)):
        raise SweepError(f"'seeds' must be a count or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise SweepError(f"'seeds' must be at least 1, got {seeds}")
        return list(range(1, seeds + 1))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SweepError(f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    return list(seeds)


def expand(spec: dict) -> list[RunConfig]:
    """The configs of a spec: for every entry of ``configs`` (default: one empty entry), every point of the
    ``grid`` (field → list of values) and every seed, ``base | entry | point | {seed}``. Without ``seeds``
    the seed comes from those fields (default 1). Duplicates are kept once, in order."""
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise SweepError(f"unknown sweep key {sorted(unknown)[0]!r}; known keys: {', '.join(SPEC_KEYS)}")
    base, grid, entries = spec.get("base") or {}, spec.get("grid") or {}, spec.get("configs") or [{}]
    if not isinstance(base, dict) or not isinstance(grid, dict) or not isinstance(entries, list):
        raise SweepError("'base' must be a mapping of fields, 'grid' a mapping of field -> list, "
                         "'configs' a list of mappings")
    for name, values in grid.items():
        if name not in FIELD:
            raise SweepError(f"grid field {name!r} is unknown; known fields: {', '.join(FIELD)}")
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid field {name!r} needs a non-empty list of values, got {values!r}")
    seeds = seed_list(spec["seeds"]) if "seeds" in spec else [None]
    configs, seen = [], set()
    for entry, point, seed in itertools.product(entries, itertools.product(*grid.values()), seeds):
        if not isinstance(entry, dict):
            raise SweepError(f"every entry of 'configs' must be a mapping of fields, got {entry!r}")
        fields = {**base, **entry, **dict(zip(grid, point))}
        if seed is not None:
            fields["seed"] = seed
        try:
            cfg = RunConfig.from_dict(fields)
        except ConfigError as exc:
            hint = (" (YAML reads off/on/yes/no as true/false: quote it, 'off')"
                    if exc.field in FIELD and FIELD[exc.field].kind is str and isinstance(fields.get(exc.field), bool)
                    else "")
            raise SweepError(f"sweep config {json.dumps(fields, sort_keys=True)}: {exc}{hint}")
        if cfg not in seen:
            seen.add(cfg)
            configs.append(cfg)
    return configs


def run_key(cfg: RunConfig) -> str:
    """The run's folder name: the first 12 hex digits of the SHA-256 of its config JSON."""
    return hashlib.sha256(cfg.to_json().encode()).hexdigest()[:12]


def plan_runs(configs: Iterable[RunConfig]) -> dict[str, RunConfig]:
    """{key: config} in order, each config once."""
    return {run_key(c): c for c in configs}


def run_folder(out: str | Path, key: str) -> Path:
    return Path(out) / "runs" / key


def run_status(folder: Path) -> str:
    """done (result.json) · failed (failed.json) · started (a checkpoint, no result) · pending."""
    if (folder / RESULT).exists():
        return "done"
    if (folder / FAILED).exists():
        return "failed"
    return "started" if (folder / CHECKPOINT).exists() else "pending"


def read_plan(out: str | Path) -> dict[str, RunConfig]:
    """The plan a sweep wrote to ``out/sweep.json``."""
    path = Path(out) / "sweep.json"
    try:
        runs = json.loads(path.read_text())["runs"]
        return {r["key"]: RunConfig.from_dict(r["config"]) for r in runs}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SweepError(f"{path}: not a sweep plan ({exc})")


def write_plan(out: Path, plan: dict[str, RunConfig]) -> str:
    """Write ``sweep.json``; return the sweep's uid (made once, kept when the sweep is resumed)."""
    path = out / "sweep.json"
    try:
        uid = json.loads(path.read_text())["uid"]
    except (OSError, ValueError, KeyError, TypeError):
        uid = uuid.uuid4().hex
    runs = [{"key": k, "config": c.to_dict()} for k, c in plan.items()]
    write_text_atomic(path, json.dumps({"uid": uid, "runs": runs}, indent=1) + "\n")
    return uid


# --------------------------------------------------------------------------------------------------
# one run, in a worker
# --------------------------------------------------------------------------------------------------
def train_folder(config_json: str, folder: str, keep_every: int = 0, group_uid: str = "") -> dict:
    """Train one run into ``folder`` with ``khrbm train``'s loop (:func:`khrbm.cli.train.train_into`: the folder
    locked, files atomic, recorded in the registry as source "sweep" of ``group_uid``), continuing from the
    folder's checkpoint if there is one; the task a Dask worker runs. Numba runs single-threaded here (the
    sweep's parallelism is one run per worker process); what the loop prints goes to the folder's ``train.log``.
    Any error is written to ``failed.json`` and returned, so the other runs go on."""
    folder = Path(folder)
    try:
        import numba

        from ..cli.train import train_into
        from ..train.outputs import OutputFolder
        from ..train.run import Run
        numba.set_num_threads(1)            # after khrbm.core.kernels chose the threading layer (Run imports it)
        cfg = RunConfig.from_json(config_json)
        with OutputFolder(folder) as out, open(out / LOG, "a", buffering=1) as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            checkpoint = out / CHECKPOINT
            resumed = checkpoint if checkpoint.exists() else None
            run = Run.load(checkpoint, config=cfg) if resumed else Run(cfg)
            if resumed:
                print(f"resuming from step {run.step} ({checkpoint})", flush=True)
            code = train_into(out, run, progress=False, resumed_from=resumed, source="sweep", group_uid=group_uid,
                              keep_every=keep_every)
        if code:
            errors = [ln for ln in (folder / LOG).read_text().splitlines() if ln.startswith(ERROR_PREFIX)]
            raise RuntimeError(errors[-1][len(ERROR_PREFIX):] if errors else f"khrbm train's loop ended with {code}")
        (folder / FAILED).unlink(missing_ok=True)
        return {"key": folder.name, "status": "done"}
    except Exception as exc:      # noqa: BLE001 - a failed run is recorded with its error; the sweep goes on
        return record_failure(folder, exc, traceback.format_exc())


def record_failure(folder: Path, exc: BaseException, trace: str = "") -> dict:
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / FAILED, json.dumps({"error": error, "traceback": trace}, indent=1) + "\n")
    return {"key": folder.name, "status": "failed", "error": error}


# --------------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------------
TABLE_HEAD = ("run", "status", "epochs_done", "error")


def table_columns() -> list[str]:
    from ..train.run import HISTORY_KEYS
    return [*TABLE_HEAD, *(f.name for f in FIELDS), *HISTORY_KEYS, *XI_COLUMNS, "samples_per_second"]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _xi_by_row(folder: Path, history: list[dict]) -> list[dict]:
    """Per history row, the mean ratio and cosine of the ξ probes taken since the previous row (the probes of
    that epoch; the probe at step t runs before minibatch t)."""
    from ..train.checkpoint import history_rows
    from ..train.run import XI_KEYS, CheckpointError, read_checkpoint
    try:
        probes = history_rows(read_checkpoint(folder / CHECKPOINT)["xi_history"], XI_KEYS)
    except CheckpointError:
        probes = []
    out = []
    for i, row in enumerate(history):
        lo = history[i - 1]["step"] if i else row["step"]
        inside = [p for p in probes if lo <= p["step"] < row["step"]]
        out.append({"xi_ratio": _mean_finite([p["ratio"] for p in inside]),
                    "xi_cosine": _mean_finite([p["cosine"] for p in inside]), "xi_probes": len(inside)})
    return out


def _mean_finite(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def collect_table(out: str | Path, plan: dict[str, RunConfig]) -> list[dict]:
    """The tidy table of a sweep, read from its run folders: a row per run and evaluated epoch (a run with
    no evaluation yet gets one row with empty metrics, so its status and error show)."""
    rows = []
    for key, cfg in plan.items():
        folder = run_folder(out, key)
        status = run_status(folder)
        history = _read_json(folder / "metrics.json") or []
        failed = _read_json(folder / FAILED) if status == "failed" else None
        result = _read_json(folder / RESULT) if status == "done" else None
        head = {"run": key, "status": status,
                "epochs_done": round(history[-1]["epoch"], 6) if history else 0,
                "error": failed.get("error") if failed else None, **cfg.to_dict()}
        tail = {"samples_per_second": result.get("samples_per_second") if result else None}
        xi = _xi_by_row(folder, history) if cfg.probe_every and history else [{}] * len(history)
        for point, probes in zip(history, xi):
            rows.append({**head, **point, **probes, **tail})
        if not history:
            rows.append({**head, **tail})
    columns = table_columns()
    return [{c: row.get(c) for c in columns} for row in rows]


def write_table(out: str | Path, rows: list[dict]) -> None:
    """``table.csv`` and ``table.json`` (records; NaN and missing as empty / null), each replaced atomically."""
    out = Path(out)
    columns = table_columns()
    clean = [{c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in r.items()} for r in rows]
    write_text_atomic(out / "table.json", json.dumps(clean, indent=0) + "\n")
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(clean)
    write_text_atomic(out / "table.csv", text.getvalue())


def read_table(path: str | Path):
    """A sweep's table (``table.json`` or ``table.csv``, or the sweep folder holding them) as a pandas
    DataFrame with NaN for missing values."""
    import pandas as pd
    path = Path(path)
    if path.is_dir():
        path = path / "table.json"
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.DataFrame.from_records(json.loads(path.read_text()), columns=table_columns()).fillna(value=math.nan)


# --------------------------------------------------------------------------------------------------
# the executor
# --------------------------------------------------------------------------------------------------
def local_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None):
    """A Dask client: on the cluster at ``scheduler``, else on a LocalCluster of ``workers`` (default: one per
    core) single-threaded, spawned worker processes."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError(NEEDS_DASK)
    if scheduler:
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {exc}")
        with client:
            yield client
        return
    # no dashboard; the scheduler's HTTP endpoint on a free port (its default, 8787, may be taken)
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}), \
            LocalCluster(n_workers=workers or local_workers(), threads_per_worker=1, processes=True,
                         dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
                         silence_logs=logging.ERROR, env=WORKER_ENV) as cluster, \
            Client(cluster) as client:
        yield client


def _epochs_done(rows: list[dict]) -> float:
    best: dict[str, float] = {}
    for r in rows:
        best[r["run"]] = max(best.get(r["run"], 0.0), r["epochs_done"] or 0.0)
    return sum(best.values())


def run_sweep(configs: Iterable[RunConfig], out: str | Path, scheduler: str | None = None,
              workers: int | None = None, keep_every: int | dict = 0, retry_failed: bool = False,
              progress: bool = True, refresh: float = 30.0, before_start=None) -> list[dict]:
    """Run every config not yet done into ``out`` and return the table (also written to ``out``).

    ``keep_every`` (n, or {run key: n}) keeps a copy of a run's checkpoint every n epochs.
    ``before_start(plan, todo, client)`` is called once the plan is known and the cluster is up, before any run
    starts (for the projection). The table is rewritten when a run ends and every ``refresh`` seconds while
    runs go on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_runs(configs)
    uid = write_plan(out, plan)
    skip = {"done"} if retry_failed else {"done", "failed"}
    todo = [k for k in plan if run_status(run_folder(out, k)) not in skip]
    rows = collect_table(out, plan)
    write_table(out, rows)
    if not todo:
        if before_start:
            before_start(plan, todo, None)
        return rows
    total_epochs = sum(c.epochs for c in plan.values())
    with connect(scheduler, workers) as client:
        if before_start:
            before_start(plan, todo, client)
        bar = _bar(len(plan), len(plan) - len(todo)) if progress else None
        keep = keep_every if isinstance(keep_every, dict) else dict.fromkeys(plan, keep_every)
        futures = {client.submit(train_folder, plan[k].to_json(), str(run_folder(out, k)), keep.get(k, 0), uid,
                                 key=f"khrbm-run-{k}", pure=False): k for k in todo}
        pending, last = set(futures), time.monotonic()
        try:
            while pending:
                time.sleep(0.25)
                finished = {f for f in pending if f.done()}
                pending -= finished
                for fut in finished:
                    outcome = _settle(fut, out, futures[fut])
                    if bar:
                        bar.update(1)
                        if outcome["status"] == "failed":
                            bar.write(f"run {outcome['key']} failed: {outcome['error']}")
                if finished or time.monotonic() - last > refresh:
                    rows = collect_table(out, plan)
                    write_table(out, rows)
                    last = time.monotonic()
                    if bar:
                        bar.set_postfix_str(f"{_epochs_done(rows):,.0f}/{total_epochs:,} epochs")
        finally:
            for fut in pending:
                fut.cancel()
            if bar:
                bar.close()
    rows = collect_table(out, plan)
    write_table(out, rows)
    return rows


def _settle(fut, out: Path, key: str) -> dict:
    """The outcome of a finished task; a task that raised (e.g. its workers kept dying) becomes a failed run."""
    if fut.status == "error":
        exc = fut.exception()
        return record_failure(run_folder(out, key), exc, "".join(traceback.format_exception(exc)))
    return fut.result()


def _bar(total: int, initial: int):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="runs", unit="run", file=sys.stderr, dynamic_ncols=True)
