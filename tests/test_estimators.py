"""The scikit-learn estimators: scikit-learn's own estimator checks, the same weights as the reference step
loop, exact p(y|x), scikit-learn's score_samples, partial_fit semantics, and the "array" data source."""
import itertools
import subprocess
import sys

import numpy as np
import pytest
from scipy import sparse

pytest.importorskip("sklearn")   # a test extra; khrbm itself never needs it

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import BernoulliRBM  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from khrbm import KHBernoulliRBM, KHClassRBM  # noqa: E402
from khrbm.config import ConfigError, RunConfig  # noqa: E402
from khrbm.core import rng  # noqa: E402
from khrbm.core.kh import kh_epsilon  # noqa: E402
from khrbm.core.rbm import init_params  # noqa: E402
from khrbm.core.step import StepSettings, numpy_step  # noqa: E402
from khrbm.data import DataError, array_dataset, load_dataset, make_bars  # noqa: E402
from khrbm.train.run import ORDER, Run  # noqa: E402

OUTSIDE_01 = "ignore:.*values outside \\[0, 1\\]:UserWarning"   # the checks' data are standardized reals


def binary(shape, seed, p=0.3):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# scikit-learn's estimator checks
# --------------------------------------------------------------------------------------------------
SCORE_SAMPLES_IS_RANDOM = ("score_samples corrupts one randomly drawn feature per sample (as scikit-learn's "
                           "BernoulliRBM, which marks this check the same way), so its value depends on "
                           "the sample's position")


def expected_failed_checks(estimator):
    if isinstance(estimator, KHBernoulliRBM):
        return {"check_methods_sample_order_invariance": SCORE_SAMPLES_IS_RANDOM,
                "check_methods_subset_invariance": SCORE_SAMPLES_IS_RANDOM}
    return {}


# Small and quick; the classifier gets 10 epochs of minibatches of 10 (as scikit-learn tests its own
# BernoulliRBM) so that it clears check_classifiers_train's 0.83 accuracy on standardized blobs.
@parametrize_with_checks([KHBernoulliRBM(n_components=8, n_iter=3),
                          KHClassRBM(n_components=8, n_iter=10, batch_size=10)],
                         expected_failed_checks=expected_failed_checks)
@pytest.mark.filterwarnings(OUTSIDE_01)
def test_estimators_pass_sklearn_checks(estimator, check):
    check(estimator)


def test_import_khrbm_does_not_import_sklearn():
    code = ("import sys, khrbm; assert 'sklearn' not in sys.modules, 'sklearn imported'; "
            "khrbm.KHBernoulliRBM; assert 'sklearn' in sys.modules; print(khrbm.KHClassRBM.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "KHClassRBM"


# --------------------------------------------------------------------------------------------------
# the estimator is the reference step loop (SPEC's schedule) on the same data and seed
# --------------------------------------------------------------------------------------------------
def reference_training(V, n_hidden, epochs, batch_size, seed, n_labels=0, **kh):
    """An independent transcription of a run: lecun init from ``seed``; epoch e visits minibatches in
    the order ``rng.generator(seed, ORDER, e).permutation(n)``; step t uses key ``stream(seed, t)`` and
    ε = kh_epsilon(ε0, t / steps per epoch, S = epochs); PCD's chain starts at the first minibatch."""
    n, N = V.shape
    params = init_params(N, n_hidden, "lecun", seed)
    per_epoch = -(-n // batch_size)
    persistent = kh.pop("sampler", "cd") == "pcd"
    eps0 = kh.pop("eps0")
    chain = None
    for t in range(epochs * per_epoch):
        e, i = divmod(t, per_epoch)
        X = V[rng.generator(seed, ORDER, e).permutation(n)[i * batch_size:(i + 1) * batch_size]]
        st = StepSettings(lr=0.1, k=1, eps=kh_epsilon(eps0, t / per_epoch, epochs), radius=0.1,
                          persistent=persistent, n_labels=n_labels, **kh)
        if persistent and chain is None:
            chain = X.copy()
        chain = numpy_step(params, X, st, rng.stream(seed, t), chain).chain
    return params


@pytest.mark.parametrize("mode, sampler", [("td", "cd"), ("bu", "pcd"), ("off", "cd")])
def test_fitted_weights_equal_the_reference_step_loop(mode, sampler):
    X = binary((240, 16), 1)          # 240 = 4 minibatches of 60: the PCD chain keeps its size
    est = KHBernoulliRBM(n_components=6, batch_size=60, n_iter=3, kh_mode=mode, eps0=0.05, delta=0.3,
                         sampler=sampler, backend="numpy", random_state=7).fit(X)
    ref = reference_training(X.astype(np.float32), 6, 3, 60, 7, kh_mode=mode, eps0=0.05, delta=0.3,
                             sampler=sampler)
    assert np.array_equal(est.components_, ref.W.T)
    assert np.array_equal(est.intercept_visible_, ref.a) and np.array_equal(est.intercept_hidden_, ref.b)
    assert est.n_iter_ == 3 and est.seed_ == 7


def test_classifier_weights_equal_the_reference_loop_on_the_joint_vector():
    """The cRBM trains on [x, onehot(code of y)], label units in the order of classes_."""
    X = binary((150, 12), 2)
    y = np.array(["pear", "apple", "fig"])[np.random.default_rng(3).integers(0, 3, 150)]
    est = KHClassRBM(n_components=5, batch_size=50, n_iter=2, eps0=0.03, backend="numpy", random_state=4).fit(X, y)
    assert list(est.classes_) == ["apple", "fig", "pear"]
    codes = np.searchsorted(est.classes_, y)
    V = np.hstack([X, np.eye(3, dtype=np.uint8)[codes]]).astype(np.float32)
    ref = reference_training(V, 5, 2, 50, 4, n_labels=3, kh_mode="td", eps0=0.03, delta=0.7)
    assert np.array_equal(est.components_, ref.W.T) and np.array_equal(est.intercept_visible_, ref.a)


def test_numba_estimator_is_a_run_on_the_array_dataset():
    """Same arrays and seed: the estimator (default Numba backend) holds exactly a Run's weights, so
    what ``khrbm train`` and the app show about a config carries over to the estimator."""
    X = binary((300, 20), 5)
    est = KHBernoulliRBM(n_components=9, n_iter=2, kh_mode="bu", eps0=0.02, delta=0.2, random_state=3).fit(X)
    run = Run(RunConfig(dataset="array", n_hidden=9, epochs=2, kh_mode="bu", eps0=0.02, delta=0.2,
                        radius=0.1, seed=3), array_dataset(X))
    for _ in range(2):
        run.train_epoch()
    assert np.array_equal(est.components_, run.params.W.T) and np.array_equal(est.intercept_hidden_, run.params.b)


# --------------------------------------------------------------------------------------------------
# the classifier: exact p(y|x), any label set
# --------------------------------------------------------------------------------------------------
def brute_force_posterior(X, components, intercept_visible, intercept_hidden, n_classes):
    """p(y|x) ∝ Σ_h exp(-E([x, onehot(y)], h)) with E(v,h) = -vᵀWh - aᵀv - bᵀh, summing all 2^M h."""
    W, a, b = components.T.astype(np.float64), intercept_visible.astype(np.float64), intercept_hidden
    M = W.shape[1]
    H = np.array(list(itertools.product([0, 1], repeat=M)), np.float64)
    out = np.zeros((len(X), n_classes))
    for s, x in enumerate(X.astype(np.float64)):
        for c in range(n_classes):
            v = np.concatenate([x, np.eye(n_classes)[c]])
            out[s, c] = np.exp(v @ W @ H.T + a @ v + H @ b).sum()
    return out / out.sum(axis=1, keepdims=True)


def test_predict_proba_is_the_exact_posterior_by_enumeration():
    X = binary((60, 5), 6, p=0.5)
    y = np.random.default_rng(7).choice([20, -3, 7], 60)
    est = KHClassRBM(n_components=4, batch_size=20, n_iter=5, init="std", eps0=0.02, random_state=1).fit(X, y)
    X_test = np.vstack([binary((10, 5), 8, p=0.5), np.random.default_rng(9).random((4, 5))])   # [0, 1] too
    proba = est.predict_proba(X_test)
    expected = brute_force_posterior(X_test, est.components_, est.intercept_visible_, est.intercept_hidden_, 3)
    np.testing.assert_allclose(proba, expected, rtol=1e-6)
    assert not np.allclose(proba, 1 / 3, atol=0.02)          # a posterior that says something
    assert np.array_equal(est.predict(X_test), np.array([-3, 7, 20])[expected.argmax(axis=1)])


@pytest.mark.parametrize("labels", [["cat", "ant", "bee"], [10, -3, 7]])
def test_classifier_learns_noisy_prototypes_with_any_labels(labels):
    """Three 30-pixel prototypes with 5 % of pixels flipped; the label of a sample is its prototype's."""
    gen = np.random.default_rng(11)
    protos = binary((3, 30), 12, p=0.4)

    def sample(n):
        k = gen.integers(0, 3, n)
        return protos[k] ^ (gen.random((n, 30)) < 0.05), np.asarray(labels)[k]

    X, y = sample(600)
    X_test, y_test = sample(300)
    est = KHClassRBM(n_components=16, n_iter=10, batch_size=50, random_state=0).fit(X, y)
    assert est.score(X_test, y_test) > 0.95
    assert set(est.predict(X_test)) == set(labels)


# --------------------------------------------------------------------------------------------------
# KHBernoulliRBM: scikit-learn's quantities on the same weights, Gibbs sampling
# --------------------------------------------------------------------------------------------------
def sklearn_rbm_with(est, random_state):
    rbm = BernoulliRBM(n_components=est.n_components, random_state=random_state)
    rbm.components_ = est.components_.astype(np.float64)
    rbm.intercept_hidden_ = est.intercept_hidden_.astype(np.float64)
    rbm.intercept_visible_ = est.intercept_visible_.astype(np.float64)
    rbm.n_features_in_ = est.n_features_in_
    return rbm


def test_score_samples_and_transform_equal_sklearns_on_the_same_weights():
    X = binary((400, 25), 13)
    X_test = binary((120, 25), 14, p=0.5)
    est = KHBernoulliRBM(n_components=10, n_iter=3, random_state=5).fit(X)
    sk = sklearn_rbm_with(est, 5)
    np.testing.assert_allclose(est.score_samples(X_test), sk.score_samples(X_test), rtol=1e-9)
    np.testing.assert_allclose(est.transform(X_test), sk.transform(X_test), rtol=1e-9)
    csr = sparse.csr_matrix(X_test)
    np.testing.assert_allclose(est.score_samples(csr), est.score_samples(X_test), rtol=1e-12)
    np.testing.assert_allclose(est.transform(csr), est.transform(X_test), rtol=1e-12)
    assert est.transform(X_test.astype(np.float32)).dtype == np.float32


def test_gibbs_step_has_the_exact_transition_probabilities():
    """From one v repeated 40,000 times, the frequencies of v' match Σ_h p(h|v) p(v'|h) (enumerated)."""
    est = KHBernoulliRBM(n_components=2, n_iter=30, batch_size=10, init="std", random_state=2)
    est.fit(binary((100, 3), 15, p=0.5))
    W, a, b = est.components_.T.astype(np.float64), est.intercept_visible_, est.intercept_hidden_
    v = np.array([1.0, 0.0, 1.0])
    states = np.array(list(itertools.product([0, 1], repeat=3)), np.float64)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    exact = np.zeros(8)
    for h in itertools.product([0, 1], repeat=2):
        h = np.array(h, np.float64)
        ph = np.prod(np.where(h, sig(v @ W + b), 1 - sig(v @ W + b)))
        pv = sig(W @ h + a)
        exact += ph * np.prod(np.where(states, pv, 1 - pv), axis=1)
    draws = est.gibbs(np.tile(v, (40000, 1)))
    assert draws.dtype == bool and draws.shape == (40000, 3)
    freq = np.bincount(draws @ np.array([4, 2, 1]), minlength=8) / 40000
    assert np.abs(freq - exact).sum() / 2 < 0.015                      # total variation
    assert not np.array_equal(est.gibbs(np.tile(v, (50, 1))), est.gibbs(np.tile(v, (50, 1))))


# --------------------------------------------------------------------------------------------------
# fit / partial_fit semantics
# --------------------------------------------------------------------------------------------------
def test_n_iter_partial_fits_are_exactly_fit():
    X = binary((250, 15), 16)                 # 250 = 2 minibatches of 100 and one of 50 (the chain resizes)
    kw = dict(n_components=7, n_iter=3, sampler="pcd", random_state=8)
    fitted = KHBernoulliRBM(**kw).fit(X)
    streamed = KHBernoulliRBM(**kw)
    for _ in range(3):
        streamed.partial_fit(X)
    assert np.array_equal(streamed.components_, fitted.components_)
    assert np.array_equal(streamed.persistent_chain_, fitted.persistent_chain_)
    assert streamed.n_iter_ == fitted.n_iter_ == 3


def test_partial_fit_continues_the_schedule_and_fit_starts_afresh():
    X = binary((200, 15), 17)
    fresh = KHBernoulliRBM(n_components=7, n_iter=2, random_state=9).fit(X)
    est = KHBernoulliRBM(n_components=7, n_iter=2, random_state=9).fit(X)
    est.partial_fit(X)                        # epoch 2 of the schedule: past S = n_iter = 2, so ε = 0
    longer = KHBernoulliRBM(n_components=7, n_iter=3, horizon=2, random_state=9).fit(X)
    assert np.array_equal(est.components_, longer.components_) and est.n_iter_ == 3
    assert not np.array_equal(est.components_, fresh.components_)
    est.partial_fit(binary((30, 15), 18))     # any chunk size
    est.fit(X)                                # fit forgets everything before it
    assert np.array_equal(est.components_, fresh.components_) and est.n_iter_ == 2


def test_diverging_partial_fit_raises_and_keeps_the_fitted_state():
    X = binary((200, 10), 19)
    est = KHBernoulliRBM(n_components=5, n_iter=2, random_state=0).fit(X)
    before = est.components_.copy()
    diverged = r"weights (became NaN|became infinite|exploded).* \(epoch 3\.00\)"
    with pytest.warns(UserWarning, match="outside"), pytest.raises(ValueError, match=diverged):
        est.partial_fit(X * 3e38)
    assert np.array_equal(est.components_, before) and est.n_iter_ == 2


# --------------------------------------------------------------------------------------------------
# input and parameter handling
# --------------------------------------------------------------------------------------------------
def test_sparse_and_dense_training_give_the_same_model():
    X = binary((150, 20), 20)
    dense = KHBernoulliRBM(n_components=6, n_iter=2, random_state=1).fit(X)
    for matrix in (sparse.csr_matrix(X), sparse.csc_array(X)):
        est = KHBernoulliRBM(n_components=6, n_iter=2, random_state=1).fit(matrix)
        assert np.array_equal(est.components_, dense.components_)


def test_probabilities_are_accepted_and_grey_levels_get_a_clear_warning(recwarn):
    probs = np.random.default_rng(21).random((100, 12))
    KHBernoulliRBM(n_components=4, n_iter=1, random_state=0).fit(probs)
    assert not [w for w in recwarn if "outside" in str(w.message)]
    with pytest.warns(UserWarning, match=r"KHBernoulliRBM: values outside \[0, 1\] \(from 0 to 255\).*/ 255"):
        KHBernoulliRBM(n_components=4, n_iter=1, random_state=0).fit((probs * 255).round())


@pytest.mark.parametrize("params, message", [
    (dict(n_components=0), r"parameter 'n_components' must be an integer in \[1, 10000\], got 0"),
    (dict(learning_rate=-1.0), r"parameter 'learning_rate' must be a number in"),
    (dict(kh_mode="sideways"), r"parameter 'kh_mode' must be one of off, td, bu, got 'sideways'"),
    (dict(n_iter=2.5), r"parameter 'n_iter' must be an integer"),
    (dict(random_state=-1), r"parameter 'random_state' must be an integer in \[0, "),
    (dict(kh_mode="bu", ell=4), r"parameter 'ell' must be below the 4 postsynaptic units of mode bu"),
])
def test_bad_parameters_name_the_estimator_parameter(params, message):
    est = KHBernoulliRBM(**{"n_components": 4, **params})
    with pytest.raises(ValueError, match=message):
        est.fit(binary((20, 6), 22))
    assert not hasattr(est, "components_")


# --------------------------------------------------------------------------------------------------
# the "array" data source
# --------------------------------------------------------------------------------------------------
def test_array_dataset_keeps_binary_as_uint8_and_probabilities_as_floats():
    ds = array_dataset(binary((50, 7), 23).astype(np.float64), np.arange(50) % 4)
    assert ds.name == "array" and ds.x_train.dtype == np.uint8 and ds.n_classes == 4
    assert ds.x_val is ds.x_train and ds.y_val is ds.y_train and ds.notice == ""
    assert not ds.x_train.flags.writeable
    probs = np.random.default_rng(24).random((30, 7)).astype(np.float32)
    ds = array_dataset(sparse.csr_matrix(probs), X_val=probs[:5])
    assert ds.x_train.dtype == np.float32 and np.array_equal(ds.x_train, probs) and ds.n_classes == 0
    assert ds.x_val.shape == (5, 7) and np.all(ds.y_train == -1)
    assert probs.flags.writeable                     # the caller's array is copied, not frozen


@pytest.mark.parametrize("args, message", [
    ((np.zeros((0, 4)),), "non-empty 2-D"),
    ((np.array([[0.0, np.nan]]),), "NaN or inf"),
    ((np.zeros((3, 4)), np.array([0, 1])), r"one label per row, shape \(3,\)"),
    ((np.zeros((3, 4)), np.array([0, -1, 1])), "integer class codes"),
    ((np.zeros((3, 4)), np.array(["a", "b", "c"])), "integer class codes"),
    ((np.zeros((3, 4)), None, np.zeros((2, 5))), "X_val has 5 columns, X has 4"),
    ((np.zeros((3, 4)), np.zeros(3, int), np.zeros((2, 4))), "y_val"),
])
def test_array_dataset_refuses_malformed_arrays_in_one_line(args, message):
    with pytest.raises(DataError, match=message) as err:
        array_dataset(*args)
    assert "\n" not in str(err.value)


def test_array_source_cannot_be_loaded_by_name_and_needs_labels_for_classification():
    with pytest.raises(DataError, match=r"array_dataset\(X, y\)"):
        load_dataset("array")
    cfg = RunConfig(dataset="array", task="classification", n_hidden=4)
    with pytest.raises(ConfigError, match="classification needs labels"):
        Run(cfg, array_dataset(binary((20, 6), 25)))
    run = Run(cfg, array_dataset(binary((20, 6), 25), np.arange(20) % 2))
    assert run.n_visible == 8


def test_a_trainer_trains_on_user_arrays_like_a_run():
    """The threaded Trainer on the "array" dataset ends where a Run on the same arrays and config does."""
    from khrbm.train.trainer import Trainer

    X = binary((300, 20), 26)
    cfg = RunConfig(dataset="array", n_hidden=6, epochs=2, kh_mode="td", eval_size=50)
    trainer = Trainer(cfg, dataset=array_dataset(X))
    try:
        trainer.start()
        snap = trainer.wait_for(lambda s: s.state == "finished", timeout=120)
    finally:
        trainer.close()
    run = Run(cfg, array_dataset(X))
    for _ in range(2):
        run.train_epoch()
    assert snap.arms[0].step == run.step == 6
    assert np.array_equal(snap.arms[0].W, run.params.W)


# --------------------------------------------------------------------------------------------------
# real MNIST: scikit-learn's classic RBM + logistic regression pipeline, with KH
# --------------------------------------------------------------------------------------------------
def test_pipeline_on_real_mnist_learns_features_of_digits(mnist_dir):
    """On 2,000 binarized MNIST digits, KH-RBM features → logistic regression classifies 1,000 test digits
    (measured 0.84), clearly better than the same pipeline on the features of an RBM trained on bars
    (measured 0.75): the accuracy comes from what the RBM learnt on digits."""
    d = load_dataset("mnist", data_dir=mnist_dir)
    X, y, X_test, y_test = d.x_train[:2000], d.y_train[:2000], d.x_val[:1000], d.y_val[:1000]
    with threadpool_limits(1, "blas"):       # two BLAS threads on a loaded 2-core machine: 100x slower
        pipe = Pipeline([("rbm", KHBernoulliRBM(n_iter=5, random_state=0)),
                         ("logistic", LogisticRegression(max_iter=500))]).fit(X, y)
        accuracy = pipe.score(X_test, y_test)
        bars = KHBernoulliRBM(n_iter=5, random_state=0).fit(make_bars(2000, 1))
        control = LogisticRegression(max_iter=500).fit(bars.transform(X), y).score(bars.transform(X_test), y_test)
    assert accuracy > 0.8 and accuracy > control + 0.05
