"""One model's training state: data, parameters, step counter, histories. Not threaded.

A run is a pure function of its :class:`RunConfig` (seed included): minibatch order of epoch e is
``rng.generator(seed, ORDER, e).permutation(n_train)``, step t draws from ``rng.stream(seed, t)``, and the
evaluation at step t from ``rng.stream(seed, EVAL, t)``. So a run restored from a checkpoint continues
bit for bit. The CLI drives a Run directly; the threaded :class:`khrbm.trainer.Trainer` drives one or two.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..core import eval_kernels, metrics, rng
from ..config import FIELD, LIVE_FIELDS, MID_RUN_FIELDS, ConfigError, RunConfig
from ..data import Dataset, load_dataset
from ..core.kernels import make_stepper
from ..core.probe import xi_probe
from ..core.rbm import init_params, sigmoid
from ..core.step import StepResult, StepSettings
from .checkpoint import (CHECKPOINT_VERSION, HISTORY_KEYS, XI_KEYS, CheckpointError, check_fits, history_rows,
                         history_table, read_checkpoint, write_npz_atomic)
from .competition import ModeCompetition

ORDER = 0x0D3E       # purpose id: minibatch order of an epoch
EVAL = 0xE7A1        # purpose id: random numbers of an evaluation
PROBE = 0x9B0E       # purpose id: random numbers of a ξ probe
EXPLODE = 1e4        # max |θ| above which a run counts as diverged (the CLI and the Trainer alike)


def visible_units(cfg: RunConfig, dataset: Dataset) -> int:
    """N: the pixels, plus the one-hot label units of a cRBM."""
    return dataset.x_train.shape[1] + (dataset.n_classes if cfg.task == "classification" else 0)


def check_ell(cfg: RunConfig, dataset: Dataset) -> None:
    """ConfigError unless ℓ is below the number K of postsynaptic units of the KH mode (TD: N, BU: M)."""
    if cfg.kh_mode == "off":
        return
    K = visible_units(cfg, dataset) if cfg.kh_mode == "td" else cfg.n_hidden
    if cfg.ell >= K:
        raise ConfigError("ell", f"must be below the {K} postsynaptic units of mode {cfg.kh_mode}, got {cfg.ell}")


class Run:
    """Training state of one (c)RBM on one dataset, advanced one minibatch at a time."""

    def __init__(self, config: RunConfig, dataset: Dataset | None = None, stepper=None):
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset)
        if self.dataset.name != config.dataset:
            raise ConfigError("dataset", f"run is configured for {config.dataset!r} but got {self.dataset.name!r}")
        if config.task == "classification" and not self.dataset.n_classes:
            raise ConfigError("task", f"classification needs labels; this {self.dataset.name!r} dataset has none")
        self.n_pixels = self.dataset.x_train.shape[1]
        self.n_labels = self.dataset.n_classes if config.task == "classification" else 0
        n_train = len(self.dataset.x_train) if config.train_size is None else min(config.train_size,
                                                                                    len(self.dataset.x_train))
        self.n_train = n_train
        self.batches_per_epoch = math.ceil(n_train / config.batch_size)
        self.config = config
        check_ell(config, self.dataset)
        self.dtype = np.dtype(config.dtype)
        self.params = init_params(self.n_visible, config.n_hidden, config.init, config.seed, self.dtype)
        self.stepper = stepper or make_stepper(config.backend, self.n_visible, config.n_hidden,
                                               config.batch_size, self.dtype)
        self.step = 0
        self.chain: np.ndarray | None = None
        self._step_norm = None          # ‖θ‖₂ as the last step left θ (for divergence(); used once)
        self.history: list[dict] = []
        self.xi_history: list[dict] = []
        # the KH competition per mode since it was last switched on (counts, winner → inhibited matrix, history)
        self.competition = {"td": ModeCompetition(self.n_visible), "bu": ModeCompetition(config.n_hidden)}
        self.competition_version = 0    # grows whenever the competition state changes (for the snapshots)
        self._order_epoch = -1
        self._order = None

    # --- shapes and data ------------------------------------------------------------------------
    @property
    def n_visible(self) -> int:
        return visible_units(self.config, self.dataset)

    @property
    def epoch(self) -> float:
        return self.step / self.batches_per_epoch

    @property
    def win_counts(self) -> dict:
        """{"td": wins per visible unit, "bu": wins per hidden unit} since each mode was last switched on."""
        return {m: c.wins for m, c in self.competition.items()}

    @property
    def inhibit_counts(self) -> dict:
        return {m: c.inhibited for m, c in self.competition.items()}

    def visible(self, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """The visible vectors of images x (and, for the cRBM, their one-hot labels y) in the run's dtype."""
        V = np.zeros((len(x), self.n_visible), self.dtype)
        V[:, : self.n_pixels] = x
        if self.n_labels:
            V[np.arange(len(x)), self.n_pixels + y] = 1
        return V

    def split(self, split: str = "val", n: int | None = None):
        d = self.dataset
        x, y = (d.x_val, d.y_val) if split == "val" else (d.x_train[: self.n_train], d.y_train[: self.n_train])
        limit = self.config.val_size if split == "val" else None
        for cap in (limit, n):
            if cap is not None:
                x, y = x[:cap], y[:cap]
        return x, y

    def batch_indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.batches_per_epoch)
        if epoch != self._order_epoch:
            self._order = rng.generator(self.config.seed, ORDER, epoch).permutation(self.n_train)
            self._order_epoch = epoch
        B = self.config.batch_size
        return self._order[i * B:(i + 1) * B]

    # --- training ---------------------------------------------------------------------------------
    def settings(self) -> StepSettings:
        return StepSettings.from_config(self.config, self.epoch, self.n_labels)

    def train_batch(self) -> StepResult:
        """One minibatch: KH modulation (if active), then the CD/PCD step (Eq. 9)."""
        idx = self.batch_indices(self.step)
        X = self.visible(self.dataset.x_train[idx], self.dataset.y_train[idx])
        st = self.settings()
        chain = None
        if st.persistent:
            if self.chain is None or len(self.chain) != len(X):
                self.chain = X.copy() if self.chain is None else self._resize_chain(len(X))
            chain = self.chain
        key = rng.stream(self.config.seed, self.step)
        if self.config.probe_every and st.kh_active and self.step % self.config.probe_every == 0:
            ratio, cosine = xi_probe(X, self.params, st, rng.stream(self.config.seed, PROBE, self.step),
                                     self.config.probe_trials, chain)
            self.xi_history.append({"step": self.step, "ratio": ratio, "cosine": cosine})
        result = self.stepper.step(self.params, X, st, key, chain)
        self._step_norm = getattr(self.stepper, "params_norm", None)   # ‖θ‖₂ from the step, if it says
        if st.persistent:
            self.chain = result.chain           # the stepper hands over a fresh array
        if result.ranked is not None:
            self._count(st, result.ranked)
        self.step += 1
        return result

    def _resize_chain(self, n: int) -> np.ndarray:
        reps = -(-n // len(self.chain))
        return np.tile(self.chain, (reps, 1))[:n].copy()

    def _count(self, st: StepSettings, ranked: np.ndarray):
        self.competition[st.kh_mode].add(ranked, st.ell_band)
        self.competition_version += 1

    def reset_counts(self, mode: str):
        """KH mode ``mode`` is switched on: its competition counts start again from zero at this step."""
        self.competition[mode].reset(self.step)
        self.competition_version += 1

    def train_epoch(self, progress=None):
        """Finish the current epoch (all of it, from a whole-epoch boundary)."""
        end = (self.step // self.batches_per_epoch + 1) * self.batches_per_epoch
        while self.step < end:
            self.train_batch()
            if progress is not None:
                progress(1)

    def update(self, **changes) -> dict:
        """Change live settings (next minibatch on). Returns {field: (old, new)} of what changed."""
        for name in changes:
            if name not in FIELD:
                raise ConfigError(name, "unknown field")
            if name not in LIVE_FIELDS:
                raise ConfigError(name, "changes the model and needs a reset")
        new = self.config.replace(**changes)
        check_ell(new, self.dataset)
        return self.apply(new)

    def apply(self, config: RunConfig) -> dict:
        """Put ``config``, already checked (RunConfig, ``check_ell``), in force from the next minibatch; it
        may differ from the current one only in settings a running model takes (MID_RUN_FIELDS), else
        ConfigError. Returns {field: (old, new)} of what changed."""
        diff = {f: (getattr(self.config, f), getattr(config, f)) for f in FIELD
                if getattr(self.config, f) != getattr(config, f)}
        fixed = [f for f in diff if f not in MID_RUN_FIELDS]
        if fixed:
            raise ConfigError(fixed[0], "changes the model and needs a reset")
        self.config = config
        return diff

    def divergence(self) -> str | None:
        """None while every parameter is finite and at most EXPLODE in size, else what went wrong and the
        likely cause, in one line. The one rule of "diverged" (CLI and Trainer); allocates no array. Right after
        a Numba step it usually reads nothing: the step's ‖θ‖₂ ≥ max |θ| settles it when ≤ EXPLODE."""
        norm, self._step_norm = self._step_norm, None
        if norm is not None and norm <= EXPLODE * (1 - 1e-6):      # (the float32 sum's rounding)
            return None
        p = self.params
        extremes = [float(v) for x in (p.W, p.a, p.b) if x.size for v in (x.max(), x.min())]
        worst = max(map(abs, extremes), default=0.0)
        if any(math.isnan(v) for v in extremes):
            what = "became NaN"
        elif math.isinf(worst):
            what = "became infinite"
        elif worst > EXPLODE:
            what = f"exploded (max |θ| = {worst:.3g} > {EXPLODE:g})"
        else:
            return None
        cfg = self.config
        kh = cfg.kh_mode != "off"
        if cfg.init == "std" and (cfg.lr >= 0.5 or (kh and cfg.eps0 >= 0.5)):
            cause = "std init with a large ε0 or η often diverges"
        elif cfg.lr >= 1.0:
            cause = f"the learning rate η = {cfg.lr:g} is large"
        elif kh and cfg.eps0 >= 1.0:
            cause = f"the KH step ε0 = {cfg.eps0:g} is large"
        else:
            cause = "the step sizes are too large for this model"
        return f"weights {what} at step {self.step} (epoch {self.epoch:.2f}) — {cause}"

    # --- evaluation -------------------------------------------------------------------------------
    @property
    def metrics(self):
        """The metric functions of this run's backend: the NumPy transcription of SPEC for "numpy",
        else the Numba evaluation kernels (same values: tests/test_eval_kernels.py)."""
        return metrics if self.config.backend == "numpy" else eval_kernels

    def reconstruct(self, V: np.ndarray) -> np.ndarray:
        """Mean-field reconstruction σ(σ(VW+b)Wᵀ+a) of visible vectors (for display)."""
        p = self.params
        if self.config.backend == "numpy":
            return sigmoid(sigmoid(V @ p.W + p.b) @ p.W.T + p.a)
        return eval_kernels.mean_field_reconstruction(V, p)

    def evaluate(self, n_val: int | None = None, n_train: int | None = None) -> dict:
        """Metrics at the current step on the first ``n_val`` validation images (None: all of them, within
        ``val_size``) and the first ``n_train`` training images (None: the fixed sample of ``eval_size``);
        appended to ``history``. The MSE and the cross-entropy of a split share one key, so one hidden
        sample per image serves both (Eqs. 11, 12); the Numba backend scores a split in one pass
        (:func:`eval_kernels.split_metrics`: the MSE, the cross-entropy and the cRBM's accuracy)."""
        point = {"step": self.step, "epoch": self.epoch, "eps": self.settings().eps}
        n_train = self.config.eval_size if n_train is None else n_train
        for split, n in (("val", n_val), ("train", n_train)):
            x, y = self.split(split, n)
            key = rng.stream(rng.stream(self.config.seed, EVAL, self.step, split == "train"), 1)
            accuracy = split == "val" and self.n_labels > 0
            if self.metrics is eval_kernels:
                mse, ce, acc = eval_kernels.split_metrics(x, y, self.params, key, self.n_labels, accuracy)
            else:
                mse, ce = metrics.reconstruction_metrics(self.visible(x, y), self.params, key, self.n_pixels)
                acc = metrics.crbm_accuracy(x, y, self.params, self.n_labels) if accuracy else math.nan
            point[f"{split}_mse"], point[f"{split}_ce"] = mse, ce
            if split == "val":
                point["accuracy"] = acc
        point["overlap"] = self.metrics.receptive_field_overlap(self.params.W, self.n_pixels)
        self.history.append({k: point[k] for k in HISTORY_KEYS})
        if self.config.kh_mode != "off":       # the competition counts of the mode on, for plots over time
            self.competition[self.config.kh_mode].record(self.step)
            self.competition_version += 1
        return self.history[-1]

    # --- checkpoints --------------------------------------------------------------------------------
    def state_arrays(self) -> dict:
        arrays = {"W": self.params.W, "a": self.params.a, "b": self.params.b,
                  "step": np.int64(self.step), "version": np.int64(CHECKPOINT_VERSION),
                  "config_json": np.array(self.config.to_json()),
                  "history": history_table(self.history, HISTORY_KEYS), "xi_history": history_table(self.xi_history, XI_KEYS)}
        for mode, competition in self.competition.items():
            arrays.update(competition.arrays(mode))
        if self.chain is not None:
            arrays["chain"] = self.chain
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write the whole run state to ``path`` (.npz) atomically."""
        return write_npz_atomic(path, self.state_arrays())

    @classmethod
    def load(cls, path: str | Path, dataset: Dataset | None = None, config: RunConfig | None = None,
             stepper=None) -> "Run":
        """Restore a run saved by :meth:`save`. ``config`` may override live fields of the saved one."""
        arrays = read_checkpoint(path)
        saved = RunConfig.from_json(str(arrays["config_json"]))
        if config is not None:
            model_diff = [f for f in FIELD if f not in MID_RUN_FIELDS
                          and getattr(config, f) != getattr(saved, f)]
            if model_diff:
                raise CheckpointError(f"{path}: the checkpoint's {model_diff[0]} is "
                                      f"{getattr(saved, model_diff[0])!r}, the config asks for "
                                      f"{getattr(config, model_diff[0])!r}")
            saved = config
        run = cls(saved, dataset, stepper)
        run.restore(arrays, str(path))
        return run

    def restore(self, arrays: dict, source: str = "checkpoint"):
        """Take the state in ``arrays`` (as checked by ``checkpoint.check_run_arrays``); CheckpointError
        unless they fit this run's units and minibatches per epoch."""
        check_fits(arrays, source, self.n_visible, self.config.n_hidden, self.batches_per_epoch,
                   FIELD["epochs"].bounds[1])
        p = self.params
        p.W[...], p.a[...], p.b[...] = arrays["W"], arrays["a"], arrays["b"]
        self._step_norm = None
        self.step = int(arrays["step"])
        self.chain = np.array(arrays["chain"], self.dtype) if "chain" in arrays else None
        self.history = history_rows(arrays["history"], HISTORY_KEYS)
        self.xi_history = history_rows(arrays["xi_history"], XI_KEYS)
        for mode, competition in self.competition.items():
            competition.restore(arrays, mode)
        self.competition_version += 1


def history_columns(rows: list[dict], keys=HISTORY_KEYS) -> dict:
    """A list of history rows as a dict of 1-D float arrays (empty arrays when there are none)."""
    return {k: np.array([r[k] for r in rows], np.float64) for k in keys}


def history_json(rows: list[dict]) -> str:
    return json.dumps([{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                       for r in rows], indent=1)
