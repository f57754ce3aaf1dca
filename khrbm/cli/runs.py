"""``khrbm runs``: the registry of every run (app, ``khrbm train``, sweeps) — list, show, compare, export, import.

The registry is one SQLite file: ``--registry PATH``, else ``$KHRBM_REGISTRY``, else
``$XDG_DATA_HOME/khrbm/registry.sqlite`` (``~/.local/share/khrbm/registry.sqlite``).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path

from ..config import FIELD, FIELDS, ConfigError, check_value
from .common import fail

METRICS = ("val_mse", "val_ce", "train_mse", "train_ce", "accuracy", "overlap")


def add_parser(sub) -> None:
    runs = sub.add_parser("runs", help="list, show, compare, export and import recorded runs",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_registry_flag(runs)
    verbs = runs.add_subparsers(dest="verb", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_registry_flag(common, default=argparse.SUPPRESS)    # also accepted after the verb

    ls = verbs.add_parser("list", parents=[common], help="recorded runs, newest first")
    _filters(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=_list)

    show = verbs.add_parser("show", parents=[common], help="one run: config, state, final metrics, change log")
    show.add_argument("id", help="run id (or a uid prefix)")
    show.add_argument("--json", action="store_true", help="print JSON (with 'changes' and 'points')")
    show.set_defaults(handler=_show)

    compare = verbs.add_parser("compare", parents=[common],
                               help="runs side by side: config differences and final metrics")
    compare.add_argument("ids", nargs="+", metavar="ID", help="two or more run ids")
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    compare.set_defaults(handler=_compare)

    export = verbs.add_parser("export", parents=[common],
                              help="the registry's runs as JSON (with changes and points) or CSV")
    _filters(export, limit=None)
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--out", "-o", type=Path, help="file to write (default: standard output)")
    export.set_defaults(handler=_export)

    imp = verbs.add_parser("import", parents=[common],
                           help="add run folders (khrbm train --out, the app's runs) to the registry")
    imp.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    imp.set_defaults(handler=_import)


def add_registry_flag(parser, default=None) -> None:
    parser.add_argument("--registry", type=Path, default=default, metavar="PATH",
                        help="registry file (default: $KHRBM_REGISTRY, else the user's data directory)")


def _filters(parser, limit: int | None = 20) -> None:
    parser.add_argument("--state", choices=("running", "finished", "diverged", "error", "interrupted"))
    parser.add_argument("--source", choices=("app", "train", "sweep", "import"))
    parser.add_argument("--since", metavar="DATE", help="started on or after DATE (YYYY-MM-DD[THH:MM])")
    parser.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                        help="config field equals value, e.g. --where kh_mode=td --where n_hidden=100 (repeatable)")
    parser.add_argument("--limit", type=int, default=limit, help="at most N runs" + (" (0: all)" if limit else ""))


def _open(args):
    from ..store import Registry
    return Registry(args.registry)


def _select(registry, args):
    where = {}
    for item in args.where:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in FIELD:
            raise ConfigError(name or item, f"--where wants FIELD=VALUE with a config field, got {item!r}")
        where[name] = check_value(FIELD[name], _parse_value(text.strip()))
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).timestamp()
        except ValueError:
            raise ConfigError("since", f"expected a date like 2025-05-10 or 2025-05-10T14:30, got {args.since!r}")
    return registry.runs(state=args.state, source=args.source, where=where, since=since, limit=args.limit or None)


def _parse_value(text: str):
    """A --where value as JSON when it parses (numbers, true/false, null), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _guard(handler):
    """Run ``handler(args, registry)``; registry, config and folder errors become one line and exit 2."""
    def run(args) -> int:
        from ..store import FolderError, RegistryError
        try:
            registry = _open(args)
        except RegistryError as exc:
            return fail(str(exc))
        try:
            return handler(args, registry)
        except (RegistryError, ConfigError, FolderError) as exc:
            return fail(str(exc))
        finally:
            registry.close()
    return run


def _reap(registry) -> None:
    """Runs whose process died count as interrupted (best effort: a read-only registry is listed as it is)."""
    from ..store import RegistryError
    try:
        registry.reap()
    except RegistryError:
        pass


# --- list ---------------------------------------------------------------------------------------------------
@_guard
def _list(args, registry) -> int:
    _reap(registry)
    records = _select(registry, args)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=1))
        return 0
    if not records:
        print(f"no runs recorded yet in {registry.path}" if not registry.runs(limit=1) else "no run matches")
        return 0
    from ..store import describe_config
    rows = [("ID", "STARTED", "SOURCE", "STATE", "RUN", "EPOCH", "VAL MSE", "ACC")]
    for r in records:
        rows.append((f"{r.id}{r.arm}", _when(r.started), r.source, r.state, describe_config(r.config),
                     f"{r.epoch:.2f}", _num(r.final.get("val_mse")), _pct(r.final.get("accuracy"))))
    print(_table(rows))
    return 0


# --- show ---------------------------------------------------------------------------------------------------
@_guard
def _show(args, registry) -> int:
    _reap(registry)
    record = registry.run(args.id)
    changes = registry.changes(record)
    if args.json:
        print(json.dumps(registry.export([record])[0], indent=1))
        return 0
    from ..store import describe_config
    lines = [f"run {record.id}{' arm ' + record.arm if record.arm else ''} · {describe_config(record.config)}",
             f"  state      {record.state}{' — ' + record.message if record.message else ''}",
             f"  source     {record.source} on {record.host or '?'}{f' (pid {record.pid})' if record.pid else ''}",
             f"  started    {_when(record.started)}   ended {_when(record.ended) if record.ended else '—'}"
             f"   ({_duration(record.duration)})",
             f"  progress   step {record.steps} (epoch {record.epoch:.2f} of {record.config.epochs})"
             + (f", continued from step {record.start_step}" if record.start_step else ""),
             f"  folder     {record.out_dir or '—'}",
             f"  checkpoint {record.checkpoint or '—'}",
             f"  uid        {record.uid}" + (f"   group {record.group_uid}" if record.group_uid else "")]
    if record.lesson:
        lines.append(f"  lesson     {record.lesson.get('name') or '(unnamed)'}: {len(record.lesson['events'])} events")
    lines.append("  final      " + ("  ".join(f"{k} {_num(record.final.get(k))}" for k in METRICS
                                           if not _missing(record.final.get(k))) or "—"))
    lines.append("  config     " + _wrap(" ".join(f"{f.name}={_value(getattr(record.config, f.name))}" for f in FIELDS),
                                        13))
    lines.append(f"  changes    {len(changes) or 'none'}")
    for c in changes:
        lines.append(f"    step {c['step']:>7} (epoch {c['epoch']:.2f})  {c['field']}: {_value(c['old'])} → "
                     f"{_value(c['new'])}")
    lines.append(f"  points     {registry.count_points(record)} stored (decimated; the checkpoint has them all)")
    print("\n".join(lines))
    return 0


# --- compare -------------------------------------------------------------------------------------------------
@_guard
def _compare(args, registry) -> int:
    records = [registry.run(i) for i in args.ids]
    configs = [r.config.to_dict() for r in records]
    differing = [f.name for f in FIELDS if len({json.dumps(c[f.name]) for c in configs}) > 1]
    changes = [registry.changes(r) for r in records]
    if args.json:
        print(json.dumps({"runs": [r.id for r in records],
                          "config": {k: [c[k] for c in configs] for k in differing},
                          "changes": changes,
                          "final": {k: [_json_num(r.final.get(k)) for r in records] for k in METRICS},
                          "state": [r.state for r in records], "epoch": [r.epoch for r in records]}, indent=1))
        return 0
    rows = [("", *[f"#{r.id}{r.arm}" for r in records])]
    rows.append(("source", *[r.source for r in records]))
    rows.append(("state", *[r.state for r in records]))
    rows.append(("epoch", *[f"{r.epoch:.2f}" for r in records]))
    rows.append(("— config —", *[""] * len(records)))
    if not differing:
        rows.append(("(identical)", *[""] * len(records)))
    for name in differing:
        rows.append((name, *[_value(c[name]) for c in configs]))
    if any(changes):
        rows.append(("— live changes —", *[""] * len(records)))
        for i in range(max(len(c) for c in changes)):
            rows.append(("", *[_change(c[i]) if i < len(c) else "" for c in changes]))
    rows.append(("— final —", *[""] * len(records)))
    for key in METRICS:
        values = [r.final.get(key) for r in records]
        if all(_missing(v) for v in values):
            continue
        fmt = _pct if key == "accuracy" else _num
        rows.append((key, *[fmt(v) for v in values]))
    print(_table(rows))
    return 0


# --- export / import -------------------------------------------------------------------------------------------
@_guard
def _export(args, registry) -> int:
    records = _select(registry, args)
    if args.format == "json":
        text = json.dumps({"registry": str(registry.path), "exported": time.time(),
                           "runs": registry.export(records)}, indent=1) + "\n"
    else:
        text = _csv(records)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {len(records)} runs to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _csv(records) -> str:
    base = ("id", "uid", "group_uid", "arm", "source", "state", "message", "started", "ended", "start_step", "steps",
            "epoch", "out_dir", "checkpoint", "host", "pid")
    header = [*base, *(f"final.{k}" for k in METRICS), *(f"config.{f.name}" for f in FIELDS)]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in records:
        writer.writerow([*(getattr(r, k) for k in base), *(_json_num(r.final.get(k)) for k in METRICS),
                         *(getattr(r.config, f.name) for f in FIELDS)])
    return buf.getvalue()


@_guard
def _import(args, registry) -> int:
    from ..store import import_folder
    for folder in args.folders:
        for r in import_folder(registry, folder):
            print(f"{r.summary} ({r.source}) from {r.out_dir}")
    return 0


# --- formatting ------------------------------------------------------------------------------------------------
def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _num(v) -> str:
    return "—" if _missing(v) else f"{v:.4f}"


def _pct(v) -> str:
    return "—" if _missing(v) else f"{100 * v:.2f}%"


def _json_num(v):
    return None if _missing(v) else v


def _value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _change(c: dict) -> str:
    return f"epoch {c['epoch']:.2f}: {c['field']} {_value(c['old'])}→{_value(c['new'])}"


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _wrap(text: str, indent: int, width: int = 110) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width - indent:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def _table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
