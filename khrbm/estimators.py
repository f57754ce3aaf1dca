"""scikit-learn estimators over the KH-RBM: :class:`KHBernoulliRBM`, a transformer with the parameters of
``sklearn.neural_network.BernoulliRBM``, and :class:`KHClassRBM`, SPEC's classification RBM as a classifier.

Both are thin layers over the project's one training loop: ``fit`` wraps the arrays as the "array" dataset
(:func:`khrbm.data.array_dataset`) and trains a :class:`khrbm.train.run.Run` on them, so each minibatch
takes the KH step (Eqs. 5–8) and then the CD-k step from the modulated W (Eq. 9) on the same Numba
kernels, random streams and ε schedule as ``khrbm train`` and the app. An estimator fitted with
``random_state=s`` holds exactly the weights of ``Run(RunConfig(dataset="array", seed=s, ...))`` on the
same arrays. Parameter bounds come from ``khrbm.config.FIELDS``; a bad value raises ``ValueError`` naming
the estimator's parameter. This module is the only one that imports scikit-learn (``khrbm[sklearn]``).
The first fit in a fresh environment compiles the kernels (~20 s; cached on disk after that).

Notation (SPEC): visible v ∈ {0,1}^N, hidden h ∈ {0,1}^M, W is N×M (``components_`` is its transpose, as in
scikit-learn), visible biases a (``intercept_visible_``), hidden biases b (``intercept_hidden_``).
"""
from __future__ import annotations

import numbers
import time
import warnings

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .config import ConfigError, RunConfig
from .core.metrics import pll_samples
from .core.rbm import Params, crbm_log_posterior, gibbs_chain, hidden_probs
from .data import ARRAY, array_dataset
from .presets import RADIUS
from .train.run import Run

__all__ = ["KHBernoulliRBM", "KHClassRBM"]

# SPEC ("The authors' tuned hyperparameters"): R = 1 with std init, 0.1 with lecun init.
# estimator parameter -> khrbm.config field (bounds and messages come from the field table)
CONFIG_FIELD = {"n_components": "n_hidden", "learning_rate": "lr", "batch_size": "batch_size", "n_iter": "epochs",
                "random_state": "seed", "k": "k", "kh_mode": "kh_mode", "eps0": "eps0", "delta": "delta",
                "ell": "ell", "radius": "radius", "p": "p", "horizon": "horizon", "init": "init",
                "sampler": "sampler", "label_sampling": "label_sampling", "backend": "backend"}
PARAMETER = {field: param for param, field in CONFIG_FIELD.items()}
CHUNK = 4096              # rows per block when scoring (bounds the float64 temporaries, densifies sparse X)
VERBOSE_ROWS = 1000       # training rows scored after each epoch when verbose


def _dense_blocks(X):
    """Consecutive blocks of CHUNK rows of X as dense arrays (sparse blocks are densified one at a time)."""
    for start in range(0, X.shape[0], CHUNK):
        block = X[start:start + CHUNK]
        yield block.toarray() if sparse.issparse(block) else block


def _store_parameters(estimator, arguments: dict) -> None:
    """What a scikit-learn ``__init__`` does: keep each argument, unchanged, as the attribute of its name."""
    for name, value in arguments.items():
        if name != "self":
            setattr(estimator, name, value)


class _KHRBMEstimator(BaseEstimator):
    """What both estimators share: parameters → RunConfig, training epochs through a Run, fitted state."""

    _task = "reconstruction"

    def _seed(self) -> int:
        """The run's seed: ``random_state`` itself when an int, else a draw from it (sklearn's convention)."""
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _invalid(self, err: ConfigError, shape) -> ValueError:
        param = PARAMETER.get(err.field, err.field)
        reason = str(err).removeprefix(f"config field '{err.field}': ")
        return ValueError(f"{type(self).__name__}: parameter {param!r} {reason} "
                          f"(n_samples={shape[0]}, n_features={shape[1]})")

    def _config(self, seed: int, shape) -> RunConfig:
        """The RunConfig of these parameters; the minibatch is capped at the number of samples (same
        batches, smaller buffers)."""
        radius = RADIUS.get(self.init, 1.0) if self.radius is None else self.radius
        try:
            cfg = RunConfig(dataset=ARRAY, task=self._task, n_hidden=self.n_components, init=self.init,
                            sampler=self.sampler, label_sampling=getattr(self, "label_sampling", "argmax"),
                            batch_size=self.batch_size, epochs=self.n_iter, backend=self.backend, seed=seed,
                            lr=self.learning_rate, k=self.k, kh_mode=self.kh_mode, eps0=self.eps0,
                            delta=self.delta, ell=self.ell, radius=radius, p=self.p, horizon=self.horizon)
        except ConfigError as err:
            raise self._invalid(err, shape) from None
        return cfg.replace(batch_size=min(cfg.batch_size, shape[0]))

    def _params(self) -> Params:
        return Params(np.ascontiguousarray(self.components_.T), self.intercept_visible_, self.intercept_hidden_)

    def _train(self, X, y, n_epochs: int, warm: bool) -> None:
        """Train ``n_epochs`` epochs over X (labels ``y``: class codes or None) through a Run: from a fresh
        init, or (``warm``) from the fitted state, as epoch ``n_iter_`` of the schedule. The fitted
        attributes change only when no epoch ended diverged (Run.divergence)."""
        dataset = array_dataset(X, y)
        if dataset.notice:
            warnings.warn(f"{type(self).__name__}: {dataset.notice}", UserWarning, stacklevel=3)
        try:
            run = Run(self._config(self.seed_ if warm else self._seed(), X.shape), dataset)
        except ConfigError as err:
            raise self._invalid(err, X.shape) from None
        if warm:
            run.params.W[...] = self.components_.T
            run.params.a[...], run.params.b[...] = self.intercept_visible_, self.intercept_hidden_
            run.chain, run.step = self.persistent_chain_, self.n_iter_ * run.batches_per_epoch
        for _ in range(n_epochs):
            started = time.perf_counter()
            run.train_epoch()
            problem = run.divergence()
            if problem:
                raise ValueError(f"{type(self).__name__}: {problem}; scale X into [0, 1], or lower learning_rate "
                                 f"or eps0 (the fitted state is kept)")
            if self.verbose:
                self._report(run, time.perf_counter() - started)
        self.components_ = run.params.W.T        # (n_components, n_visible), a view of the C-ordered W
        self.intercept_visible_, self.intercept_hidden_ = run.params.a, run.params.b
        self.persistent_chain_ = run.chain
        self.n_iter_, self.seed_ = round(run.epoch), run.config.seed
        self._n_features_out = self.components_.shape[0]

    def _report(self, run: Run, seconds: float) -> None:
        point = run.evaluate(VERBOSE_ROWS, VERBOSE_ROWS)
        accuracy = f", accuracy = {point['accuracy']:.4f}" if self._task == "classification" else ""
        print(f"[{type(self).__name__}] Iteration {round(run.epoch)}, reconstruction MSE = "
              f"{point['val_mse']:.4f} per pixel{accuracy} (first {VERBOSE_ROWS} samples), time = {seconds:.2f}s")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_PARAMETERS_DOC = """
    Parameters
    ----------
    n_components : int, default=100
        Number of binary hidden units M (the paper's M = 100; scikit-learn's default is 256).
    learning_rate : float, default=0.1
        Learning rate η of the CD step, θ ← θ - η∇L (SPEC; the paper's η = 0.1).
    batch_size : int, default=100
        Minibatch size B (the paper's B = 100; scikit-learn's default is 10). One KH step sums the
        competition of the minibatch's B samples and scales the sum to ε (Eq. 6), so B matters to KH.
    n_iter : int, default=10
        Number of epochs (sweeps over the training set) of ``fit``.
    k : int, default=1
        Gibbs steps of CD-k / PCD-k (the paper uses k ∈ {{1, 10}}).
    kh_mode : {{"td", "bu", "off"}}, default="td"
        Krotov–Hopfield modulation before each CD step (Eqs. 5–9): "td" (top-down: presynaptic x is a
        sample h ~ p(h|v), postsynaptic units are the visible ones), "bu" (bottom-up: x is the data,
        postsynaptic units are the hidden ones) or "off" (plain CD-k).
    eps0 : float, default={eps0}
        KH step size at epoch 0; ε(epoch) = ε0 (1 - epoch/S)^(3/2) for epoch < S, then 0 (SPEC).
    delta : float, default={delta}
        Anti-Hebbian strength Δ given to the inhibited unit (Eq. 8).
    ell : int, default=1
        The inhibited unit is the one ranked ℓ places below the winner (the paper's ℓ; Eq. 8).
    radius : float or None, default=None
        Sphere radius R of the homeostatic term (Eq. 7). None: R per ``init`` as the authors use it
        (SPEC): 0.1 for "lecun", 1 for "std".
    p : float, default=2.0
        Lebesgue exponent of the KH currents I = (sign(S)|S|^(p-1)) x (Eq. 5).
    horizon : float or None, default=None
        S, the epoch at which ε reaches 0. None: ``n_iter``.
    init : {{"lecun", "std"}}, default="lecun"
        Weight init (SPEC): "lecun" W ~ N(0, 1/N), "std" W ~ N(0, 1); biases 0.
    sampler : {{"cd", "pcd"}}, default="cd"
        "cd": the negative chain starts at the data (the paper); "pcd": a persistent chain (what
        scikit-learn's BernoulliRBM uses).{extra}
    backend : {{"numba", "numpy"}}, default="numba"
        "numba": the fast kernels; "numpy": the plain transcription of SPEC (same random numbers).
    verbose : int, default=0
        When > 0, print after each epoch the reconstruction MSE per pixel (Eq. 11){accuracy}
        on the first 1000 training samples, and the epoch's time.
    random_state : int, RandomState instance or None, default=None
        An int is the run's seed (every random number of a run derives from it: init, minibatch order,
        Gibbs and KH samples); otherwise a seed is drawn from it. KHBernoulliRBM's ``score_samples``
        (the corrupted feature) and ``gibbs`` also draw from it, as scikit-learn's BernoulliRBM does.
"""


class KHBernoulliRBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _KHRBMEstimator):
    __doc__ = """Bernoulli RBM trained by CD-k with Krotov–Hopfield competition (Tambaş et al. 2025).

    A drop-in beside ``sklearn.neural_network.BernoulliRBM`` (same parameter names, same fitted
    attributes, ``transform`` = p(h=1|v), ``score_samples`` = its pseudo-log-likelihood), trained the way
    the paper does: before each CD step, one KH step makes units compete (Eq. 9): the visible units for
    the hidden sample (TD) or the hidden units for the data (BU). Energy
    E(v,h) = -vᵀWh - aᵀv - bᵀh (Eq. 1). Data: binary, or values in [0, 1]; scipy sparse matrices are
    accepted (densified for training, which stores binary data as uint8). Values outside [0, 1] are
    trained on with a warning. The defaults are the authors' reconstruction preset for MNIST with
    M = 100 and lecun init (KH_TD, ε0 = 0.04, Δ = 0.4, R = 0.1; SPEC's table), run for scikit-learn's
    10 epochs with the ε schedule ending with them.
    """ + _PARAMETERS_DOC.format(eps0="0.04", delta="0.4", extra="", accuracy="") + """
    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features), float32
        Weights Wᵀ.
    intercept_visible_ : ndarray of shape (n_features,)
        Visible biases a.
    intercept_hidden_ : ndarray of shape (n_components,)
        Hidden biases b.
    persistent_chain_ : ndarray of shape (batch_size, n_features) or None
        The visible states of the persistent chain (``sampler="pcd"``), else None.
    n_iter_ : int
        Epochs trained so far (``fit``: ``n_iter``; each ``partial_fit`` adds one).
    seed_ : int
        The seed of the run (from ``random_state``).
    random_state_ : RandomState
        The random state ``gibbs`` draws from.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when X has string feature names.

    Examples
    --------
    >>> import numpy as np
    >>> from khrbm import KHBernoulliRBM
    >>> X = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    >>> KHBernoulliRBM(n_components=2, random_state=0).fit(X).transform(X).shape
    (4, 2)
    """

    def __init__(self, n_components=100, *, learning_rate=0.1, batch_size=100, n_iter=10, k=1, kh_mode="td",
                 eps0=0.04, delta=0.4, ell=1, radius=None, p=2.0, horizon=None, init="lecun", sampler="cd",
                 backend="numba", verbose=0, random_state=None):
        _store_parameters(self, locals())

    def fit(self, X, y=None):
        """Train ``n_iter`` epochs from a fresh init (minibatches in a seeded random order, each a KH step
        then a CD-k step, Eq. 9). ``y`` is ignored. Returns self."""
        X = validate_data(self, X, accept_sparse="csr", dtype=(np.float64, np.float32))
        self._train(X, None, self.n_iter, warm=False)
        self.random_state_ = check_random_state(self.random_state)
        return self

    def partial_fit(self, X, y=None):
        """Train one more epoch over X, continuing from the fitted state (a fresh init on the first call).

        Call e (from 0) is epoch e of the ε schedule, with the minibatch order and random streams of epoch e
        of a run on X: ``n_iter`` calls on the same X give exactly ``fit(X)``. From call ``horizon`` on
        (default ``n_iter``) ε is 0 and the step is plain CD. With ``len(X) <= batch_size`` a call is one
        step on X, as scikit-learn's ``partial_fit``. Returns self."""
        first = not hasattr(self, "components_")
        X = validate_data(self, X, accept_sparse="csr", dtype=(np.float64, np.float32), reset=first)
        self._train(X, None, 1, warm=not first)
        if first:
            self.random_state_ = check_random_state(self.random_state)
        return self

    def transform(self, X):
        """p(h_j = 1 | v) = σ(vW + b)_j for each row v of X (SPEC, CD step 1), in X's float dtype.

        Returns an ndarray of shape (n_samples, n_components)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False, dtype=(np.float64, np.float32))
        return hidden_probs(X, self.components_.T.astype(X.dtype), self.intercept_hidden_.astype(X.dtype))

    def score_samples(self, X):
        """Pseudo-log-likelihood of each row, exactly as scikit-learn's BernoulliRBM.score_samples:
        N · log σ(F(ṽ) - F(v)), with F the free energy (SPEC, notation) and ṽ the row with one pixel
        flipped, drawn uniformly with ``check_random_state(random_state)``. Its expectation over the flip
        is Σ_i log p(v_i | v_-i). Not deterministic unless ``random_state`` is an int.

        Returns an ndarray of shape (n_samples,), float64."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False, dtype=(np.float64, np.float32))
        flip = check_random_state(self.random_state).randint(0, X.shape[1], X.shape[0])
        params = self._params()
        return np.concatenate([pll_samples(block, params, flip[start:start + len(block)])
                               for start, block in zip(range(0, X.shape[0], CHUNK), _dense_blocks(X))])

    def gibbs(self, v):
        """One Gibbs step from each row of v: h ~ p(h|v) = Bern(σ(vW + b)), then v' ~ Bern(σ(hWᵀ + a))
        (SPEC, CD step 2), with random numbers drawn from ``random_state_``.

        Returns a boolean ndarray of shape (n_samples, n_features), as scikit-learn's."""
        check_is_fitted(self)
        v = validate_data(self, v, accept_sparse="csr", reset=False, dtype=(np.float64, np.float32))
        v = v.toarray() if sparse.issparse(v) else v
        key = int(self.random_state_.randint(np.iinfo(np.int64).max, dtype=np.int64))
        params = self._params()
        return gibbs_chain(v.astype(params.W.dtype), params, 1, key).astype(bool)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class KHClassRBM(ClassifierMixin, _KHRBMEstimator):
    __doc__ = """Classification RBM (Larochelle et al. 2012) trained with Krotov–Hopfield competition.

    The visible layer is [x, onehot(y)]: the features plus one unit per class (in the order of
    ``classes_``); the joint RBM is trained generatively by the same KH + CD-k steps (SPEC, cRBM; KH acts on
    the whole W). Prediction is exact: log p(y|x) = a_y + Σ_j softplus(b_j + (xW_x)_j + W_{y,j}) -
    logsumexp over y. Any label set; data as for :class:`KHBernoulliRBM`. The defaults are the authors'
    classification preset for MNIST with M = 100 and lecun init (KH_TD, ε0 = 0.002, Δ = 0.7, R = 0.1;
    SPEC's table).
    """ + _PARAMETERS_DOC.format(
        eps0="0.002", delta="0.7", accuracy=" and the training accuracy", extra="""
    label_sampling : {"argmax", "softmax"}, default="argmax"
        Negative phase of the label block: the argmax one-hot of hW_yᵀ + a_y (the authors' code) or a
        sample of its softmax (the textbook choice).""") + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels; class ``classes_[c]`` is label unit c.
    components_ : ndarray of shape (n_components, n_features + n_classes), float32
        Weights Wᵀ of the joint visible layer; the last n_classes columns are the label weights W_y.
    intercept_visible_ : ndarray of shape (n_features + n_classes,)
        Visible biases a; the last n_classes are the label biases a_y.
    intercept_hidden_ : ndarray of shape (n_components,)
        Hidden biases b.
    persistent_chain_, n_iter_, seed_, n_features_in_, feature_names_in_
        As in :class:`KHBernoulliRBM`.
    """

    _task = "classification"

    def __init__(self, n_components=100, *, learning_rate=0.1, batch_size=100, n_iter=10, k=1, kh_mode="td",
                 eps0=0.002, delta=0.7, ell=1, radius=None, p=2.0, horizon=None, init="lecun", sampler="cd",
                 label_sampling="argmax", backend="numba", verbose=0, random_state=None):
        _store_parameters(self, locals())

    def fit(self, X, y):
        """Train ``n_iter`` epochs on the joint vectors [x, onehot(y)] from a fresh init. Returns self."""
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=(np.float64, np.float32))
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        self._train(X, codes, self.n_iter, warm=False)
        self.classes_ = classes
        return self

    def predict_proba(self, X):
        """Exact p(y|x) of each row (SPEC, cRBM), columns in the order of ``classes_``.

        Returns an ndarray of shape (n_samples, n_classes), float64."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False, dtype=(np.float64, np.float32))
        params = self._params()
        return np.concatenate([np.exp(crbm_log_posterior(block, params, len(self.classes_)))
                               for block in _dense_blocks(X)])

    def predict(self, X):
        """The most probable class argmax_y p(y|x) of each row."""
        best = np.argmax(self.predict_proba(X), axis=1)
        return self.classes_[best]
