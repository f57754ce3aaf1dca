"""Command line: ``khrbm SUBCOMMAND``. Each subcommand is a module of this package with ``add_parser(sub)``,
which registers its flags and sets ``handler``; ``main`` parses and calls it."""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("train", "data", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="khrbm", description="KH-modulated RBM laboratory")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
