"""The paper's claims, checked on a sweep's table: numbers beside the paper's, and a verdict per claim.

A verdict compares two arms over seeds. When both arms have the same seeds the comparison is paired by seed
(a plain and a KH run of one seed share their initial weights and minibatch order), otherwise it is Welch's.
With d the mean difference (in the claimed direction) and SE its standard error, a claim

* **holds** when d > t·SE,
* **does not hold** when d < -t·SE (the opposite is measured),
* is **inconclusive at this budget** otherwise, or when an arm has fewer than 2 seeds (no SE),

with t the two-sided 95 % quantile of Student's t at n - 1 degrees of freedom (paired) or min(n_a, n_b) - 1
(Welch, conservatively). Nothing is assumed: a claim with no finished runs is inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..config import FIELDS, RunConfig
from ..viz import describe, mean_se, weighted_mean
from . import repro

HOLDS, FAILS, OPEN = "holds", "does not hold", "inconclusive at this budget"
# Student's t, two-sided 95 %, degrees of freedom 1..30 (beyond: 1.96)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

# Table I of the paper: max validation accuracy (%) and seconds per epoch T, by (k, KH?, M, init)
PAPER_TABLE1 = {(1, False, 100, "lecun"): 90.6, (1, False, 100, "std"): 91.3, (1, False, 500, "lecun"): 94.6,
                (1, False, 500, "std"): 92.0, (1, True, 100, "lecun"): 91.2, (1, True, 100, "std"): 92.1,
                (1, True, 500, "lecun"): 95.6, (1, True, 500, "std"): 96.5, (10, False, 100, "lecun"): 90.4,
                (10, False, 100, "std"): 90.8, (10, False, 500, "lecun"): 95.8, (10, False, 500, "std"): 93.8,
                (10, True, 100, "lecun"): 90.5, (10, True, 100, "std"): 91.2, (10, True, 500, "lecun"): 96.9,
                (10, True, 500, "std"): 97.0}
PAPER_T = {(1, False, 100): 1.1, (1, True, 100): 2.2, (10, False, 100): 3.9, (10, True, 100): 5.0,
           (1, False, 500): 2.5, (1, True, 500): 4.5, (10, False, 500): 9.0, (10, True, 500): 11.1}
PAPER_OVERLAP = {"off": 0.41, "td": 0.37, "bu": 0.35}
SM2008_CD1 = -125.0      # Salakhutdinov & Murray 2008: test log-likelihood (nats) of an RBM, 500 hidden units, CD-1


@dataclass
class Claim:
    target: str
    text: str              # the claim as tested here
    verdict: str
    measured: str          # the numbers behind the verdict
    paper: str = ""        # the paper's numbers, where it gives them

    def line(self) -> str:
        return f"[{self.target}] {self.text}: {self.verdict.upper()}. {self.measured}" + (
            f" Paper: {self.paper}." if self.paper else "")


@dataclass
class Comparison:
    verdict: str
    diff: float
    se: float
    n: int
    paired: bool

    def describe(self, fmt: str = ".4f") -> str:
        if not self.n:
            return "no finished runs"
        if not math.isfinite(self.se):
            return f"difference {self.diff:+{fmt}} (1 seed: no SE)"
        how = "paired by seed" if self.paired else "Welch"
        return f"difference {self.diff:+{fmt}} ± {self.se:{fmt}} ({how}, n = {self.n})"


def t975(df: int) -> float:
    return T975[df - 1] if 1 <= df <= len(T975) else 1.96


def compare(a: dict, b: dict, better: str) -> Comparison:
    """Is arm ``a`` (seed -> value) ``better`` ('lower' or 'higher') than arm ``b``? See the module docstring."""
    a = {s: v for s, v in a.items() if np.isfinite(v)}
    b = {s: v for s, v in b.items() if np.isfinite(v)}
    sign = 1.0 if better == "higher" else -1.0
    if not a or not b:
        return Comparison(OPEN, math.nan, math.nan, 0, False)
    paired = set(a) == set(b)
    if paired:
        d, se, n = mean_se([a[s] - b[s] for s in sorted(a)])
        df = n - 1
    else:
        ma, sa, na = mean_se(list(a.values()))
        mb, sb, nb = mean_se(list(b.values()))
        d, se, n, df = ma - mb, math.sqrt(sa ** 2 + sb ** 2), min(na, nb), min(na, nb) - 1
    if df < 1 or not math.isfinite(se):
        return Comparison(OPEN, d, se, n, paired)
    margin = t975(df) * se
    signed = sign * d
    verdict = HOLDS if signed > margin else FAILS if signed < -margin else OPEN
    return Comparison(verdict, d, se, n, paired)


# --------------------------------------------------------------------------------------------------
# selecting runs of a table
# --------------------------------------------------------------------------------------------------
def select(table, variant: dict, budget, target: str):
    """The rows of finished runs of one setting (every config field as in ``target_configs``, any seed)."""
    cfg = _config(variant, budget, target)
    mask = table["status"] == "done"
    for f in FIELDS:
        if f.name == "seed":
            continue
        value = getattr(cfg, f.name)
        col = table[f.name]
        mask &= col.isna() if value is None else (col == value)
    return table[mask & np.isfinite(table["epoch"].astype(float))]


def _config(variant: dict, budget, target: str) -> RunConfig:
    cfg = RunConfig(**{**repro.base_fields(budget, target), **variant})
    return cfg.replace(horizon=None) if cfg.horizon is not None and cfg.horizon >= cfg.epochs else cfg


def per_seed(rows, how: str = "final", y: str = "val_mse", epoch: float | None = None) -> dict:
    """{seed: value} over the runs in ``rows``: the last epoch's ``y`` (final), its max over epochs (max), or
    its value at ``epoch`` (at)."""
    out = {}
    for seed, run in rows.groupby("seed"):
        run = run.sort_values("epoch")
        if how == "final":
            out[int(seed)] = float(run[y].iloc[-1])
        elif how == "max":
            out[int(seed)] = float(run[y].max())
        else:
            hit = run[np.isclose(run["epoch"].astype(float), epoch)]
            out[int(seed)] = float(hit[y].iloc[0]) if len(hit) else math.nan
    return out


def _stat(values: dict, scale: float = 1.0, fmt: str = ".4f") -> str:
    m, se, n = mean_se([v * scale for v in values.values()])
    if not n:
        return "–"
    return f"{m:{fmt}} ± {se:{fmt}}" if n > 1 else f"{m:{fmt}} (1 seed)"


def _numbers(values: dict, scale: float = 1.0) -> dict:
    m, se, n = mean_se([v * scale for v in values.values()])
    return {"mean": m, "se": se, "n": n}


# --------------------------------------------------------------------------------------------------
# the targets
# --------------------------------------------------------------------------------------------------
def check(target: str, table, budget, extra: dict | None = None) -> tuple[list[Claim], dict]:
    """(claims, numbers) of ``target`` on ``table`` (a DataFrame of :func:`khrbm.experiments.sweep.read_table`).
    ``extra`` carries measurements beyond the table (the likelihood target's AIS results, by run key)."""
    return globals()[f"_check_{target}"](table, budget, extra or {})


def _arms(table, budget, target, task, m, init, k=1):
    """The rows of the plain and the KH_TD runs of one setting."""
    return tuple(select(table, v, budget, target) for v in repro.pair(task, m, init, k))


def _check_table1(table, budget, extra):
    claims, cells = [], []
    for m in (100, 500):
        for init in ("lecun", "std"):
            for k in (1, 10):
                rows = _arms(table, budget, "table1", "classification", m, init, k)
                accs = [{s: 100 * v for s, v in per_seed(r, "max", "accuracy").items()} for r in rows]   # in %
                for kh, acc, r in zip((False, True), accs, rows):
                    mean, se, n = mean_se(list(acc.values()))
                    sps = r.groupby("run")["samples_per_second"].first()
                    cells.append({"method": f"{'KH_TD-' if kh else ''}CD{k}", "M": m, "init": init, "ours": mean,
                                  "se": se, "n": n, "paper": PAPER_TABLE1[(k, kh, m, init)],
                                  "t_epoch": float(np.nanmean(repro.MNIST_TRAIN / sps)) if len(sps) else math.nan,
                                  "paper_t": PAPER_T[(k, kh, m)]})
                c = compare(accs[1], accs[0], "higher")
                claims.append(Claim("table1", f"KH_TD-CD{k} beats CD{k} in max validation accuracy (M = {m}, {init} init)",
                                    c.verdict, f"KH_TD {_stat(accs[1], 1, '.2f')} % vs plain {_stat(accs[0], 1, '.2f')} %, "
                                    f"{c.describe('.2f')} pp.",
                                    f"{PAPER_TABLE1[(k, True, m, init)]} % vs {PAPER_TABLE1[(k, False, m, init)]} %"))
    return claims, {"cells": cells}


def _check_fig3(table, budget, extra):
    claims, numbers = [], {}
    finals = {}
    for init in ("std", "lecun"):
        plain, td = _arms(table, budget, "fig3", "reconstruction", 100, init)
        for y, name in (("val_mse", "validation MSE"), ("val_ce", "validation cross-entropy")):
            a, b = per_seed(td, "final", y), per_seed(plain, "final", y)
            finals[(init, y)] = (a, b)
            numbers[f"{init}_{y}"] = {"kh_td": _numbers(a), "plain": _numbers(b)}
            c = compare(a, b, "lower")
            claims.append(Claim("fig3", f"KH_TD-CD1 ends with lower {name} than the plain RBM ({init} init, M = 100)",
                                c.verdict, f"KH_TD {_stat(a)} vs plain {_stat(b)}, {c.describe()}."))
    gaps = {}
    for arm, idx in (("kh_td", 0), ("plain", 1)):
        s, lec = finals[("std", "val_mse")][idx], finals[("lecun", "val_mse")][idx]
        gaps[arm] = {seed: abs(s[seed] - lec[seed]) for seed in s if seed in lec}
    c = compare(gaps["kh_td"], gaps["plain"], "lower")
    claims.append(Claim("fig3", "KH_TD's final validation MSE depends less on the initialisation than the plain RBM's "
                        "(|std - LeCun| smaller)", c.verdict,
                        f"|std - LeCun|: KH_TD {_stat(gaps['kh_td'])} vs plain {_stat(gaps['plain'])}, {c.describe()}."))
    numbers["init_gap"] = {k: _numbers(v) for k, v in gaps.items()}
    return claims, numbers


def _check_fig4(table, budget, extra):
    variants = repro.target_variants("fig4", budget)
    plain = select(table, variants[0], budget, "fig4")
    claims, numbers = [], {}
    for v in variants[1:]:
        td = select(table, v, budget, "fig4")
        cfg = _config(v, budget, "fig4")
        S, E = int(cfg.kh_horizon), cfg.epochs
        at_s = compare(per_seed(td, "at", epoch=S), per_seed(plain, "at", epoch=S), "lower")
        later = [compare(per_seed(td, "at", epoch=e), per_seed(plain, "at", epoch=e), "lower") for e in range(S, E + 1)]
        final = later[-1]
        if any(c.verdict == FAILS for c in later):
            verdict = FAILS
        elif at_s.verdict == HOLDS and final.verdict == HOLDS:
            verdict = HOLDS
        else:
            verdict = OPEN
        worse = sum(c.verdict == FAILS for c in later)
        claims.append(Claim("fig4", f"S = {S}: KH_TD has lower validation MSE than the plain RBM at the end of the KH "
                            f"window (epoch {S}) and at every epoch after it", verdict,
                            f"at epoch {S}: {at_s.describe()}; at epoch {E}: {final.describe()}; epochs ≥ S where "
                            f"plain is significantly better: {worse} of {len(later)}."))
        numbers[f"S={S}"] = {"at_S": asdict(at_s), "final": asdict(final)}
    return claims, numbers


def _check_fig5(table, budget, extra):
    claims, numbers = [], {}
    for init in ("lecun", "std"):
        plain, td = _arms(table, budget, "fig5", "classification", 500, init)
        falls = []
        for rows in (td, plain):
            best, last = per_seed(rows, "max", "accuracy"), per_seed(rows, "final", "accuracy")
            falls.append({s: 100 * (best[s] - last[s]) for s in best})
        c = compare(falls[0], falls[1], "lower")
        claims.append(Claim("fig5", f"KH_TD's validation accuracy falls less late in training than the plain cRBM's "
                            f"(max - final, {init} init, M = 500, CD-1)", c.verdict,
                            f"fall: KH_TD {_stat(falls[0], 1, '.2f')} pp vs plain {_stat(falls[1], 1, '.2f')} pp, "
                            f"{c.describe('.2f')} pp.", "KH 'nearly eliminates overfitting', most in LeCun runs"))
        numbers[init] = {"fall_kh_td": _numbers(falls[0]), "fall_plain": _numbers(falls[1])}
    return claims, numbers


def _check_overlap(table, budget, extra):
    variants = repro.target_variants("overlap", budget)
    values = {v["kh_mode"]: per_seed(select(table, v, budget, "overlap"), "final", "overlap") for v in variants}
    claims = []
    for mode in ("td", "bu"):
        c = compare(values[mode], values["off"], "lower")
        claims.append(Claim("overlap", f"{describe({'kh_mode': mode})} receptive fields overlap less than the plain RBM's",
                            c.verdict, f"{_stat(values[mode], 1, '.3f')} vs {_stat(values['off'], 1, '.3f')}, "
                            f"{c.describe('.3f')}.", f"{PAPER_OVERLAP[mode]} vs {PAPER_OVERLAP['off']}"))
    return claims, {mode: {**_numbers(v), "paper": PAPER_OVERLAP[mode]} for mode, v in values.items()}


def _check_shuffled(table, budget, extra):
    claims, numbers = [], {}
    variants = repro.target_variants("shuffled", budget)
    for i, init in enumerate(("std", "lecun")):
        plain, td, shuffled = (per_seed(select(table, v, budget, "shuffled"), "final") for v in variants[3 * i:3 * i + 3])
        c = compare(td, shuffled, "lower")
        claims.append(Claim("shuffled", f"KH_TD ends with lower validation MSE than its shuffled-ξ control ({init} init): "
                            "a random permutation of KH's contribution does not give KH's gain", c.verdict,
                            f"KH_TD {_stat(td)} vs shuffled ξ {_stat(shuffled)} (plain {_stat(plain)}), {c.describe()}.",
                            "the shuffled control 'does not yield the performance boost' (Suppl. A)"))
        numbers[init] = {"plain": _numbers(plain), "kh_td": _numbers(td), "shuffled": _numbers(shuffled)}
    return claims, numbers


def _check_fig2(table, budget, extra):
    rows = select(table, repro.target_variants("fig2", budget)[0], budget, "fig2")
    rows = rows[rows["xi_probes"].fillna(0) > 0]
    claims, numbers = [], {}
    if rows.empty:
        return [Claim("fig2", "the cosine between ∇L and ξ is negative", OPEN, "no finished probed run"),
                Claim("fig2", "|ξ| / |∇L| decays over the KH window", OPEN, "no finished probed run")], {}
    by_seed = {int(s): r.sort_values("epoch") for s, r in rows.groupby("seed")}
    several = len(by_seed) > 1
    over = "seeds" if several else "probed epochs of the one run (autocorrelated: a rough SE)"

    def thirds(r):
        third = max(1, len(r) // 3)
        return r["xi_ratio"].iloc[:third].astype(float), r["xi_ratio"].iloc[-third:].astype(float)

    if several:
        cos = {s: weighted_mean(r["xi_cosine"], r["xi_probes"]) for s, r in by_seed.items()}
        early = {s: float(thirds(r)[0].mean()) for s, r in by_seed.items()}
        late = {s: float(thirds(r)[1].mean()) for s, r in by_seed.items()}
    else:
        (r,) = by_seed.values()
        cos = dict(enumerate(r["xi_cosine"].astype(float)))
        first, last = thirds(r)
        early, late = dict(enumerate(first)), dict(enumerate(last, start=len(r)))    # distinct keys: unpaired
    c = compare(cos, dict.fromkeys(cos, 0.0), "lower")
    m, se, n = mean_se(list(cos.values()))
    claims.append(Claim("fig2", "the cosine between the RBM gradient ∇L and the KH contribution ξ is negative",
                        c.verdict, f"mean cosine {m:+.4f} ± {se:.4f} (n = {n} {over}).", "small and negative"))
    d = compare(late, early, "lower")
    claims.append(Claim("fig2", "|ξ| / |∇L| decays over the KH window (last third below first third)", d.verdict,
                        f"first third {_stat(early)} vs last third {_stat(late)}, {d.describe()}.",
                        "decays by design (the annealing schedule)"))
    numbers = {"cosine": _numbers(cos), "ratio_first_third": _numbers(early), "ratio_last_third": _numbers(late)}
    return claims, numbers


def _check_likelihood(table, budget, extra):
    variants = repro.target_variants("likelihood", budget)
    lls = []
    for v in variants:
        rows = select(table, v, budget, "likelihood")
        keyed = rows.groupby("seed")["run"].first()
        lls.append({int(s): extra[k]["test_ll"] for s, k in keyed.items() if k in extra})
    c = compare(lls[1], lls[0], "higher")
    claim = Claim("likelihood", "KH_TD RBMs have a higher AIS test log-likelihood than plain RBMs (M = 500, CD-1, "
                  "LeCun init; not a claim of the paper)", c.verdict,
                  f"KH_TD {_stat(lls[1], 1, '.2f')} nats vs plain {_stat(lls[0], 1, '.2f')} nats, {c.describe('.2f')} nats.",
                  f"not in the paper; Salakhutdinov & Murray 2008 report ≈ {SM2008_CD1:.0f} nats for CD-1")
    return [claim], {"plain": _numbers(lls[0]), "kh_td": _numbers(lls[1]), "reference_sm2008_cd1": SM2008_CD1}
