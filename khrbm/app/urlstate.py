"""A link that reproduces a setup: the URL query carries the preset and every setting that differs from it,
Compare included (``/app?preset=story&kh_mode=bu&eps0=0.02&compare=false``).

:func:`parse` reads a query through the config's own checks (``config.parse_text``, the CLI's reader, then
``RunConfig``): whatever the query holds, it returns a valid :class:`Setup` and one line per thing it could
not use (an unknown key, a bad value, a value given twice, a value that does not fit the rest), each of which
falls back to the preset's value. It never raises. :func:`encode` writes the query of a setup; parsing it
gives the setup back. Panel-free.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Callable, Mapping

from ..config import FIELD, FIELDS, ConfigError, Field, RunConfig, parse_text
from .presets import PRESETS

PRESET_KEY = "preset"
COMPARE_KEY = "compare"
MAX_QUERY = 4096           # characters; a longer query is not read at all
MAX_KEYS = 64
COMPARE_FIELD = Field(COMPARE_KEY, bool, False, "train the plain RBM beside it (arm B)")


@dataclass(frozen=True)
class Setup:
    """What a link restores: a preset (by id), the run's settings and the Compare switch."""
    preset: str
    config: RunConfig
    compare: bool


def preset_setup(preset_id: str) -> Setup:
    p = PRESETS[preset_id]
    return Setup(p.id, RunConfig().replace(**p.fields), p.compare)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _short(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def _pairs(query) -> list[tuple[str, str]] | None:
    """(key, value) text pairs of a query string (a leading '?' allowed) or a mapping key -> value(s)
    (Panel's ``session_args`` holds lists of bytes); None when it is too long to read."""
    if isinstance(query, Mapping):
        pairs = []
        for key, values in query.items():
            values = values if isinstance(values, (list, tuple)) else [values]
            pairs += [(_text(key), _text(v)) for v in values]
        if sum(len(k) + len(v) + 2 for k, v in pairs) > MAX_QUERY:
            return None
        return pairs
    text = _text(query or "")
    if len(text) > MAX_QUERY:
        return None
    return urllib.parse.parse_qsl(text.lstrip("?"), keep_blank_values=True, max_num_fields=None)


def parse(query, default_preset: str, check: Callable[[RunConfig], None] | None = None
          ) -> tuple[Setup, list[str]]:
    """The setup a link asks for, and one line per part of it that was not used (see the module docstring).

    ``default_preset``: the preset when the link names none (or an unknown one). ``check(config)`` may raise
    ValueError (ConfigError, DataError) for a setup this place cannot run (ℓ too large for the model, a
    dataset that is not here): the settings that cause it fall back to the preset's values.
    """
    problems: list[str] = []
    pairs = _pairs(query)
    if pairs is None:
        return preset_setup(default_preset), [f"the link's query is longer than {MAX_QUERY} characters; not used"]
    if len(pairs) > MAX_KEYS:
        problems.append(f"the link has {len(pairs)} settings; only the first {MAX_KEYS} are read")
        pairs = pairs[:MAX_KEYS]
    given: dict[str, list[str]] = {}
    for key, value in pairs:
        given.setdefault(key, []).append(value)
    for key, values in given.items():
        if len(values) > 1:
            problems.append(f"'{_short(key)[1:-1]}' is given {len(values)} times in the link; not used")
    single = {k: v[0] for k, v in given.items() if len(v) == 1}

    preset_id = single.pop(PRESET_KEY, default_preset)
    if preset_id not in PRESETS:
        problems.append(f"unknown preset {_short(preset_id)} in the link; opened '{default_preset}' instead")
        preset_id = default_preset
    given.pop(PRESET_KEY, None)
    if preset_id != default_preset and check is not None:
        try:
            check(preset_setup(preset_id).config)
        except ValueError as exc:
            problems.append(f"preset '{preset_id}' cannot run here ({str(exc).split('; searched')[0]}); "
                            f"opened '{default_preset}' instead")
            preset_id = default_preset
    base = preset_setup(preset_id)

    changes, compare = {}, base.compare
    for key, text in single.items():
        try:
            if key == COMPARE_KEY:
                compare = parse_text(COMPARE_FIELD, text)
            elif key in FIELD:
                changes[key] = parse_text(FIELD[key], text)
            else:
                problems.append(f"unknown setting {_short(key)} in the link; not used")
        except ConfigError as exc:
            problems.append(f"{exc} (in the link); the preset's value is used")
    config, dropped = _fit(base.config, changes, check)
    problems += [f"{msg} (in the link); the preset's value is used" for msg in dropped]
    return Setup(preset_id, config, compare), problems


def _fit(base: RunConfig, changes: dict, check) -> tuple[RunConfig, list[str]]:
    """``base`` with ``changes``: all of them if together they make a valid setup, else one by one (in
    FIELDS order) each that keeps it valid. Returns the config and why each left-out change was refused."""
    def attempt(cfg, more):
        cfg = cfg.replace(**more)
        if check is not None:
            check(cfg)
        return cfg

    try:
        return attempt(base, changes), []
    except ValueError:
        pass
    cfg, refused = base, []
    for name in (f.name for f in FIELDS if f.name in changes):
        try:
            cfg = attempt(cfg, {name: changes[name]})
        except ValueError as exc:
            refused.append(f"{name} = {_short(_format(changes[name]))}: {str(exc).split('; searched')[0]}")
    return cfg, refused


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


def encode(setup: Setup) -> str:
    """The query of ``setup``: its preset, then every setting (in FIELDS order) and Compare where they
    differ from the preset."""
    base = preset_setup(setup.preset)
    items = [(PRESET_KEY, setup.preset)]
    items += [(f.name, _format(getattr(setup.config, f.name))) for f in FIELDS
              if getattr(setup.config, f.name) != getattr(base.config, f.name)]
    if setup.compare != base.compare:
        items.append((COMPARE_KEY, _format(setup.compare)))
    return urllib.parse.urlencode(items, safe="")
