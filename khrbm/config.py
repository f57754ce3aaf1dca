"""Run configuration: one table of fields, their bounds, and whether they may change mid-run.

Every run is a pure function of a :class:`RunConfig` (which includes the seed). The field table
``FIELDS`` is the single source of truth: validation, the CLI flags and the app's widgets are all
derived from it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config field is missing, of the wrong type or out of range. ``str(err)`` is one line."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"config field '{field}': {message}")


@dataclass(frozen=True)
class Field:
    name: str
    kind: type                      # int, float, str or bool
    default: Any
    help: str
    choices: tuple | None = None    # allowed values for str fields
    bounds: tuple | None = None     # (lo, hi) inclusive for numbers
    live: bool = False              # may change while a run is in progress (per arm of an A/B)
    run_wide: bool = False          # not live, yet a running trainer takes it for every arm (epochs)
    optional: bool = False          # None allowed (means "derived", see help)
    symbol: str = ""                # short label used by the app


FIELDS: tuple[Field, ...] = (
    # --- model: changing any of these needs a reset -------------------------------------------
    Field("dataset", str, "mnist", "training data", choices=("mnist", "kmnist", "fashion-mnist", "bars")),
    Field("task", str, "reconstruction", "reconstruction (RBM) or classification (cRBM with label units)",
          choices=("reconstruction", "classification")),
    Field("n_hidden", int, 100, "number of hidden units M", bounds=(1, 10_000), symbol="M"),
    Field("init", str, "lecun", "weight init: std W~N(0,1), lecun W~N(0,1/N); biases 0", choices=("std", "lecun")),
    Field("sampler", str, "cd", "cd: chain starts at the data; pcd: persistent chain", choices=("cd", "pcd")),
    Field("label_sampling", str, "argmax", "cRBM negative phase for the label block: argmax one-hot "
          "(the authors' code) or a sample from the softmax", choices=("argmax", "softmax")),
    Field("batch_size", int, 100, "minibatch size B", bounds=(1, 10_000), symbol="B"),
    Field("epochs", int, 30, "number of passes over the training set", bounds=(1, 100_000), run_wide=True),
    Field("train_size", int, None, "use only the first n training images (default: all)",
          bounds=(1, 10_000_000), optional=True),
    Field("val_size", int, None, "use only the first n validation images (default: all)",
          bounds=(1, 10_000_000), optional=True),
    Field("dtype", str, "float32", "floating-point precision of the parameters", choices=("float32", "float64")),
    Field("backend", str, "numba", "numba kernels (fast) or the plain NumPy transcription of SPEC",
          choices=("numba", "numpy")),
    Field("seed", int, 1, "seed of every random stream of the run", bounds=(0, 2**63 - 1)),
    # --- RBM, live ------------------------------------------------------------------------------
    Field("lr", float, 0.1, "learning rate η of the CD step", bounds=(0.0, 10.0), live=True, symbol="η"),
    Field("k", int, 1, "Gibbs steps of CD-k / PCD-k", bounds=(1, 1000), live=True, symbol="k"),
    # --- Krotov-Hopfield modulation, live -------------------------------------------------------
    Field("kh_mode", str, "off", "KH modulation before each CD step: off, td (top-down: x = sampled h, "
          "postsynaptic = visible) or bu (bottom-up: x = data, postsynaptic = hidden)",
          choices=("off", "td", "bu"), live=True, symbol="mode"),
    Field("eps0", float, 0.04, "KH step size at epoch 0", bounds=(0.0, 10.0), live=True, symbol="ε0"),
    Field("delta", float, 0.4, "anti-Hebbian strength Δ given to the inhibited unit", bounds=(0.0, 10.0),
          live=True, symbol="Δ"),
    Field("ell", int, 1, "which ranked unit is inhibited: ℓ places below the winner (paper's convention)",
          bounds=(1, 10_000), live=True, symbol="ℓ"),
    Field("ell_band", bool, False, "inhibit every unit ranked 1..ℓ below the winner instead of only the ℓ-th",
          live=True),
    Field("radius", float, 1.0, "sphere radius R of the homeostatic term", bounds=(1e-6, 1e6), live=True,
          symbol="R"),
    Field("p", float, 2.0, "Lebesgue exponent p of the KH currents", bounds=(1.0, 10.0), live=True, symbol="p"),
    Field("horizon", float, None, "S: epochs until ε reaches 0, ε = ε0 (1 - epoch/S)^(3/2) (default: epochs)",
          bounds=(1e-9, 1e9), live=True, optional=True, symbol="S"),
    Field("shuffle_xi", bool, False, "shuffled control (Suppl. A): apply a random permutation of the KH "
          "contribution ξ instead of KH itself", live=True),
    # --- diagnostics ----------------------------------------------------------------------------
    Field("probe_every", int, 0, "run the Fig. 2 ξ probe every n minibatches (0: never)", bounds=(0, 10**9),
          live=True),
    Field("probe_trials", int, 20, "trials averaged by one ξ probe (common random numbers)",
          bounds=(1, 100_000), live=True),
    Field("eval_size", int, 1000, "validation images used for the in-run metric points", bounds=(1, 10**7),
          live=True),
)
FIELD = {f.name: f for f in FIELDS}
LIVE_FIELDS = frozenset(f.name for f in FIELDS if f.live)
RUN_WIDE_FIELDS = frozenset(f.name for f in FIELDS if f.run_wide)
MID_RUN_FIELDS = LIVE_FIELDS | RUN_WIDE_FIELDS      # what a running trainer accepts; the rest needs a reset


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "mnist"
    task: str = "reconstruction"
    n_hidden: int = 100
    init: str = "lecun"
    sampler: str = "cd"
    label_sampling: str = "argmax"
    batch_size: int = 100
    epochs: int = 30
    train_size: int | None = None
    val_size: int | None = None
    dtype: str = "float32"
    backend: str = "numba"
    seed: int = 1
    lr: float = 0.1
    k: int = 1
    kh_mode: str = "off"
    eps0: float = 0.04
    delta: float = 0.4
    ell: int = 1
    ell_band: bool = False
    radius: float = 1.0
    p: float = 2.0
    horizon: float | None = None
    shuffle_xi: bool = False
    probe_every: int = 0
    probe_trials: int = 20
    eval_size: int = 1000

    def __post_init__(self):
        for f in FIELDS:
            object.__setattr__(self, f.name, check_value(f, getattr(self, f.name)))
        if self.task == "classification" and self.dataset == "bars":
            raise ConfigError("task", "classification needs labels; the 'bars' dataset has none")

    @property
    def kh_horizon(self) -> float:
        """S in epochs; defaults to the number of epochs (SPEC, schedule)."""
        return float(self.epochs) if self.horizon is None else float(self.horizon)

    def replace(self, **changes) -> "RunConfig":
        unknown = set(changes) - set(FIELD)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown field; known fields: {', '.join(FIELD)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        if not isinstance(data, dict):
            raise ConfigError("<root>", f"expected a JSON object of fields, got {type(data).__name__}")
        unknown = set(data) - set(FIELD)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown field; known fields: {', '.join(FIELD)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("<json>", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError("<file>", f"cannot read {path}: {exc.strerror}")
        return cls.from_json(text)


def describe_range(f: Field) -> str:
    if f.choices:
        text = "one of " + ", ".join(map(str, f.choices))
    elif f.kind is bool:
        text = "true or false"
    else:
        lo, hi = f.bounds
        text = f"{'an integer' if f.kind is int else 'a number'} in [{lo}, {hi}]"
    return text + (" or null" if f.optional else "")


def check_value(f: Field, value: Any) -> Any:
    """Return ``value`` coerced to the field's type, or raise :class:`ConfigError` naming the range."""
    if value is None:
        if f.optional:
            return None
        raise ConfigError(f.name, f"must be {describe_range(f)}, got null")
    bad = ConfigError(f.name, f"must be {describe_range(f)}, got {value!r}")
    if f.kind is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if f.kind is str:
        if not isinstance(value, str) or value not in f.choices:
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad
    if f.kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise bad
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise bad
    lo, hi = f.bounds
    if not lo <= value <= hi:
        raise bad
    return value



TRUE_TEXT = ("1", "true", "yes", "on")
FALSE_TEXT = ("0", "false", "no", "off")
NULL_TEXT = ("none", "null")
MAX_TEXT = 200                     # longest text a value may be given as (CLI flag, URL query)


def _echo(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text)} characters)"


def parse_value(f: Field, text: str) -> Any:
    """A field's value from text, as given on the command line or in a link's query: ``none``/``null`` for
    an optional field, true/false (1/0, yes/no, on/off) for a flag, else a number or a choice; then checked
    by :func:`check_value`. ConfigError names the field (and echoes at most 40 characters of ``text``)."""
    if not isinstance(text, str):
        raise ConfigError(f.name, f"expected text, got {type(text).__name__}")
    bad = ConfigError(f.name, f"must be {describe_range(f)}, got {_echo(text)}")
    if len(text) > MAX_TEXT:
        raise bad
    low = text.strip().lower()
    if f.optional and low in NULL_TEXT:
        return None
    if f.kind is bool:
        if low in TRUE_TEXT:
            return True
        if low in FALSE_TEXT:
            return False
        raise bad
    if f.kind is str:
        return check_value(f, text)
    try:
        value = int(low) if f.kind is int and low.lstrip("+-").isdigit() else float(low)
    except ValueError:
        raise bad from None
    return check_value(f, value)
