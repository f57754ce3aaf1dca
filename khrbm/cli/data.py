"""``khrbm data status`` (which datasets are where, every file checked whole) and ``khrbm data fetch NAME``
(download, SHA-256 verified; SIGTERM or Ctrl-C leaves no partial file)."""
from __future__ import annotations

import signal
from pathlib import Path

from .common import fail

EXIT_TERMINATED = 128 + signal.SIGTERM


def add_parser(sub) -> None:
    from ..data import FETCH_DEADLINE

    data = sub.add_parser("data", help="datasets: where they are, fetching them")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download a dataset into the cache (SHA-256 verified)")
    fetch.add_argument("name", choices=("mnist", "kmnist", "fashion-mnist"))
    fetch.add_argument("--dest", type=Path, help="directory to write into (default: the user cache)")
    fetch.add_argument("--mirror", action="append", metavar="URL",
                       help="base URL to download from instead of the known mirrors (repeatable, tried in order)")
    fetch.add_argument("--deadline", type=float, default=FETCH_DEADLINE, metavar="SECONDS",
                       help=f"give up after this many seconds in all [default: {FETCH_DEADLINE:g}]")
    data_sub.add_parser("status", help="which datasets are available, and from where (files checked whole)")
    data.set_defaults(handler=run)


class _Terminated(Exception):
    """SIGTERM arrived during a fetch (raised by the handler, so that the download's cleanup runs)."""


def _terminate(signum, frame):
    raise _Terminated


def run(args) -> int:
    from .. import data
    if args.data_command == "status":
        for name in data.DATASETS:
            ok, message = data.dataset_status(name)
            print(f"{'ok ' if ok else '-- '} {message}")
        return 0
    if not args.deadline > 0:
        return fail(f"--deadline must be a positive number of seconds, got {args.deadline:g}")
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        path = data.fetch(args.name, dest=args.dest, mirrors=args.mirror, deadline=args.deadline)
    except data.DataError as exc:
        return fail(str(exc))
    except _Terminated:
        fail(f"fetch of {args.name} terminated (SIGTERM); no partial file left")
        return EXIT_TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{args.name}: ready in {path}")
    return 0
