"""``khrbm repro TARGET --budget smoke|quick|paper --out DIR``: the paper's experiments as one sweep, then a report
(report.html, PNGs, results.json) with a verdict per claim (see :mod:`khrbm.experiments.repro`)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .sweep import add_executor_flags, execute

EPILOG = """Run the same command again to resume (finished runs are kept). A paper-scale sweep takes days on
2 cores; --dry-run prints its projected time first, and it can run in the background:
  nohup khrbm repro all --budget paper --out runs/paper --no-progress > runs/paper.log 2>&1 &
--report-only rebuilds the report from the runs finished so far, while the sweep goes on."""


def add_parser(sub) -> None:
    from ..experiments.repro import BUDGETS, TARGETS
    repro = sub.add_parser("repro", help="reproduce the paper's tables and figures, with a verdict per claim",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    repro.add_argument("target", choices=(*TARGETS, "all"), help="which experiment of the paper (all: every one)")
    repro.add_argument("--budget", choices=tuple(BUDGETS), default="smoke",
                       help="paper: the paper's protocol; quick: scaled to ≤ 30 min per target on 2 cores; "
                            "smoke: ≤ 2 min (default: smoke)")
    repro.add_argument("--out", type=Path, required=True, help="folder of the runs and the report")
    repro.add_argument("--report-only", action="store_true", help="build the report from the finished runs, train nothing")
    add_executor_flags(repro)
    repro.set_defaults(handler=run)


def run(args) -> int:
    from ..experiments import repro, report
    from ..experiments.sweep import run_sweep

    budget = repro.BUDGETS[args.budget]
    if args.seeds is not None and args.seeds < 1:
        from .common import fail
        return fail(f"--seeds must be at least 1, got {args.seeds}")
    by_target = repro.plan_configs(args.target, budget, args.seeds)
    configs = [c for cs in by_target.values() for c in cs]
    print(f"khrbm repro {args.target} --budget {args.budget}: {budget.note}", file=sys.stderr)
    code, wall = 0, None
    if not args.report_only:
        t0 = time.perf_counter()
        code = execute(configs, args, run_sweep, keep_every=repro.keep_every(by_target, budget))
        wall = time.perf_counter() - t0
        if args.dry_run or code not in (0, 1):
            return code
    t0 = time.perf_counter()
    summary = report.build(args.out, args.target, args.budget, args.seeds, wall)
    print(f"report built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for t in summary["targets"].values():
        for c in t["claims"]:
            print(f"[{c['target']}] {c['verdict'].upper()}: {c['text']}", file=sys.stderr)
    print(f"report: {args.out / 'report.html'} · {args.out / 'results.json'}", file=sys.stderr)
    return code
