"""What the subcommands share: the exit code for bad input, one-line errors, and the run-config flags
generated from ``config.FIELDS`` (every field is a flag; ``--config FILE`` supplies a base they override)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import FIELDS, RunConfig, parse_text

EXIT_BAD_INPUT = 2
MAX_MESSAGE = 2000        # characters of an error line, at most


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and one flag per RunConfig field (``--n-hidden 100``, ``--kh-mode td`` …); their
    text is checked by :func:`config_from_args` (one line naming the field and its range)."""
    parser.add_argument("--config", type=Path, help="JSON file of config fields (flags override it)")
    group = parser.add_argument_group("run config (see SPEC.md)")
    for f in FIELDS:
        extra = f" (one of: {', '.join(f.choices)})" if f.choices else ""
        group.add_argument(_flag(f.name), dest=f.name, default=None,
                           metavar=f.name.upper(), help=f"{f.help}{extra} [default: {f.default}]")


def config_from_args(args, base: RunConfig | None = None) -> RunConfig:
    """``--config`` (else ``base``, else the defaults), overridden by every flag given. ConfigError if any
    flag's text or the file is not a valid value."""
    base = RunConfig.load(args.config) if args.config else (base or RunConfig())
    changes = {f.name: parse_text(f, getattr(args, f.name)) for f in FIELDS if getattr(args, f.name) is not None}
    return base.replace(**changes)


def fail(message: str) -> int:
    """Print ``message`` as one error line (newlines folded, at most MAX_MESSAGE characters); the bad-input code."""
    line = " ".join(str(message).splitlines())
    if len(line) > MAX_MESSAGE:
        line = line[: MAX_MESSAGE - 1] + "…"
    print(f"khrbm: error: {line}", file=sys.stderr)
    return EXIT_BAD_INPUT
