"""``khrbm sweep [SPEC] --out DIR``: many runs (configs × seeds) on Dask, one folder per run and one tidy table
(see :mod:`khrbm.experiments.sweep`). Run the same command again to resume."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from ..config import FIELD, ConfigError, RunConfig, parse_text
from .common import add_config_flags, fail, given_fields

EPILOG = """spec file (JSON or YAML):
  base:    {dataset: mnist, n_hidden: 100, epochs: 30}      fields every run shares
  configs: [{kh_mode: off}, {kh_mode: td, eps0: 0.04}]     entries crossed with the grid (optional)
  grid:    {init: [std, lecun]}                            field -> values, every combination
  seeds:   3                                               a count (seeds 1..n) or a list
Flags override the spec: config flags go into base, --grid adds grid fields, --seeds replaces seeds.
On an existing cluster (--scheduler), start the workers single-threaded and on the same filesystem:
  NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 dask worker tcp://HOST:8786 --nthreads 1 --nworkers N"""


def add_parser(sub) -> None:
    sweep = sub.add_parser("sweep", help="many runs (configs x seeds) on Dask, one folder each and one table",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("spec", nargs="?", type=Path, help="sweep spec, .json or .yaml")
    sweep.add_argument("--out", type=Path, required=True, help="sweep folder (runs/, table.csv, table.json)")
    sweep.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                       help="vary FIELD over the values (repeatable)")
    add_executor_flags(sweep)
    sweep.add_argument("--keep-every", type=int, default=0, metavar="N",
                       help="also keep each run's checkpoint every N epochs (for mosaics over epochs)")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    add_config_flags(sweep)
    sweep.set_defaults(handler=run)


def add_executor_flags(parser) -> None:
    """Flags shared with ``khrbm repro``: where the runs go and how to watch them."""
    parser.add_argument("--seeds", type=int, metavar="N", help="seeds 1..N for every config")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask cluster "
                        "(default: a local cluster, one single-threaded worker process per core)")
    parser.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the projected time, start nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_grid(items: list[str]) -> dict:
    """{field: [values]} of the ``--grid FIELD=V1,V2`` flags, each value read as that field's flag text."""
    from ..experiments.sweep import SweepError
    grid = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in FIELD:
            raise SweepError(f"--grid {item!r}: expected FIELD=V1,V2 with a known field ({', '.join(FIELD)})")
        try:
            grid[name] = [parse_text(FIELD[name], v) for v in values.split(",")]
        except ConfigError as exc:
            raise SweepError(f"--grid {item!r}: {exc}")
    return grid


def run(args) -> int:
    from ..experiments.sweep import SweepError, expand, load_spec, run_sweep
    try:
        spec = load_spec(args.spec) if args.spec else {}
        base = {**(RunConfig.load(args.config).to_dict() if args.config else {}), **(spec.get("base") or {}),
                **given_fields(args)}
        spec = {**spec, "base": base, "grid": {**(spec.get("grid") or {}), **parse_grid(args.grid)}}
        if args.seeds is not None:
            spec["seeds"] = args.seeds
        configs = expand(spec)
    except (SweepError, ConfigError) as exc:
        return fail(str(exc))
    return execute(configs, args, run_sweep, keep_every=args.keep_every, retry_failed=args.retry_failed)


def execute(configs, args, run_sweep, **options) -> int:
    """Project, then run (or with --dry-run only project) the sweep; exit 1 if a run failed, 130 on Ctrl-C."""
    from ..experiments import projection
    from ..experiments.projection import fmt_duration
    from ..experiments.sweep import SweepError, local_workers

    workers = args.workers or (None if args.scheduler else local_workers())
    t_start = time.perf_counter()

    def announce(plan, todo, client):
        done = {r["run"]: r["epochs_done"] for r in _started_rows(args.out, plan)}
        t0 = time.perf_counter()
        calibration = projection.calibrate([plan[k] for k in todo], args.out, client, log=_log)
        _log(f"calibration took {time.perf_counter() - t0:.0f} s")
        proj = projection.project({k: plan[k] for k in todo}, calibration, done)
        n_workers = sum(client.nthreads().values()) if client is not None else (workers or 1)
        _log(f"{len(plan)} runs in {args.out} ({len(plan) - len(todo)} already done or failed)")
        _log(proj.describe(n_workers))
        if args.dry_run:
            raise _DryRun

    signal.signal(signal.SIGTERM, _terminate)        # `kill PID` stops the sweep like Ctrl-C: resumable
    try:
        rows = run_sweep(configs, args.out, scheduler=args.scheduler, workers=workers,
                         progress=not args.no_progress, before_start=announce, **options)
    except _DryRun:
        return 0
    except SweepError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        _log(f"interrupted; run the same command again to resume (finished runs are kept, the others continue "
             f"from their last epoch's checkpoint in {args.out}/runs)")
        return 130
    failed = sorted({r["run"] for r in rows if r["status"] == "failed"})
    n_runs = len({r["run"] for r in rows})
    _log(f"{n_runs - len(failed)} of {n_runs} runs done in {fmt_duration(time.perf_counter() - t_start)}; "
         f"table: {args.out / 'table.csv'}"
         + (f"; failed: {', '.join(failed)} (errors in the table and in runs/KEY/failed.json)" if failed else ""))
    return 1 if failed else 0


def _terminate(signum, frame):
    raise KeyboardInterrupt


class _DryRun(Exception):
    """Raised by the projection hook of --dry-run, before any worker starts."""


def _started_rows(out, plan):
    from ..experiments.sweep import collect_table
    return [r for r in collect_table(out, plan) if r["status"] == "started"]


def _log(text: str) -> None:
    print(text, file=sys.stderr)
