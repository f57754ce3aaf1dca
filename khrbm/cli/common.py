"""What the subcommands share: the exit code for bad input, one-line errors, and the run-config flags
generated from ``config.FIELDS`` (every field is a flag; ``--config FILE`` supplies a base they override)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import FIELDS, RunConfig, parse_value

EXIT_BAD_INPUT = 2


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and one flag per RunConfig field (``--n-hidden 100``, ``--kh-mode td`` …)."""
    parser.add_argument("--config", type=Path, help="JSON file of config fields (flags override it)")
    group = parser.add_argument_group("run config (see SPEC.md)")
    for f in FIELDS:
        extra = f" (one of: {', '.join(f.choices)})" if f.choices else ""
        group.add_argument(_flag(f.name), dest=f.name, default=None,      # text: config.parse_value reads it
                           metavar=f.name.upper(), help=f"{f.help}{extra} [default: {f.default}]")


def config_from_args(args, base: RunConfig | None = None) -> RunConfig:
    """``--config`` (else ``base``, else the defaults), overridden by every flag given (ConfigError)."""
    base = RunConfig.load(args.config) if args.config else (base or RunConfig())
    changes = {f.name: parse_value(f, getattr(args, f.name)) for f in FIELDS if getattr(args, f.name) is not None}
    return base.replace(**changes)


def fail(message: str) -> int:
    print(f"khrbm: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
