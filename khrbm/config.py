"""Run configuration: one table of fields, their bounds, and whether they may change mid-run.

Every run is a pure function of a :class:`RunConfig` (which includes the seed). The field table
``FIELDS`` is the single source of truth: validation, the CLI flags and the app's widgets are all
derived from it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


MAX_CONFIG_BYTES = 1 << 20     # a run config is a few hundred bytes; a config file may not exceed 1 MiB
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
NULL_WORDS = ("none", "null")


class _ShortRepr(reprlib.Repr):
    """reprlib with small limits; integers too long for ``repr`` (> 4300 digits) are described instead."""

    def __init__(self):
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlong = 40
        self.maxlevel, self.maxlist, self.maxdict = 2, 4, 4

    def repr_int(self, x, level):
        if x.bit_length() > 256:
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


def shown(value: Any) -> str:
    """A short one-line repr of ``value`` for messages: a 50 MB string or a 400-digit number stays short."""
    return _ShortRepr().repr(value)


class ConfigError(ValueError):
    """A config field is missing, of the wrong type or out of range. ``str(err)`` is one line."""

    def __init__(self, field: str, message: str):
        self.field = field
        name = field if isinstance(field, str) and field.isprintable() and len(field) <= 60 else shown(field)
        super().__init__(f"config field '{name}': {message}")


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
    Field("dataset", str, "mnist", "training data ('array': arrays passed in from Python, see "
          "khrbm.data.array_dataset)", choices=("mnist", "kmnist", "fashion-mnist", "bars", "array")),
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
    Field("backend", str, "numba", "numba kernels (fast), the plain NumPy transcription of SPEC, or cuda "
          "(an NVIDIA GPU through Numba's CUDA target; pip install 'khrbm[cuda]')",
          choices=("numba", "numpy", "cuda")),
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
    Field("eval_size", int, 1000, "images of a cheap metric point: the validation subsample of the app's "
          "in-run points, and the fixed training sample (the first n) that every point scores", bounds=(1, 10**7),
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
            raise ConfigError(sorted(unknown, key=str)[0], f"unknown field; known fields: {', '.join(FIELD)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes) -> "RunConfig":
        """The config in JSON ``text`` (str, or bytes that must be UTF-8); ConfigError (one line) for text
        over MAX_CONFIG_BYTES, bytes that are not UTF-8, invalid JSON, nesting too deep to parse, numbers
        with too many digits, or any field out of range."""
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError("<json>", f"too long for a run config ({len(text):,} > {MAX_CONFIG_BYTES:,})")
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError("<json>", f"not UTF-8 text (byte 0x{text[exc.start]:02x} at offset {exc.start})")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("<json>", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        except RecursionError:
            raise ConfigError("<json>", "not a run config: its JSON is nested too deeply") from None
        except ValueError:             # an integer literal beyond sys.get_int_max_str_digits()
            raise ConfigError("<json>", "not a run config: it holds an integer with thousands of digits") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """The config in JSON file ``path``. Reads at most MAX_CONFIG_BYTES + 1 bytes, so that ``/dev/zero``
        or a huge file is refused at once; ConfigError (one line) if unreadable or invalid."""
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError("<file>", f"cannot read {path}: {exc.strerror or exc}")
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError("<file>", f"{path} is larger than {MAX_CONFIG_BYTES:,} bytes; a run config is a "
                                        f"small JSON file")
        return cls.from_json(raw)


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
    bad = ConfigError(f.name, f"must be {describe_range(f)}, got {shown(value)}")
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
        try:
            value = float(value)
        except OverflowError:         # an int beyond the float range
            raise bad from None
        if not math.isfinite(value):
            raise bad
    lo, hi = f.bounds
    if not lo <= value <= hi:
        raise bad
    return value


def parse_text(f: Field, text: str) -> Any:
    """The value typed as ``text`` for field ``f`` (a CLI flag, a text box): ``true``/``false`` (also
    yes/no, on/off, 1/0) for switches, ``none``/``null`` for optional fields, numbers as Python reads them;
    checked by :func:`check_value`. ConfigError (one line) otherwise."""
    word = text.strip()
    low = word.lower()
    if f.optional and low in NULL_WORDS:
        return None
    value: Any = word
    if f.kind is bool:
        value = True if low in TRUE_WORDS else False if low in FALSE_WORDS else word
    elif f.kind in (int, float):
        for kind in ((int, float) if f.kind is int else (float,)):
            try:
                value = kind(word)
                break
            except ValueError:        # not a number (or an int literal of too many digits: tried as float)
                continue
        else:
            raise ConfigError(f.name, f"must be {describe_range(f)}, got {shown(text)}")
    return check_value(f, value)


def read_json_or_yaml(path: str | Path, what: str) -> Any:
    """The data in file ``path``: YAML for ``.yaml``/``.yml`` (needs PyYAML), else JSON. ValueError, one line
    naming the file and ``what`` it should hold (e.g. "lesson", "sweep spec"), if unreadable or not parsable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror})")
    if path.suffix.lower() not in (".yaml", ".yml"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    try:
        import yaml
    except ImportError:
        raise ValueError(f"{path}: a YAML {what} needs PyYAML (pip install pyyaml); or write it as JSON")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})")
