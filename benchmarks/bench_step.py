"""Training-step throughput: a plain NumPy float64 transcription of SPEC's step (the authors' style:
dense matmuls, argsort, np.random sampling; the reference speed, independent of khrbm's code) against
khrbm's NumbaStepper (float32), on real binarized MNIST.

    python benchmarks/bench_step.py            # full run (a few minutes)
    python benchmarks/bench_step.py --quick    # a short smoke run (~1 min incl. compilation)
    python benchmarks/bench_step.py --crossover  # gather vs BLAS against density, one thread
    python benchmarks/bench_step.py --profile    # per-kernel CPU time of our step, one thread

Data: $KHRBM_DATA_DIR, else ../shared/data next to the repository. Each figure is the median over
``--repeats`` passes over ``--images`` training images (B = 100), after one warm-up pass; every pass
keeps training the same parameters (LeCun init), as a real run does. Passes of all cases are
interleaved round by round, so a change of machine load affects every case alike. Prints samples/s, the ratio
ours/reference and the KH overhead (KH step time / CD-1 step time), plus the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from khrbm.core import kernels, rng  # noqa: E402
from khrbm.core.rbm import init_params  # noqa: E402
from khrbm.core.step import StepSettings  # noqa: E402

# the authors' presets (SPEC: reconstruction, mnist, LeCun init, R = 0.1): (eps0, delta) per (mode, M)
PRESETS = {("td", 100): (0.04, 0.4), ("bu", 100): (0.008, 0.2), ("td", 500): (0.004, 0.6), ("bu", 500): (0.01, 0.9)}
RADIUS = 0.1
LR = 0.1


# ------------------------------------------------------------------------------------------------
# (a) the reference: SPEC's step in plain NumPy float64, as the authors' code writes it


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_step(W, a, b, X, gen, k=1, kh=None, eps=0.0, delta=0.4, n_labels=0):
    """One minibatch, in place: optional KH modulation (argsort ranking, dense g), then CD-k with
    dense matmuls and np.random uniforms. The cRBM label block takes the argmax one-hot."""
    B, N = X.shape
    if kh is not None:
        if kh == "td":
            x = (gen.random((B, W.shape[1])) < sigmoid(X @ W + b)).astype(np.float64)
            S = W
        else:
            x = X
            S = W.T
        K = S.shape[0]
        I = S @ x.T                                    # p = 2
        order = np.argsort(I, axis=0)                  # ascending: winner at K-1, runner-up at K-2
        cols = np.arange(B)
        g = np.zeros((K, B))
        g[order[K - 1], cols] = 1.0
        g[order[K - 2], cols] = -delta
        ds = RADIUS**2 * (g @ x) - (g * I).sum(axis=1)[:, None] * S
        dS = eps * ds / max(np.abs(ds).max(), 1e-50)
        W += dS if kh == "td" else dS.T
    ph = sigmoid(X @ W + b)
    v = X
    for _ in range(k):
        h = (gen.random(ph.shape) < sigmoid(v @ W + b)).astype(np.float64)
        act = h @ W.T + a
        v = (gen.random(act.shape) < sigmoid(act)).astype(np.float64)
        if n_labels:
            y = act[:, N - n_labels:].argmax(axis=1)
            v[:, N - n_labels:] = 0.0
            v[np.arange(B), N - n_labels + y] = 1.0
    qh = sigmoid(v @ W + b)
    W += LR * (X.T @ ph - v.T @ qh) / B
    a += LR * (X - v).mean(axis=0)
    b += LR * (ph - qh).mean(axis=0)


# ------------------------------------------------------------------------------------------------


def load_mnist(n_images: int, data_dir: Path):
    from khrbm.data import load_dataset

    d = load_dataset("mnist", data_dir=data_dir)
    return d.x_train[:n_images], d.y_train[:n_images]


def settings(name: str, M: int) -> tuple[StepSettings, dict]:
    """(our StepSettings, the reference's keyword arguments) of a benchmark case."""
    if name in ("CD-1", "CD-10", "cRBM CD-1"):
        k = 10 if name == "CD-10" else 1
        nl = 10 if name.startswith("cRBM") else 0
        return StepSettings(lr=LR, k=k, n_labels=nl), dict(k=k, n_labels=nl)
    mode = "td" if "TD" in name else "bu"
    eps, delta = PRESETS[(mode, M)]
    return (StepSettings(lr=LR, k=1, kh_mode=mode, eps=eps, delta=delta, ell=1, radius=RADIUS),
            dict(k=1, kh=mode, eps=eps, delta=delta))


def make_runners(name, M, images, labels, B=100, which=("ref", "ours")):
    """{implementation: (step(rep, i), number of minibatches)} for one case, each with its own
    parameters (LeCun init, seed 1) that keep training across passes."""
    nb = len(images) // B
    st, kw = settings(name, M)
    nl = st.n_labels
    X = images.astype(np.float32)
    if nl:
        X = np.concatenate([X, np.eye(nl, dtype=np.float32)[labels]], axis=1)
    N = X.shape[1]
    runners = {}
    if "ref" in which:
        p = init_params(N, M, "lecun", 1, np.float64)
        X64 = X.astype(np.float64)
        gen = np.random.default_rng(1)
        runners["ref"] = lambda rep, i, p=p: reference_step(p.W, p.a, p.b, X64[i * B:(i + 1) * B], gen, **kw)
    if "ours" in which:
        p = init_params(N, M, "lecun", 1, np.float32)
        stepper = kernels.NumbaStepper(N, M, B, np.float32)
        runners["ours"] = lambda rep, i, p=p: stepper.step(p, X[i * B:(i + 1) * B], st, rng.stream(1, rep, i))
    return runners, nb


def run_all(cases, hidden, images, labels, repeats, which, B=100):
    """Samples/s (median over passes) per (case, M, implementation). Passes are interleaved: each
    round times one pass of every case and implementation, so a change of machine load hits all of
    them alike; round 0 is the warm-up."""
    jobs = {}
    for M in hidden:
        for case in cases:
            runners, nb = make_runners(case, M, images, labels, B, which)
            for impl, fn in runners.items():
                jobs[(case, M, impl)] = (fn, nb)
    secs = {key: [] for key in jobs}
    for rep in range(repeats + 1):
        for key, (fn, nb) in jobs.items():
            if key[2] == "ours":
                # OpenBLAS's idle threads busy-wait ~0.1 s after the reference's last matmul; let them
                # park so that they do not steal the cores from our pass (SPEC's 2-core trap).
                time.sleep(0.3)
            t0 = time.perf_counter()
            for i in range(nb):
                fn(rep, i)
            if rep:
                secs[key].append(time.perf_counter() - t0)
        print(f"  round {rep}/{repeats} done" + (" (warm-up)" if rep == 0 else ""), flush=True)
    return {key: jobs[key][1] * B / statistics.median(v) for key, v in secs.items()}


def crossover() -> None:
    """Single-thread cost of the hidden→visible product H·WT (B=100, M=500, N=784) against the density
    of H: our row gather (plain, and with the complement for dense rows) vs dense float32 BLAS. Runs in
    a child process with OPENBLAS_NUM_THREADS=1 and NUMBA_NUM_THREADS=1 (see --crossover)."""
    B, M, N = 100, 500, 784
    g = np.random.default_rng(0)
    WT = (g.standard_normal((M, N)) * 0.05).astype(np.float32)
    tot = WT.sum(0)
    out = np.empty((B, N), np.float32)
    topv, ranked = np.empty((B, 2), np.float32), np.empty((B, 2), np.int64)

    def med(f, n=30):
        f()
        ts = []
        for _ in range(5):
            t = time.thread_time()
            for _ in range(n):
                f()
            ts.append((time.thread_time() - t) / n * 1e3)
        return statistics.median(ts)

    print("| density of H | gather (ms) | gather + complement (ms) | dense BLAS (ms) |")
    print("| --- | --- | --- | --- |")
    for rho in (0.05, 0.13, 0.25, 0.34, 0.5, 0.7, 0.9):
        H = (g.random((B, M)) < rho).astype(np.float32)
        idx, val = np.empty((B, M), np.int32), np.empty((B, M), np.float32)
        nnz, binary = np.empty(B, np.int32), np.empty(B, np.bool_)
        kernels._to_lists(H, B, idx, val, nnz, binary)
        t_g = med(lambda: kernels._currents_ranked(idx, val, nnz, binary, B, WT, tot, False, out, 2, topv, ranked))
        t_c = med(lambda: kernels._currents_ranked(idx, val, nnz, binary, B, WT, tot, True, out, 2, topv, ranked))
        t_b = med(lambda: np.matmul(H, WT, out=out))
        print(f"| {rho:.2f} | {t_g:.3f} | {t_c:.3f} | {t_b:.3f} |")


def profile(M: int, images, labels, passes: int = 1) -> None:
    """Per-kernel CPU time of our step (``time.thread_time``: other processes do not count; run with
    NUMBA_NUM_THREADS=1 so the work stays on the calling thread), after one epoch of training."""
    import collections

    names = [n for n in vars(kernels) if n.startswith("_") and hasattr(getattr(kernels, n), "py_func")]
    B = 100
    nb = len(images) // B
    X = images.astype(np.float32)
    print(f"M = {M}: ms of CPU per minibatch (one thread), after one epoch on {nb * B} images")
    for case in ("CD-1", "KH_TD-CD1", "KH_BU-CD1", "CD-10"):
        st, _ = settings(case, M)
        p = init_params(784, M, "lecun", 1, np.float32)
        stepper = kernels.NumbaStepper(784, M, B, np.float32)
        for i in range(nb):
            stepper.step(p, X[i * B:(i + 1) * B], st, rng.stream(1, 0, i))
        acc = collections.defaultdict(float)
        orig = {n: getattr(kernels, n) for n in names}

        def wrap(n, f):
            def g(*a):
                t = time.thread_time()
                r = f(*a)
                acc[n] += time.thread_time() - t
                return r
            return g

        for n in names:
            setattr(kernels, n, wrap(n, orig[n]))
        try:
            t0 = time.thread_time()
            for rep in range(passes):
                for i in range(nb):
                    stepper.step(p, X[i * B:(i + 1) * B], st, rng.stream(1, 1 + rep, i))
            total = (time.thread_time() - t0) / (nb * passes) * 1e3
        finally:
            for n in names:
                setattr(kernels, n, orig[n])
        parts = ", ".join(f"{k.lstrip('_')} {v / (nb * passes) * 1e3:.3f}"
                          for k, v in sorted(acc.items(), key=lambda kv: -kv[1]) if v > 0)
        print(f"  {case:10s} {total:.3f} ms/batch ({B / total * 1e3:,.0f} samples/s on one core): {parts}")


def machine() -> dict:
    import numba

    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "date": datetime.now().strftime("%Y-%m-%d %H:%M")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: 1,000 images, 2 repeats, M=100 and 500")
    ap.add_argument("--images", type=int, default=None, help="images per pass (default 10,000; quick 1,000)")
    ap.add_argument("--repeats", type=int, default=None, help="timed passes per case (default 5; quick 2)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 500], help="values of M")
    ap.add_argument("--cases", nargs="+", default=["CD-1", "CD-10", "KH_TD-CD1", "KH_BU-CD1", "cRBM CD-1"])
    ap.add_argument("--no-reference", action="store_true", help="time only ours")
    ap.add_argument("--crossover", action="store_true",
                    help="only print the gather-vs-BLAS table of one product against density (1 thread)")
    ap.add_argument("--crossover-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true",
                    help="only print per-kernel CPU time of our step with one Numba thread, for each --hidden")
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.crossover_child:
        crossover()
        return 0
    if args.crossover or args.profile:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
        child = ["--crossover-child"] if args.crossover else (
            ["--profile-child", "--hidden", *map(str, args.hidden)] + (["--images", str(args.images)] if args.images else []))
        return subprocess.run([sys.executable, __file__, *child], env=env, check=False).returncode
    images = args.images or (1000 if args.quick else 10_000)
    repeats = args.repeats or (2 if args.quick else 5)
    data_dir = Path(os.environ.get("KHRBM_DATA_DIR") or ROOT.parent / "shared" / "data")

    load_before = os.getloadavg()[0]
    x, y = load_mnist(images, data_dir)
    if args.profile_child:
        kernels.warmup((np.float32,))
        for M in args.hidden:
            profile(M, x, y)
        return 0
    info = machine()
    t0 = time.perf_counter()
    kernels.warmup((np.float32,))
    import numba

    print(f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, numpy {info['numpy']}, "
          f"numba {info['numba']} (threading layer {numba.threading_layer()}, {numba.get_num_threads()} threads); "
          f"{info['date']}")
    print(f"kernels warm-up {time.perf_counter() - t0:.1f} s; data: {len(x)} MNIST images from {data_dir}, "
          f"pixel density {x.mean():.3f}; B = 100; median of {repeats} passes after 1 warm-up pass")
    which = ("ours",) if args.no_reference else ("ref", "ours")
    speed = run_all(args.cases, args.hidden, x, y, repeats, which)
    rows = []
    for M in args.hidden:
        for case in args.cases:
            rows.append((case, M, {impl: speed[(case, M, impl)] for impl in which}))
    load1 = os.getloadavg()

    print()
    print("| case | M | reference NumPy f64 (samples/s) | ours Numba f32 (samples/s) | ours/ref | KH overhead |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case, M, res in rows:
        cd1 = next((r for c, m, r in rows if c == "CD-1" and m == M), None)
        ref = res.get("ref")
        ours = res.get("ours")
        overhead = ""
        if case.startswith("KH") and cd1:
            parts = []
            for k in ("ref", "ours"):
                if k in res and k in cd1:
                    parts.append(f"{k} {cd1[k] / res[k]:.2f}x")
            overhead = ", ".join(parts)
        print(f"| {case} | {M} | {f'{ref:,.0f}' if ref else '-'} | {f'{ours:,.0f}' if ours else '-'} | "
              f"{f'{ours / ref:.1f}x' if ref and ours else '-'} | {overhead} |")
    print(f"\nload average (1 min) before the run {load_before:.2f}, at its end {load1[0]:.2f} on {os.cpu_count()} "
          "cores; this benchmark alone adds up to ~2 while it runs, so a value before the run above ~0.3, or at "
          "the end well above 2, means other work shared the cores and the figures are pessimistic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
