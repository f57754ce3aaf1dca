"""The authors' tuned KH settings (SPEC, "The authors' tuned hyperparameters": their published configs, all
CD-1, 500 epochs, p = 2, ℓ = 1; R = 1 for std init, 0.1 for lecun). Shared by the app's presets and
``khrbm repro``."""
from __future__ import annotations

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


def authors_kh(task: str, dataset: str, n_hidden: int, init: str, mode: str) -> dict:
    """The RunConfig fields of the authors' tuned KH setting: kh_mode, eps0, delta, radius, ell, p."""
    eps0, delta = AUTHORS_TABLE[(task, dataset, n_hidden, init)][mode]
    return {"kh_mode": mode, "eps0": eps0, "delta": delta, "radius": RADIUS[init], "ell": 1, "p": 2.0}
