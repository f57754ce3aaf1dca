"""scikit-learn's classic "RBM features + logistic regression" pipeline on MNIST, with KH added.

Fits, in one run on the same binarized MNIST digits (grey >= 127 -> 1, as the whole project does):

* ``LogisticRegression`` on the raw pixels (the baseline);
* ``Pipeline(BernoulliRBM, LogisticRegression)``: scikit-learn's RBM (PCD-1, NumPy/BLAS);
* ``Pipeline(KHBernoulliRBM(kh_mode="off"), LogisticRegression)``: plain CD-1 on khrbm's Numba kernels;
* ``Pipeline(KHBernoulliRBM, LogisticRegression)``: KH_TD before each CD-1 step (the authors' M = 100
  reconstruction preset: ε0 = 0.04, Δ = 0.4, R = 0.1 with LeCun init; SPEC's table).

Every RBM gets the same M, learning rate, minibatch size, epochs and seed. Prints test accuracy (on the
official test set), the RBM's fit time and the whole pipeline's, side by side. Timings on a shared
machine move with its load: compare the rows of one run, and use ``--threads 1`` when the machine is
busy (two BLAS threads on two loaded cores spin against each other and slow BLAS calls many times over).

    KHRBM_DATA_DIR=../shared/data python examples/sklearn_pipeline.py [--train-size 10000] [--n-iter 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KHRBM_DATA_DIR", str((ROOT.parent / "shared" / "data").resolve()))

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import BernoulliRBM  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from khrbm import KHBernoulliRBM  # noqa: E402
from khrbm.data import DataError, load_dataset  # noqa: E402


def models(args) -> dict:
    """Name -> unfitted estimator; the RBMs share every setting scikit-learn's BernoulliRBM has."""
    shared = dict(n_components=args.n_components, learning_rate=args.learning_rate,
                  batch_size=args.batch_size, n_iter=args.n_iter, random_state=args.seed)

    def logistic():
        return LogisticRegression(C=args.C, max_iter=args.max_iter)

    return {
        "LogisticRegression on pixels": logistic(),
        "BernoulliRBM (sklearn, PCD-1) + LR": Pipeline([("rbm", BernoulliRBM(**shared)), ("lr", logistic())]),
        "KHBernoulliRBM kh_mode=off (CD-1) + LR": Pipeline([("rbm", KHBernoulliRBM(kh_mode="off", **shared)),
                                                           ("lr", logistic())]),
        "KHBernoulliRBM KH_TD + CD-1 + LR": Pipeline([("rbm", KHBernoulliRBM(**shared)), ("lr", logistic())]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=10000, help="first n official training digits")
    ap.add_argument("--test-size", type=int, default=10000, help="first n official test digits")
    ap.add_argument("--n-components", type=int, default=100, help="hidden units M")
    ap.add_argument("--n-iter", type=int, default=10, help="RBM epochs")
    ap.add_argument("--batch-size", type=int, default=100, help="RBM minibatch size")
    ap.add_argument("--learning-rate", type=float, default=0.1, help="RBM learning rate")
    ap.add_argument("--C", type=float, default=1.0, help="inverse regularisation of the logistic regression")
    ap.add_argument("--max-iter", type=int, default=1000, help="logistic regression iterations (lbfgs)")
    ap.add_argument("--seed", type=int, default=0, help="random_state of every RBM")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for BLAS/OpenMP and for khrbm's Numba kernels (default: the libraries' own)")
    args = ap.parse_args(argv)
    try:
        d = load_dataset("mnist")
    except DataError as err:
        print(f"sklearn_pipeline: {err}", file=sys.stderr)
        return 2
    X, y = d.x_train[:args.train_size], d.y_train[:args.train_size]
    X_test, y_test = d.x_val[:args.test_size], d.y_val[:args.test_size]
    if args.threads:
        import numba
        numba.set_num_threads(args.threads)
    print(f"MNIST binarized: {len(X)} training / {len(X_test)} test digits; RBMs: M={args.n_components}, "
          f"{args.n_iter} epochs, B={args.batch_size}, lr={args.learning_rate}, seed={args.seed}; "
          f"threads: {args.threads or 'library defaults'}")
    KHBernoulliRBM(n_components=2, n_iter=1).fit(X[:200])      # compile (or load) the kernels off the clock
    rows = []
    with threadpool_limits(args.threads):
        for name, model in models(args).items():
            started = time.perf_counter()
            if isinstance(model, Pipeline):       # what Pipeline.fit does, timed per stage
                features = model[:-1].fit_transform(X, y)
                rbm_seconds = time.perf_counter() - started
                model[-1].fit(features, y)
            else:
                rbm_seconds = None
                model.fit(X, y)
            seconds = time.perf_counter() - started
            rows.append((name, model.score(X_test, y_test), rbm_seconds, seconds))
            print(f"  fitted {name} in {seconds:.1f}s", flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'model':<{width}}  test accuracy  RBM fit (s)  pipeline fit (s)")
    for name, accuracy, rbm_seconds, seconds in rows:
        rbm = "-" if rbm_seconds is None else f"{rbm_seconds:.1f}"
        print(f"{name:<{width}}  {accuracy:13.4f}  {rbm:>11}  {seconds:16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
