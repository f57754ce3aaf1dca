"""Command line: ``khrbm SUBCOMMAND``. Each subcommand is a module of this package with ``add_parser(sub)``,
which registers its flags and sets ``handler``; ``main`` parses and calls it."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

SUBCOMMANDS = ("train", "sweep", "repro", "data", "runs", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="khrbm", description="KH-modulated RBM laboratory")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the subcommand. Ctrl-C before a subcommand handles it (while importing,
    loading data, compiling) ends with one line and 130; a closed stdout (``khrbm data status | head``)
    ends quietly with 141, as a program killed by SIGPIPE would."""
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("khrbm: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # nothing left to flush at exit
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
