"""Presets: name -> dict of RunConfig fields plus ``compare`` (train the plain RBM beside it, arm B).

The authors' tuned settings come from SPEC's table (their published configs: CD-1, 500 epochs, p = 2,
ℓ = 1, R = 1 for std init and 0.1 for lecun). Every preset is checked against RunConfig in the tests.
"""
from __future__ import annotations

# Fig. 2 probe: every 50 minibatches, a few trials (cheap enough to leave on while watching).
PROBE = {"probe_every": 50, "probe_trials": 4}

INIT_ROBUSTNESS = "Init robustness: plain vs KH (std init)"
FIG3 = "Paper Fig. 3 (lecun, M=100, KH_TD, long run)"
BARS = "Bars (offline, seconds): units own bars"

# (task, dataset, M, init) -> {mode: (eps0, delta)}
AUTHORS_TABLE = {
    ("reconstruction", "mnist", 100, "lecun"): {"td": (0.04, 0.4), "bu": (0.008, 0.2)},
    ("reconstruction", "mnist", 100, "std"): {"td": (0.04, 0.4), "bu": (0.02, 0.2)},
    ("reconstruction", "mnist", 500, "lecun"): {"td": (0.004, 0.6), "bu": (0.01, 0.9)},
    ("reconstruction", "mnist", 500, "std"): {"td": (0.008, 0.2), "bu": (0.02, 0.1)},
    ("reconstruction", "kmnist", 100, "lecun"): {"td": (0.04, 0.0), "bu": (0.04, 0.0)},
    ("reconstruction", "kmnist", 100, "std"): {"td": (0.04, 0.1), "bu": (0.04, 0.5)},
    ("reconstruction", "kmnist", 500, "lecun"): {"td": (0.02, 0.0), "bu": (0.008, 0.1)},
    ("reconstruction", "kmnist", 500, "std"): {"td": (0.004, 0.0), "bu": (0.02, 0.2)},
    ("classification", "mnist", 100, "lecun"): {"td": (0.002, 0.7), "bu": (0.02, 0.0)},
    ("classification", "mnist", 100, "std"): {"td": (0.001, 0.8), "bu": (0.001, 1.0)},
    ("classification", "mnist", 500, "lecun"): {"td": (0.002, 0.0), "bu": (0.04, 0.0)},
    ("classification", "mnist", 500, "std"): {"td": (0.02, 1.0), "bu": (0.04, 0.4)},
    ("classification", "kmnist", 100, "lecun"): {"td": (0.04, 0.5), "bu": (0.0005, 0.4)},
    ("classification", "kmnist", 100, "std"): {"td": (0.001, 0.6), "bu": (0.0005, 0.9)},
    ("classification", "kmnist", 500, "lecun"): {"td": (0.02, 0.0), "bu": (0.04, 0.1)},
    ("classification", "kmnist", 500, "std"): {"td": (0.004, 0.7), "bu": (0.04, 0.4)},
}
RADIUS = {"std": 1.0, "lecun": 0.1}


def _authors(task: str, dataset: str, m: int, init: str, mode: str) -> dict:
    eps0, delta = AUTHORS_TABLE[(task, dataset, m, init)][mode]
    return {"dataset": dataset, "task": task, "n_hidden": m, "init": init, "kh_mode": mode, "eps0": eps0,
            "delta": delta, "radius": RADIUS[init], "ell": 1, "p": 2.0, "k": 1, "lr": 0.1, "batch_size": 100,
            "sampler": "cd", "epochs": 500, "horizon": None, "seed": 1, **PROBE, "compare": True}


PRESETS: dict[str, dict] = {
    INIT_ROBUSTNESS: {"dataset": "mnist", "task": "reconstruction", "n_hidden": 100, "init": "std",
                      "kh_mode": "td", "eps0": 0.04, "delta": 0.4, "radius": 1.0, "ell": 1, "p": 2.0,
                      "k": 1, "lr": 0.1, "batch_size": 100, "sampler": "cd", "epochs": 30, "horizon": None,
                      "seed": 1, **PROBE, "compare": True},
    FIG3: {"dataset": "mnist", "task": "reconstruction", "n_hidden": 100, "init": "lecun", "kh_mode": "td",
           "eps0": 0.04, "delta": 0.4, "radius": 0.1, "ell": 1, "p": 2.0, "k": 1, "lr": 0.1,
           "batch_size": 100, "sampler": "cd", "epochs": 500, "horizon": None, "seed": 1, **PROBE,
           "compare": True},
    # 56 units for the 28 + 28 bars. Measured (seed 1, 10 epochs): 51 of the 56 bars are each owned by a
    # unit (receptive-field cosine > 0.5 with a single bar) under KH_BU, none under plain CD-1; plain
    # CD-1 reconstructs better (MSE 0.063 vs 0.134 per pixel): the competition buys separate features.
    BARS: {"dataset": "bars", "task": "reconstruction", "n_hidden": 56, "init": "lecun", "kh_mode": "bu",
           "eps0": 0.08, "delta": 0.1, "radius": 1.0, "ell": 1, "p": 2.0, "k": 1, "lr": 0.1,
           "batch_size": 100, "sampler": "cd", "epochs": 10, "horizon": None, "seed": 1,
           **PROBE, "compare": True},
}
for (_task, _data, _m, _init), _modes in AUTHORS_TABLE.items():
    for _mode in ("td", "bu"):
        _name = f"Authors: {_task}, {_data}, M={_m}, {_init}, KH_{_mode.upper()}"
        PRESETS[_name] = _authors(_task, _data, _m, _init, _mode)

DESCRIPTIONS = {
    INIT_ROBUSTNESS: "std init; KH_TD (A) should beat plain CD-1 (B): 0.077 vs 0.095 MSE/pixel "
                     "after 30 epochs in the authors' code",
    FIG3: "the paper's Fig. 3 setting; KH_TD wins late in a long run",
    BARS: "Földiák's bars, offline: under KH_BU (A) each hidden unit comes to own one bar; "
          "the plain RBM (B) spreads every bar over many units",
}


def description(name: str) -> str:
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    return "the authors' tuned setting (their published config: CD-1, 500 epochs)"


def groups() -> dict[str, list[str]]:
    """Preset names grouped for the app's drop-down (classroom first, then the authors' table)."""
    classroom = [INIT_ROBUSTNESS, FIG3, BARS]
    return {"Classroom": classroom,
            "Authors' tuned settings (500 epochs)": [n for n in PRESETS if n not in classroom]}


def split(preset: dict) -> tuple[dict, bool]:
    """(RunConfig fields, compare flag) of a preset."""
    fields = {k: v for k, v in preset.items() if k != "compare"}
    return fields, bool(preset.get("compare", False))


def datasets_needed(name: str) -> str:
    return PRESETS[name]["dataset"]
