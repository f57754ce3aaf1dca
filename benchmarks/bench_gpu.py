"""GPU training-step throughput: the authors' step written in CuPy (float64, dense matmuls, argsort,
cupy.random; the style of their published code, as bench_step.py does for NumPy) against khrbm's CUDA
backend (float32) for 1, 16 and 64 runs, and the projected wall time of the paper's experiments.

    python benchmarks/bench_gpu.py --check     # first: ours equals numpy_step (float64) on this GPU, full size
    python benchmarks/bench_gpu.py             # the table (10,000 images per pass, 3 timed passes)
    python benchmarks/bench_gpu.py --quick     # a smoke run

Needs an NVIDIA GPU, ``pip install -e '.[cuda]'`` and CuPy (``pip install cupy-cuda12x``); without them it
stops with one line. Data: real binarized MNIST ($KHRBM_DATA_DIR, else ../shared/data).

Measured per (case, M): the authors' CuPy step (one run); ours through the step contract (θ to the device
and back every step: what ``backend="cuda"`` in Run and the Trainer does today) and resident (θ and the
data on the device: what a sweep uses) for R = 1, 16, 64 runs in lockstep (samples/s of all runs together).
Passes are interleaved round by round; each figure is the median pass after a warm-up pass.
Projections (500 epochs × 60,000 images per run): Table I = 16 cRBM runs (M = 100 and 500 × CD-1, KH_TD-CD1,
CD-10, KH_TD-CD10 × std and LeCun init): the authors' code one run after another, ours as one lockstep batch
of 8 per M (measured here, with the authors' classification presets); Fig. 4 = 60 KH_TD-CD1 runs at M = 100.
The last line: ``gpu: single R1x, batched R2x vs authors' CuPy``, R1 = geometric mean over the cases of
ours (one run, step contract) / authors', R2 = the same for 64 runs resident (total samples/s).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_step import LR, RADIUS, load_mnist, settings  # noqa: E402
from khrbm.core import rng  # noqa: E402
from khrbm.core.rbm import init_params  # noqa: E402
from khrbm.core.step import StepSettings, numpy_step  # noqa: E402

CASES = ["CD-1", "CD-10", "KH_TD-CD1", "KH_BU-CD1"]
PAPER_SAMPLES_PER_RUN = 500 * 60_000
FIG4_RUNS = 60
B = 100
# SPEC: the authors' classification presets (eps0, Δ) for KH_TD on MNIST; R = 1 with std init, 0.1 with LeCun
CLASSIFICATION_TD = {(100, "lecun"): (0.002, 0.7), (100, "std"): (0.001, 0.8),
                     (500, "lecun"): (0.002, 0.0), (500, "std"): (0.02, 1.0)}


def parse_args(argv=None) -> argparse.Namespace:
    def positive(text):
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
        return value

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,000 images, 1 timed pass")
    ap.add_argument("--images", type=positive, default=None, help="images per pass (default 10,000; quick 1,000)")
    ap.add_argument("--repeats", type=positive, default=None, help="timed passes (default 3; quick 1)")
    ap.add_argument("--runs", type=positive, nargs="+", default=[1, 16, 64], help="runs stepped in lockstep")
    ap.add_argument("--hidden", type=positive, nargs="+", default=[100, 500], help="values of M")
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    ap.add_argument("--check", action="store_true", help="only check ours against numpy_step on this GPU")
    args = ap.parse_args(argv)
    args.images = args.images or (1_000 if args.quick else 10_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


# ------------------------------------------------------------------------------------------------
# the reference: bench_step.reference_step for any array module (xp = cupy here)


def authors_step(xp, W, a, b, X, uniform, k=1, kh=None, eps=0.0, delta=0.4, n_labels=0):
    """One minibatch in place, as bench_step.reference_step: optional KH (argsort ranking, dense g), then
    CD-k with dense matmuls; ``uniform(shape)`` draws the random numbers (cupy.random.random)."""
    def sigmoid(x):
        return 1.0 / (1.0 + xp.exp(-x))

    Bn, N = X.shape
    if kh is not None:
        if kh == "td":
            x = (uniform((Bn, W.shape[1])) < sigmoid(X @ W + b)).astype(xp.float64)
            S = W
        else:
            x = X
            S = W.T
        K = S.shape[0]
        I = S @ x.T
        order = xp.argsort(I, axis=0)
        cols = xp.arange(Bn)
        g = xp.zeros((K, Bn))
        g[order[K - 1], cols] = 1.0
        g[order[K - 2], cols] = -delta
        ds = RADIUS**2 * (g @ x) - (g * I).sum(axis=1)[:, None] * S
        dS = eps * ds / max(float(xp.abs(ds).max()), 1e-50)
        W += dS if kh == "td" else dS.T
    ph = sigmoid(X @ W + b)
    v = X
    for _ in range(k):
        h = (uniform(ph.shape) < sigmoid(v @ W + b)).astype(xp.float64)
        act = h @ W.T + a
        v = (uniform(act.shape) < sigmoid(act)).astype(xp.float64)
        if n_labels:
            y = act[:, N - n_labels:].argmax(axis=1)
            v[:, N - n_labels:] = 0.0
            v[xp.arange(Bn), N - n_labels + y] = 1.0
    qh = sigmoid(v @ W + b)
    W += LR * (X.T @ ph - v.T @ qh) / Bn
    a += LR * (X - v).mean(axis=0)
    b += LR * (ph - qh).mean(axis=0)


# ------------------------------------------------------------------------------------------------
# projections (pure arithmetic; tested without a GPU)


def kh_cd10_rate(rates: dict, M: int) -> float:
    """The authors' KH_TD-CD10 samples/s: CD-10's time per sample plus KH's extra over CD-1."""
    return 1.0 / (1.0 / rates[("CD-10", M)] + 1.0 / rates[("KH_TD-CD1", M)] - 1.0 / rates[("CD-1", M)])


def table1_sequential_seconds(rates: dict) -> float:
    """Table I with the authors' code: its 16 runs one after another (2 inits × 4 methods per M)."""
    total = 0.0
    for M in (100, 500):
        per_sample = (1 / rates[("CD-1", M)] + 1 / rates[("KH_TD-CD1", M)] + 1 / rates[("CD-10", M)]
                      + 1 / kh_cd10_rate(rates, M))
        total += 2 * PAPER_SAMPLES_PER_RUN * per_sample
    return total


def table1_batched_seconds(batch_rates: dict) -> float:
    """Table I with ours: per M, its 8 runs in one lockstep batch of measured total samples/s."""
    return sum(8 * PAPER_SAMPLES_PER_RUN / batch_rates[M] for M in (100, 500))


def fig4_seconds(rate: float, batch: int) -> float:
    """Fig. 4's 60 runs in lockstep batches of ``batch`` runs whose total throughput is ``rate``."""
    return math.ceil(FIG4_RUNS / batch) * PAPER_SAMPLES_PER_RUN / (rate / batch)


def summary_line(single: float, batched: float) -> str:
    return f"gpu: single {single:.1f}x, batched {batched:.1f}x vs authors' CuPy"


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def gpu_missing_reason() -> str | None:
    from khrbm.core.cuda_stepper import simulated, gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is None and simulated():
        reason = "NUMBA_ENABLE_CUDASIM=1 is set (the simulator has no speed to measure)"
    if reason is None:
        try:
            import cupy  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            reason = f"CuPy cannot be imported ({type(exc).__name__}); pip install cupy-cuda12x"
    return reason


# ------------------------------------------------------------------------------------------------
# timing


def authors_runner(case, M, images):
    import cupy as cp

    _, kw = settings(case, M)
    p = init_params(images.shape[1], M, "lecun", 1, np.float64)
    W, a, b = (cp.asarray(x) for x in (p.W, p.a, p.b))
    X = cp.asarray(images, dtype=cp.float64)
    nb = len(images) // B

    def one_pass():
        for i in range(nb):
            authors_step(cp, W, a, b, X[i * B:(i + 1) * B], cp.random.random, **kw)
        cp.cuda.Device().synchronize()
    return one_pass, nb * B


def contract_runner(case, M, images):
    from khrbm.core.cuda_stepper import CudaStepper

    st, _ = settings(case, M)
    p = init_params(images.shape[1], M, "lecun", 1, np.float32)
    stepper = CudaStepper(images.shape[1], M, B, np.float32)
    nb = len(images) // B
    keys = [rng.stream(1, i) for i in range(nb)]

    def one_pass():
        for i in range(nb):
            stepper.step(p, images[i * B:(i + 1) * B], st, keys[i])
    return one_pass, nb * B


def resident_runner(runs, images, graphs=False):
    """Resident runs in lockstep, one per (StepSettings, init) of ``runs``, each with its own seed, init and
    data order; M from the first. ``graphs``: replay each step as a CUDA graph."""
    from khrbm.core.cuda_stepper import BatchedCudaStepper

    R, N = len(runs), images.shape[1]
    M = runs[0][1][0]
    stepper = BatchedCudaStepper(N, M, B, R, np.float32, graphs=graphs)
    stepper.set_data(images)
    stepper.load([init_params(N, M, init, r + 1, np.float32) for r, (_, (_, init)) in enumerate(runs)])
    settings_list = [st for st, _ in runs]
    nb = len(images) // B
    orders = np.stack([rng.generator(r + 1, 0).permutation(len(images))[:nb * B].reshape(nb, B) for r in range(R)])
    keys = np.array([[rng.stream(r + 1, i) for r in range(R)] for i in range(nb)], np.uint64)

    def one_pass():
        for i in range(nb):
            stepper.advance(settings_list, keys[i], rows=orders[:, i])
        stepper.stream.synchronize()
    return one_pass, nb * B * R


def table1_settings(M):
    """The 8 runs of Table I at M: CD-1, KH_TD-CD1, CD-10, KH_TD-CD10 × std (R = 1) and LeCun (R = 0.1)."""
    out = []
    for init in ("std", "lecun"):
        eps, delta = CLASSIFICATION_TD[(M, init)]
        radius = 1.0 if init == "std" else 0.1
        for k in (1, 10):
            out.append((StepSettings(lr=LR, k=k, n_labels=10), (M, init)))
            out.append((StepSettings(lr=LR, k=k, n_labels=10, kh_mode="td", eps=eps, delta=delta, radius=radius),
                        (M, init)))
    return out


def time_all(jobs: dict, repeats: int) -> dict:
    """{name: samples/s}: the median of ``repeats`` passes after a warm-up, passes interleaved by round."""
    secs = {name: [] for name in jobs}
    for rep in range(repeats + 1):
        for name, (one_pass, _) in jobs.items():
            if name not in secs:
                continue
            t0 = time.perf_counter()
            try:
                one_pass()
            except Exception as exc:  # noqa: BLE001 - e.g. graph capture not supported here: report, go on
                print(f"  {' '.join(map(str, name))} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                del secs[name]
                continue
            if rep:
                secs[name].append(time.perf_counter() - t0)
        print(f"  round {rep}/{repeats} done" + (" (warm-up)" if rep == 0 else ""), flush=True)
    return {name: jobs[name][1] / statistics.median(v) for name, v in secs.items()}


def check(images, labels) -> int:
    """float64, real MNIST, M = 100 and 500: 3 steps of ours (CudaStepper) against numpy_step."""
    from khrbm.core.cuda_stepper import CudaStepper

    worst = 0.0
    for M in (100, 500):
        for name, st in [("CD-1", StepSettings()), ("CD-10", StepSettings(k=10)),
                         ("PCD-2", StepSettings(k=2, persistent=True)),
                         ("KH_TD", StepSettings(kh_mode="td", eps=0.04, delta=0.4, radius=0.1)),
                         ("KH_BU ℓ=3 band p=3", StepSettings(kh_mode="bu", eps=0.02, ell=3, ell_band=True, p=3.0)),
                         ("cRBM softmax KH_TD", StepSettings(n_labels=10, label_sampling="softmax", kh_mode="td",
                                                             eps=0.02))]:
            X = images if not st.n_labels else np.concatenate([images, np.eye(10, dtype=np.uint8)[labels]], 1)
            ref = init_params(X.shape[1], M, "lecun", 1, np.float64)
            ours = ref.copy()
            stepper = CudaStepper(X.shape[1], M, B, np.float64)
            chain = X[:B].astype(np.float64) if st.persistent else None
            same_ranked = True
            for t in range(3):
                batch = X[t * B:(t + 1) * B]
                r1 = numpy_step(ref, batch, st, rng.stream(1, t), chain)
                r2 = stepper.step(ours, batch, st, rng.stream(1, t), chain)
                chain = r1.chain
                same_ranked &= r1.ranked is None or np.array_equal(r1.ranked, r2.ranked)
            err = max(float(np.abs(getattr(ours, n) - getattr(ref, n)).max()) for n in ("W", "a", "b"))
            worst = max(worst, err)
            print(f"M={M} {name}: max |Δθ| {err:.2e}, rankings {'equal' if same_ranked else 'DIFFER'}")
    ok = worst < 1e-9
    print(f"check: {'passed' if ok else 'FAILED'} (worst |Δθ| {worst:.2e}, tolerance 1e-9)")
    return 0 if ok else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    reason = gpu_missing_reason()
    if reason is not None:
        print(f"bench_gpu: needs an NVIDIA GPU, numba-cuda and CuPy: {reason}", file=sys.stderr)
        return 2
    import cupy as cp

    x, y = load_mnist(max(args.images, 3 * B), None)        # $KHRBM_DATA_DIR or the usual places
    if args.check:
        return check(x[:3 * B], y[:3 * B])
    dev = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    print(f"device: {dev['name'].decode()}; {len(x)} MNIST images per pass, B = {B}, median of {args.repeats} "
          f"passes after a warm-up")
    xi = x[:args.images]
    jobs = {}
    for M in args.hidden:
        for case in args.cases:
            jobs[("authors", case, M, 1)] = authors_runner(case, M, xi)
            jobs[("contract", case, M, 1)] = contract_runner(case, M, xi)
            jobs[("graph", case, M, 1)] = resident_runner([(settings(case, M)[0], (M, "lecun"))], xi, graphs=True)
            for R in args.runs:
                jobs[("resident", case, M, R)] = resident_runner([(settings(case, M)[0], (M, "lecun"))] * R, xi)
        crbm = np.concatenate([xi, np.eye(10, dtype=np.uint8)[y[:args.images]]], axis=1)
        jobs[("table1", "mix", M, 8)] = resident_runner(table1_settings(M), crbm)
    speed = time_all(jobs, args.repeats)
    print("\n".join(report(speed, args)))
    return 0


def report(speed: dict, args) -> list[str]:
    """The table, the projections and the summary line from {(impl, case, M, R): samples/s}."""
    lines = []
    batch_cols = [R for R in args.runs if R > 1]
    lines.append("\n| case | M | authors' CuPy f64 | ours R=1 step contract | ours R=1 resident | ours R=1 resident, "
                 "CUDA graph | " + " | ".join(f"ours R={R} resident (total)" for R in batch_cols) + " |")
    lines.append("| --- " * (6 + len(batch_cols)) + "|")

    def cell(key, ref):
        return f"{speed[key]:,.0f} ({speed[key] / ref:.1f}x)" if key in speed else "-"

    authors, single, batched = {}, [], []
    for M in args.hidden:
        for case in args.cases:
            ref = speed[("authors", case, M, 1)]
            authors[(case, M)] = ref
            cells = [cell(("contract", case, M, 1), ref), cell(("resident", case, M, 1), ref),
                     cell(("graph", case, M, 1), ref)] + [cell(("resident", case, M, R), ref) for R in batch_cols]
            lines.append(f"| {case} | {M} | {ref:,.0f} | " + " | ".join(cells) + " |")
            single.append(speed[("contract", case, M, 1)] / ref)
            batched.append(speed[("resident", case, M, max(args.runs))] / ref)
    if set(args.hidden) >= {100, 500} and set(args.cases) >= {"CD-1", "CD-10", "KH_TD-CD1"}:
        seq = table1_sequential_seconds(authors)
        ours = table1_batched_seconds({M: speed[("table1", "mix", M, 8)] for M in (100, 500)})
        lines.append(f"\nTable I at paper scale (16 runs × 500 epochs × 60k): authors' CuPy one after another "
                     f"{seq / 60:,.0f} min; ours, one lockstep batch of 8 per M, {ours / 60:,.1f} min")
    if 100 in args.hidden and "KH_TD-CD1" in args.cases:
        R = max(args.runs)
        lines.append(f"Fig. 4 at paper scale (60 KH_TD-CD1 runs, M = 100): authors' CuPy "
                     f"{fig4_seconds(authors[('KH_TD-CD1', 100)], 1) / 60:,.0f} min; ours in batches of {R} "
                     f"{fig4_seconds(speed[('resident', 'KH_TD-CD1', 100, R)], R) / 60:,.1f} min")
    lines.append(summary_line(geometric_mean(single), geometric_mean(batched)))
    return lines

if __name__ == "__main__":
    sys.exit(main())
