"""The paper's experiments as sweeps (Tambaş, Subaşı, Kabakçıoğlu 2025; settings from SPEC), at three budgets.

Targets (each a list of run configs; ``all`` is their union, runs shared between targets run once):

* ``table1``: cRBM on MNIST, M ∈ {100, 500} × init ∈ {LeCun, std} × {CD-1, KH_TD-CD-1, CD-10, KH_TD-CD-10}; max
  validation accuracy (Table I). KH settings: the authors' tuned classification presets (SPEC); they are tuned
  for CD-1 and used for CD-10 too (SPEC has no CD-10 presets).
* ``fig2``: one KH_TD run (reconstruction, M = 100, LeCun, CD-1, KH phased out at S = 3/5 of the epochs as the
  paper's 300 of 500) with the ξ probe (Eq. 10, SPEC "Fig. 2 diagnostics").
* ``fig3``: reconstruction, M = 100, CD-1, init ∈ {std, LeCun}, plain vs KH_TD (authors' presets).
* ``fig4``: reconstruction, M = 100, LeCun, CD-1, KH_TD with S ∈ {50, 100, 200, 300, 400, 500}/500 of the epochs,
  and the plain RBM.
* ``fig5``: cRBM, M = 500, CD-1, both inits, plain vs KH_TD (validation accuracy over the epochs).
* ``overlap``: reconstruction, M = 100, LeCun, CD-1: plain, KH_TD, KH_BU; receptive-field overlap after training
  (the paper does not say which setting gave 0.41 / 0.37 / 0.35; this is its Fig. 3/4 setting).
* ``shuffled``: Suppl. A's control, KH_TD's ξ replaced by a random permutation of its components each step
  (``shuffle_xi``), in the Fig. 3 setting, beside plain and KH_TD.
* ``likelihood`` (not in the paper): AIS test log-likelihood of plain vs KH_TD RBMs, M = 500, CD-1, LeCun,
  beside Salakhutdinov & Murray 2008's ≈ -125 nats for CD-1.

Budgets: ``paper`` is the paper's protocol (60,000 training images, the 10,000 test images as validation, 500
epochs, B = 100, η = 0.1, 10 seeds where the paper averages ten runs, one "typical" run for Fig. 2, probes of
3000 trials); ``quick`` scales the same experiments down to finish in ≤ 30 min per target on 2 cores; ``smoke``
runs everything in ≤ 2 min (CI).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import RunConfig
from ..presets import authors_kh

TARGETS = ("table1", "fig2", "fig3", "fig4", "fig5", "overlap", "shuffled", "likelihood")
MNIST_TRAIN = 60_000
FIG4_S = (50, 100, 200, 300, 400, 500)          # of 500 epochs
FIG2_S = 300                                    # of 500 epochs: "fully phased out at 300 epochs"


@dataclass(frozen=True)
class Budget:
    name: str
    train_size: int | None          # None: all 60,000 training images
    val_size: int | None            # None: all 10,000 test images
    epochs: dict                    # target -> epochs
    seeds: dict                     # target -> seeds per config
    probe_trials: int               # trials per ξ probe (the paper: 3000)
    probes_per_epoch: int
    probes_per_point: int           # Fig. 2 pools this many probes per point (the paper: 20 steps)
    ais_betas: int                  # AIS intermediate distributions (Salakhutdinov & Murray 2008: 14,500)
    ais_chains: int
    note: str = ""
    keep_snapshots: int = 5         # receptive-field snapshots kept per overlap run (the epoch slider)

    def epochs_of(self, target: str) -> int:
        return self.epochs.get(target, self.epochs["default"])

    def seeds_of(self, target: str) -> int:
        return self.seeds.get(target, self.seeds["default"])


BUDGETS = {
    "paper": Budget("paper", None, None, {"default": 500},
                    {"default": 10, "fig2": 1, "likelihood": 5}, probe_trials=3000, probes_per_epoch=2,
                    probes_per_point=20, ais_betas=14_500, ais_chains=100,
                    note="the paper's protocol: 60,000 training images, 10,000 validation (test) images, 500 epochs; "
                         "10 seeds per setting (the paper's averages are over ten runs; Table I's seed count is not "
                         "stated), one run for Fig. 2 ('a typical training run'), 5 for the likelihood (not in the paper)"),
    "quick": Budget("quick", 10_000, 5_000, {"default": 30, "table1": 10, "fig5": 15, "likelihood": 20},
                    {"default": 3, "table1": 2, "fig2": 2}, probe_trials=100, probes_per_epoch=2,
                    probes_per_point=4, ais_betas=2000, ais_chains=50,
                    note="scaled down to finish each target in ≤ 30 min on 2 cores: 10,000 training and 5,000 "
                         "validation images, 10-30 epochs, 2-3 seeds, probes of 100 trials"),
    "smoke": Budget("smoke", 500, 200, {"default": 2}, {"default": 2, "table1": 1, "fig4": 1, "fig5": 1, "fig2": 1},
                    probe_trials=3, probes_per_epoch=2, probes_per_point=2, ais_betas=100, ais_chains=16,
                    note="a check that every part runs (CI): 500 training and 200 validation images, 2 epochs, 1-2 "
                         "seeds; its verdicts say nothing about the paper", keep_snapshots=2),
}


def base_fields(budget: Budget, target: str) -> dict:
    """Fields shared by every run of ``target``: MNIST, B = 100, η = 0.1, CD (the paper's protocol)."""
    return {"dataset": "mnist", "batch_size": 100, "lr": 0.1, "sampler": "cd", "k": 1, "dtype": "float32",
            "train_size": budget.train_size, "val_size": budget.val_size, "epochs": budget.epochs_of(target)}


def _runs(budget: Budget, target: str, variants: list[dict], seeds: int | None) -> list[RunConfig]:
    base = base_fields(budget, target)
    n = seeds or budget.seeds_of(target)
    configs = []
    for v in variants:
        for seed in range(1, n + 1):
            cfg = RunConfig(**{**base, **v, "seed": seed})
            if cfg.horizon is not None and cfg.horizon >= cfg.epochs:      # S = all epochs: the schedule's default
                cfg = cfg.replace(horizon=None)
            configs.append(cfg)
    return configs


def pair(task: str, m: int, init: str, k: int = 1, modes=("off", "td")) -> list[dict]:
    """The plain (mode off) and KH variants of one MNIST setting, KH with the authors' tuned values (SPEC)."""
    return [{"task": task, "n_hidden": m, "init": init, "k": k,
             **(authors_kh(task, "mnist", m, init, mode) if mode != "off" else {"kh_mode": "off"})} for mode in modes]


def _horizon(budget: Budget, target: str, of_500: float) -> float:
    return max(1.0, round(budget.epochs_of(target) * of_500 / 500))


def target_variants(target: str, budget: Budget) -> list[dict]:
    """The settings (config fields, no seed) of a target at a budget."""
    if target == "table1":
        return [v for m in (100, 500) for init in ("lecun", "std") for k in (1, 10)
                for v in pair("classification", m, init, k)]
    if target == "fig3":
        return [v for init in ("std", "lecun") for v in pair("reconstruction", 100, init)]
    if target == "fig4":
        plain, td = pair("reconstruction", 100, "lecun")
        horizons = dict.fromkeys(_horizon(budget, target, s) for s in FIG4_S)      # distinct at small budgets
        return [plain] + [{**td, "horizon": h} for h in horizons]
    if target == "fig5":
        return [v for init in ("lecun", "std") for v in pair("classification", 500, init)]
    if target == "fig2":
        _, td = pair("reconstruction", 100, "lecun")
        n_train = min(budget.train_size or MNIST_TRAIN, MNIST_TRAIN)
        every = max(1, math.ceil(n_train / 100) // budget.probes_per_epoch)
        return [{**td, "horizon": _horizon(budget, target, FIG2_S), "probe_every": every,
                 "probe_trials": budget.probe_trials}]
    if target == "overlap":
        return pair("reconstruction", 100, "lecun", modes=("off", "td", "bu"))
    if target == "shuffled":
        out = []
        for init in ("std", "lecun"):
            plain, td = pair("reconstruction", 100, init)
            out += [plain, td, {**td, "shuffle_xi": True}]
        return out
    if target == "likelihood":
        return pair("reconstruction", 500, "lecun")
    raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGETS)}, all")


def target_configs(target: str, budget: Budget, seeds: int | None = None) -> list[RunConfig]:
    return _runs(budget, target, target_variants(target, budget), seeds)


def selected(target: str) -> tuple[str, ...]:
    return TARGETS if target == "all" else (target,)


def plan_configs(target: str, budget: Budget, seeds: int | None = None) -> dict[str, list[RunConfig]]:
    """{target: its configs} for ``target`` (or every target for ``all``)."""
    return {t: target_configs(t, budget, seeds) for t in selected(target)}


def keep_every(configs: dict[str, list[RunConfig]], budget: Budget) -> dict:
    """{run key: n}: the overlap runs keep a checkpoint every n epochs (the receptive-field epoch slider)."""
    from .sweep import run_key
    return {run_key(c): max(1, c.epochs // budget.keep_snapshots) for c in configs.get("overlap", [])}
