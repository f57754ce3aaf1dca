"""``khrbm data status`` (which datasets are where) and ``khrbm data fetch NAME`` (download, SHA-256 verified)."""
from __future__ import annotations

from pathlib import Path

from .common import fail


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="datasets: where they are, fetching them")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download a dataset into the cache (SHA-256 verified)")
    fetch.add_argument("name", choices=("mnist", "kmnist", "fashion-mnist"))
    fetch.add_argument("--dest", type=Path, help="directory to write into (default: the user cache)")
    data_sub.add_parser("status", help="which datasets are available, and from where")
    data.set_defaults(handler=run)


def run(args) -> int:
    from .. import data
    if args.data_command == "status":
        for name in data.DATASETS:
            ok, message = data.dataset_status(name)
            print(f"{'ok ' if ok else '-- '} {message}")
        return 0
    try:
        path = data.fetch(args.name, dest=args.dest)
    except data.DataError as exc:
        return fail(str(exc))
    print(f"{args.name}: ready in {path}")
    return 0
