"""A link that reproduces a setup: the URL query carries the preset and every setting that differs from it,
Compare included (``/app?preset=story&kh_mode=bu&eps0=0.02&compare=false``), and arm B's live settings where
they differ from A's plain twin (``B.delta=0.4``: after a lesson's event for arm A, or a recalled setup).

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

from ..config import FIELD, FIELDS, LIVE_FIELDS, ConfigError, Field, RunConfig, parse_text
from .presets import PRESETS

PRESET_KEY = "preset"
COMPARE_KEY = "compare"
ARM_B_PREFIX = "B."        # B.<live field>: arm B's own value
MAX_QUERY = 4096           # characters; a longer query is not read at all
MAX_KEYS = 64
COMPARE_FIELD = Field(COMPARE_KEY, bool, False, "train the plain RBM beside it (arm B)")


def plain_twin(config: RunConfig) -> RunConfig:
    """Arm B of a comparison as the app makes it: the same settings with KH off (the plain RBM)."""
    return config.replace(kh_mode="off")


@dataclass(frozen=True)
class Setup:
    """What a link restores: a preset (by id), the run's settings (arm A), the Compare switch, and arm B's
    settings when they are not A's plain twin (``config_b``; None: the plain twin)."""
    preset: str
    config: RunConfig
    compare: bool
    config_b: RunConfig | None = None

    @classmethod
    def of(cls, preset: str, config_a: RunConfig, config_b: RunConfig | None, compare: bool | None = None
           ) -> "Setup":
        """The setup of arms A and B (None: a single run); ``compare`` (default: B given) may switch B on as
        the plain twin, or off. B is kept only where it differs from A's plain twin."""
        compare = config_b is not None if compare is None else compare
        explicit = compare and config_b is not None and config_b != plain_twin(config_a)
        return cls(preset, config_a, compare, config_b if explicit else None)

    def arms(self) -> tuple[RunConfig, RunConfig | None]:
        """(config A, config B or None): the configs a Trainer takes."""
        if not self.compare:
            return self.config, None
        return self.config, self.config_b if self.config_b is not None else plain_twin(self.config)

    def changed(self, name: str, value) -> "Setup":
        """The setup after a person's change of setting ``name``: both arms take it, except the KH mode,
        which only arm A takes (arm B stays the plain RBM)."""
        a, b = self.arms()
        if b is not None and name != "kh_mode":
            b = b.replace(**{name: value})
        return Setup.of(self.preset, a.replace(**{name: value}), b, self.compare)


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

    changes, b_changes, compare = {}, {}, base.compare
    for key, text in single.items():
        arm_b = key[len(ARM_B_PREFIX):] if key.startswith(ARM_B_PREFIX) else None
        try:
            if key == COMPARE_KEY:
                compare = parse_text(COMPARE_FIELD, text)
            elif key in FIELD:
                changes[key] = parse_text(FIELD[key], text)
            elif arm_b in LIVE_FIELDS:
                b_changes[arm_b] = parse_text(FIELD[arm_b], text)
            elif arm_b in FIELD:
                problems.append(f"'{key}' in the link: arm B shares every setting but the live ones with A; "
                                f"not used")
            else:
                problems.append(f"unknown setting {_short(key)} in the link; not used")
        except ConfigError as exc:
            problems.append(f"arm B: {exc} (in the link); A's value is used" if arm_b
                            else f"{exc} (in the link); the preset's value is used")
    config, dropped = _fit(base.config, changes, check)
    problems += [f"{msg} (in the link); the preset's value is used" for msg in dropped]
    config_b = None
    if b_changes and not compare:
        problems.append("the link sets arm B (B.…) while Compare is off; not used")
    elif b_changes:
        config_b, dropped = _fit(plain_twin(config), b_changes, check)
        problems += [f"arm B: {msg} (in the link); A's value is used" for msg in dropped]
    return Setup.of(preset_id, config, config_b, compare), problems


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
    differ from the preset, then arm B's live settings where they differ from A's plain twin."""
    base = preset_setup(setup.preset)
    items = [(PRESET_KEY, setup.preset)]
    items += [(f.name, _format(getattr(setup.config, f.name))) for f in FIELDS
              if getattr(setup.config, f.name) != getattr(base.config, f.name)]
    if setup.compare != base.compare:
        items.append((COMPARE_KEY, _format(setup.compare)))
    if setup.config_b is not None:
        twin = plain_twin(setup.config)
        items += [(ARM_B_PREFIX + f.name, _format(getattr(setup.config_b, f.name))) for f in FIELDS
                  if f.name in LIVE_FIELDS and getattr(setup.config_b, f.name) != getattr(twin, f.name)]
    return urllib.parse.urlencode(items, safe="")
