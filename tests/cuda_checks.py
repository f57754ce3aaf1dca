"""The CUDA step against the NumPy reference on the same random numbers (collected by test_cuda_sim.py,
on Numba's CUDA simulator, or on a GPU with KHRBM_CUDA_DEVICE=1).

* The device's counter-based streams equal khrbm.core.rng bit for bit.
* One run (CudaStepper, through make_stepper): float64 equals ``numpy_step`` to ~1e-9 after every step
  for CD-k, PCD-k, KH TD and BU, ℓ > 1 and its band, p ≠ 2, the cRBM (argmax and softmax label block),
  grey-valued data and partial batches; float32 agrees closely (same units on, rankings equal).
* R runs at once (BatchedCudaStepper), each with its own seed and live settings, equal run by run to
  ``numpy_step``: through the step contract, and resident (dataset and θ on the device, each run its own
  data order, live changes between steps, PCD chains started and resized as Run does, the shuffled
  control among them).

Shapes are tiny (N = 10, M = 6, B = 5): the simulator runs every GPU thread as a Python thread.
"""
from __future__ import annotations

import sys
from contextlib import nullcontext

import numpy as np
import pytest
from numba import cuda          # the simulator when NUMBA_ENABLE_CUDASIM=1 (see test_cuda_sim.py)

from khrbm.core import cuda_kernels, rng
from khrbm.core.cuda_stepper import BatchedCudaStepper, CudaStepper, simulated
from khrbm.core.kernels import make_stepper
from khrbm.core.rbm import Params
from khrbm.core.step import StepSettings, numpy_step

sys.setswitchinterval(1e-4)           # the simulator's block manager polls its threads under the GIL
# uint64 arithmetic wraps by design (SplitMix64); the simulator runs it on NumPy scalars, which warn
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar:RuntimeWarning")

N, M, B = 10, 6, 5
ROWS = (5, 4, 5)                      # rows of the batches of consecutive steps: a partial batch in between


def random_params(seed, n_visible=N, dtype=np.float64):
    g = np.random.default_rng(seed)
    return Params(g.normal(0, 0.6, (n_visible, M)).astype(dtype), g.normal(0, 0.5, n_visible).astype(dtype),
                  g.normal(0, 0.5, M).astype(dtype))


def batches(seed, n_labels=0, grey=False):
    """The batches of ROWS: sparse binary pixels (or grey values) + a one-hot label block."""
    g = np.random.default_rng(100 + seed)
    out = []
    for n in ROWS:
        pix = g.random((n, N - n_labels))
        pix = pix * (pix < 0.5) if grey else (pix < 0.3).astype(np.uint8)
        if n_labels:
            pix = np.concatenate([pix, np.eye(n_labels, dtype=pix.dtype)[g.integers(0, n_labels, n)]], axis=1)
        out.append(np.ascontiguousarray(pix))
    return out


def resized(chain, n):
    """Run's rule for a persistent chain when the batch size changes (cut, or tile)."""
    return np.tile(chain, (-(-n // len(chain)), 1))[:n]


def assert_same(ours: Params, ref: Params, atol=1e-9):
    scale = max(np.abs(ref.W).max(), 1.0)
    for name in ("W", "a", "b"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=0, atol=atol * scale,
                                   err_msg=name)


# -------------------------------------------------------------------------------------------------
# random streams


def test_device_streams_equal_rng_bit_for_bit():
    keys = np.array([0, 1, 2**64 - 1, rng.stream(5, 3), rng.stream(2**40, 7)], np.uint64)
    out = cuda.to_device(np.zeros((len(keys), 300), np.float32))
    cuda_kernels.uniforms_kernel[(300 // 32 + 1, len(keys)), 32](cuda.to_device(keys), out)
    got = out.copy_to_host()
    for r, key in enumerate(keys):
        np.testing.assert_array_equal(got[r], rng.uniforms(int(key), 300))
    purposes = np.array([rng.KH_HIDDEN, rng.GIBBS_HIDDEN, rng.GIBBS_VISIBLE + 18, rng.GIBBS_LABEL + 3, 2**40],
                        np.int64)
    sub = cuda.to_device(np.zeros((len(keys), len(purposes)), np.uint64))
    cuda_kernels.stream_kernel[(1, len(keys)), 8](cuda.to_device(keys), cuda.to_device(purposes), sub)
    expected = [[rng.stream(int(k), int(p)) for p in purposes] for k in keys]
    np.testing.assert_array_equal(sub.copy_to_host(), np.array(expected, np.uint64))


# -------------------------------------------------------------------------------------------------
# one run

CASES = {
    "cd1": StepSettings(),
    "cd3": StepSettings(k=3, lr=0.2),
    "pcd2": StepSettings(k=2, persistent=True),
    "td_l1": StepSettings(kh_mode="td", eps=0.05, delta=0.4),
    "td_l3_band_p3": StepSettings(kh_mode="td", eps=0.05, delta=0.3, ell=3, ell_band=True, p=3.0, radius=0.1),
    "td_l2_p1.5": StepSettings(kh_mode="td", eps=0.03, delta=0.5, ell=2, p=1.5, radius=0.5),
    "bu_l1": StepSettings(kh_mode="bu", eps=0.05, delta=0.4),
    "bu_l2_p3": StepSettings(kh_mode="bu", eps=0.05, delta=0.6, ell=2, p=3.0, radius=0.1),
    "bu_l3_band": StepSettings(kh_mode="bu", eps=0.04, delta=0.3, ell=3, ell_band=True),
    "td_pcd_k2": StepSettings(kh_mode="td", eps=0.02, k=2, persistent=True),
    "crbm_argmax_td": StepSettings(n_labels=3, kh_mode="td", eps=0.03, k=2),
    "crbm_softmax": StepSettings(n_labels=3, label_sampling="softmax", k=2),
    "crbm_softmax_bu_pcd": StepSettings(n_labels=3, label_sampling="softmax", kh_mode="bu", eps=0.03,
                                        persistent=True),
}


def run_single(st, dtype, seed=3, grey=False):
    """Three steps (batches of 5, 4, 5 rows) of the reference and of make_stepper("cuda") from the same
    θ and keys, each on its own trajectory; yields (ours, ref, ranked pair, chain pair) after each step."""
    ref = random_params(seed, dtype=dtype)
    ours = ref.copy()
    stepper = make_stepper("cuda", N, M, B, dtype)
    assert isinstance(stepper, CudaStepper)
    chain_ref = chain_ours = None
    for t, X in enumerate(batches(seed, st.n_labels, grey)):
        if st.persistent:
            chain_ref = X.astype(dtype) if chain_ref is None else resized(chain_ref, len(X))
            chain_ours = X.astype(dtype) if chain_ours is None else resized(chain_ours, len(X))
        key = rng.stream(seed, t)
        r1 = numpy_step(ref, X, st, key, None if chain_ref is None else chain_ref.copy())
        r2 = stepper.step(ours, X, st, key, None if chain_ours is None else chain_ours.copy())
        chain_ref, chain_ours = r1.chain, r2.chain
        yield ours, ref, (r2.ranked, r1.ranked), (chain_ours, chain_ref)


@pytest.mark.parametrize("name", list(CASES))
def test_float64_one_run_equals_reference(name):
    st = CASES[name]
    for ours, ref, (rk_ours, rk_ref), (c_ours, c_ref) in run_single(st, np.float64):
        assert_same(ours, ref)
        if st.kh_active:
            np.testing.assert_array_equal(rk_ours, rk_ref)
            assert rk_ours.dtype == np.int64
        else:
            assert rk_ours is None
        if st.persistent:
            assert c_ours.dtype == np.float64
            np.testing.assert_array_equal(c_ours, c_ref)
        else:
            assert c_ours is None


@pytest.mark.parametrize("st", [StepSettings(kh_mode="bu", eps=0.05, k=2), StepSettings(persistent=True)],
                         ids=["bu_k2", "pcd1"])
def test_float64_grey_values(st):
    """Data that are not binary (grey levels) go through the same products with their values."""
    for ours, ref, _, chains in run_single(st, np.float64, grey=True):
        assert_same(ours, ref)
        if st.persistent:
            np.testing.assert_array_equal(*chains)


@pytest.mark.parametrize("name", ["cd1", "td_l1", "bu_l2_p3", "crbm_softmax"])
def test_float32_one_run_close_to_reference(name):
    """float32: the same units come on (a unit flips only within ~1e-7 of its uniform, which these
    inputs avoid), so θ agrees to float32 rounding and the rankings are equal."""
    st = CASES[name]
    for ours, ref, (rk_ours, rk_ref), _ in run_single(st, np.float32):
        assert ours.W.dtype == np.float32
        assert_same(ours, ref, atol=3e-6)
        if st.kh_active:
            np.testing.assert_array_equal(rk_ours, rk_ref)


def test_tie_breaking_like_kh_ranking():
    """Integer weights make many currents equal: ties go to the lower unit index, as kh.kh_ranking."""
    X = batches(5)[0]
    for mode in ("td", "bu"):
        for ell in (1, 3):
            W = np.random.default_rng(ell).integers(-1, 2, size=(N, M)).astype(np.float64)
            ref = Params(W, np.zeros(N), np.zeros(M))
            ours = ref.copy()
            st = StepSettings(kh_mode=mode, eps=0.01, ell=ell)
            r1 = numpy_step(ref, X, st, 11)
            r2 = CudaStepper(N, M, B, np.float64).step(ours, X, st, 11)
            np.testing.assert_array_equal(r2.ranked, r1.ranked)
            assert_same(ours, ref)


def test_warmup_then_a_fresh_stepper_equals_reference():
    """warmup() launches every kernel variant on a stepper of its own: nothing of it leaks into the next."""
    stepper = make_stepper("cuda", N, M, B, np.float32)
    stepper.warmup()
    ref = random_params(4, dtype=np.float32)
    ours = ref.copy()
    X = batches(4)[0]
    st = CASES["td_l1"]
    np.testing.assert_array_equal(stepper.step(ours, X, st, 9).ranked, numpy_step(ref, X, st, 9).ranked)
    assert_same(ours, ref, atol=3e-6)


def test_bad_input_one_line():
    stepper = CudaStepper(N, M, B, np.float64)
    p = random_params(1)
    X = batches(1)[0]
    for bad, match in [(lambda: stepper.step(p, np.zeros((B + 1, N)), StepSettings(), 1), "rows"),
                       (lambda: stepper.step(p, X, StepSettings(kh_mode="bu", eps=0.1, ell=M), 1), "ℓ must be"),
                       (lambda: stepper.step(random_params(1, dtype=np.float32), X, StepSettings(), 1), "float64"),
                       (lambda: stepper.step(p, X, StepSettings(persistent=True), 1), "chain"),
                       (lambda: stepper.step(p, X, StepSettings(k=0), 1), "k must")]:
        with pytest.raises(ValueError, match=match) as err:
            bad()
        assert "\n" not in str(err.value)


# -------------------------------------------------------------------------------------------------
# many runs at once

RUNS = [
    StepSettings(),
    StepSettings(kh_mode="td", eps=0.05, delta=0.4, k=2),
    StepSettings(kh_mode="bu", eps=0.03, delta=0.6, ell=2, p=3.0, radius=0.1, persistent=True),
    StepSettings(kh_mode="td", eps=0.04, delta=0.3, ell=3, ell_band=True, lr=0.05),
    StepSettings(kh_mode="td", eps=0.02, shuffle_xi=True),          # the shuffled control, on the host
]


def test_batched_step_contract_equals_reference_run_by_run():
    R = len(RUNS)
    seeds = [11 + r for r in range(R)]
    refs = [random_params(s) for s in seeds]
    ours = [p.copy() for p in refs]
    stepper = BatchedCudaStepper(N, M, B, R, np.float64)
    data = [batches(s) for s in seeds]
    chains_ref = [None] * R
    chains_ours = [None] * R
    for t, n in enumerate(ROWS):
        Xs = [data[r][t] for r in range(R)]
        keys = [rng.stream(seeds[r], t) for r in range(R)]
        for r, st in enumerate(RUNS):
            if st.persistent:
                chains_ref[r] = Xs[r].astype(np.float64) if chains_ref[r] is None else resized(chains_ref[r], n)
                chains_ours[r] = Xs[r].astype(np.float64) if chains_ours[r] is None else resized(chains_ours[r], n)
        expected = [numpy_step(refs[r], Xs[r], RUNS[r], keys[r], chains_ref[r]) for r in range(R)]
        got = stepper.step(ours, Xs, RUNS, keys, chains_ours)
        for r, st in enumerate(RUNS):
            assert_same(ours[r], refs[r])
            if st.kh_active:
                np.testing.assert_array_equal(got[r].ranked, expected[r].ranked)
            else:
                assert got[r].ranked is None
            if st.persistent:
                np.testing.assert_array_equal(got[r].chain, expected[r].chain)
            chains_ref[r], chains_ours[r] = expected[r].chain, got[r].chain


def test_batched_resident_equals_reference_run_by_run():
    """θ and the dataset stay on the device; each run draws its own rows; settings change between steps
    (KH switched off, ℓ and k changed, ε decays); PCD chains start at the first batch and are cut/tiled."""
    R = 4
    g = np.random.default_rng(9)
    data = (g.random((30, N)) < 0.3).astype(np.uint8)
    seeds = [21, 22, 23, 24]
    plans = [   # settings of each run at steps 0, 1, 2
        [StepSettings(kh_mode="td", eps=0.05), StepSettings(kh_mode="td", eps=0.03, ell=2),
         StepSettings(kh_mode="off", k=2)],
        [StepSettings(persistent=True, k=2), StepSettings(persistent=True, kh_mode="bu", eps=0.04),
         StepSettings(persistent=True, kh_mode="bu", eps=0.02, ell=3, ell_band=True)],
        [StepSettings(kh_mode="bu", eps=0.05, p=3.0, radius=0.1), StepSettings(lr=0.3),
         StepSettings(kh_mode="td", eps=0.01, delta=1.0, k=3)],
        [StepSettings(kh_mode="td", eps=0.02, shuffle_xi=True), StepSettings(k=2),
         StepSettings(kh_mode="td", eps=0.01, shuffle_xi=True, persistent=True)],
    ]
    refs = [random_params(s) for s in seeds]
    stepper = BatchedCudaStepper(N, M, B, R, np.float64)
    stepper.set_data(data)
    stepper.load(refs)
    chains = [None] * R
    for t, n in enumerate((5, 3, 5)):
        rows = np.stack([rng.generator(s, t).permutation(len(data))[:n] for s in seeds])
        keys = [rng.stream(s, t) for s in seeds]
        settings = [plan[t] for plan in plans]
        ranked = stepper.advance(settings, keys, rows=rows, want_ranked=t != 1)
        for r, st in enumerate(settings):
            X = data[rows[r]]
            if st.persistent:
                chains[r] = X.astype(np.float64) if chains[r] is None else resized(chains[r], n)
            res = numpy_step(refs[r], X, st, keys[r], chains[r])
            chains[r] = res.chain
            if t == 1:
                assert ranked is None
            elif st.kh_active:
                np.testing.assert_array_equal(ranked[r], res.ranked)
        got = stepper.fetch()
        for r in range(R):
            assert_same(got[r], refs[r])
        device_chains = stepper.fetch_chains()
        np.testing.assert_array_equal(device_chains[1], chains[1])
        assert device_chains[0] is None and device_chains[2] is None


def test_batched_bad_input():
    stepper = BatchedCudaStepper(N, M, B, 2, np.float64)
    stepper.load([random_params(1), random_params(2)])
    X = np.stack(batches(1)[:1] * 2)
    cases = [(lambda: stepper.advance([StepSettings(n_labels=2), StepSettings()], [1, 2], X=X), "n_labels"),
             (lambda: stepper.advance([StepSettings()], [1], X=X), "expected 2"),
             (lambda: stepper.advance([StepSettings()] * 2, [1, 2], rows=np.zeros((2, 3), int)), "set_data"),
             (lambda: stepper.advance([StepSettings()] * 2, [1, 2], X=X, rows=np.zeros((2, 3), int)), "not both"),
             (lambda: stepper.load([random_params(1)]), "expected 2"),
             (lambda: stepper.load([random_params(3), random_params(4)], [None, np.zeros((B + 1, N))]), "a chain")]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match) as err:
            bad()
        assert "\n" not in str(err.value)
    stepper.set_data(np.zeros((4, N), np.uint8))
    with pytest.raises(ValueError, match="indices below 4"):
        stepper.advance([StepSettings()] * 2, [1, 2], rows=np.full((2, 3), 4))
    with pytest.raises(ValueError, match="2 batches of 1..5 rows"):
        stepper.advance([StepSettings()] * 2, [1, 2], X=[X[0], X[0][:2]])
    for got, expected in zip(stepper.fetch(), [random_params(1), random_params(2)]):     # nothing stepped
        assert_same(got, expected, atol=0)
    with pytest.raises(ValueError, match="CUDA graphs need a GPU") if simulated() else nullcontext():
        BatchedCudaStepper(N, M, B, 2, np.float64, graphs=True)
