"""The GPU step (``backend="cuda"``): R runs of one shape advanced in lockstep on one GPU, and the
single-run stepper with :class:`khrbm.core.kernels.NumbaStepper`'s contract.

Two ways to drive :class:`BatchedCudaStepper`:

* **The step contract** (what :class:`khrbm.train.run.Run` calls, through :class:`CudaStepper` for R = 1):
  ``step(params_list, X_list, settings_list, keys, chains=None) -> list[StepResult]`` does, for every run,
  exactly what :func:`khrbm.core.step.numpy_step` does on the same random numbers: θ is copied to the
  device, stepped, and copied back into the caller's arrays, every call.
* **Resident** (for sweeps: θ, the PCD chains and the dataset stay on the GPU between steps)::

      stepper = BatchedCudaStepper(n_visible, n_hidden, batch_size, n_runs, "float32")
      stepper.set_data(V)                       # every training vector (n × N, uint8 or float), once
      stepper.load(params_list)                 # θ of each run (and PCD chains, if any)
      for t in ...:
          stepper.advance(settings_list, keys, rows=rows)   # rows: (R, nr) indices into V, one batch per run
      stepper.fetch(params_list)                # θ back into the runs' arrays (for metrics, checkpoints)

  ``settings_list[r]`` is run r's :class:`~khrbm.core.step.StepSettings` of this step (its own ε from its
  own schedule, Δ, ℓ, KH mode, k, η, R, p, CD or PCD, label sampling); ``keys[r]`` its step key
  (``rng.stream(seed_r, t)``, as Run uses). Only the shapes (N, M, B), the dtype and ``n_labels`` are
  shared. Each run steps as ``numpy_step`` would on its own (tests/cuda_checks.py).

Each step is one batched set of launches for all R runs: CD-1 is 4 kernels (positive phase with the first
hidden sample, visible sample, negative phase, gradient), each Gibbs step adds 2, PCD 1, the cRBM label
block 1 per Gibbs step, and an active KH step 6 (TD sample, currents, ranking, homeostatic coefficients,
ds with its max, the update). The per-step inputs (keys, settings, the batch or its row indices) are
copied into fixed device buffers before the launches, so the same launch sequence can be captured once
and replayed as a CUDA graph (see benchmarks/README.md: the plan, not yet measured).

The shuffled control (``shuffle_xi``) runs on the host (:func:`khrbm.core.step.shuffled_xi_step`).
"""
from __future__ import annotations

import threading

import numpy as np

from ..config import ConfigError
from .rbm import Params
from .step import StepResult, StepSettings, shuffled_xi_step

__all__ = ["BatchedCudaStepper", "CudaStepper", "gpu_unavailable_reason", "require_gpu"]

INSTALL_HINT = "install the GPU path with: pip install 'khrbm[cuda]' (NVIDIA driver needed), or use backend 'numba'"
BLOCK = (64, 2)          # threads per block on a GPU: 64 along the contiguous output dimension × 2 rows
SIM_BLOCK = (4, 4)       # on Numba's CUDA simulator, where every thread is a Python thread

_LOCK = threading.RLock()


def gpu_unavailable_reason() -> str | None:
    """None when Numba's CUDA target can run kernels here (a GPU, or the simulator when
    NUMBA_ENABLE_CUDASIM=1), else why not, in a few words."""
    try:
        from numba import cuda
    except Exception as exc:  # noqa: BLE001 - missing bindings or libraries surface here in many types
        return f"numba.cuda cannot be imported ({type(exc).__name__}: {exc})"
    try:
        if cuda.is_available():
            return None
    except Exception as exc:  # noqa: BLE001
        return f"the CUDA driver failed ({type(exc).__name__}: {exc})"
    return "no CUDA GPU or driver was found"


def require_gpu() -> None:
    """ConfigError (one line, naming the backend and what to do) unless a CUDA device is usable."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise ConfigError("backend", f"'cuda' needs an NVIDIA GPU: {reason}; {INSTALL_HINT}")


def simulated() -> bool:
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def _core_stream(stream):
    """The cuda.core Stream of a Numba stream (CUDA graphs are built through cuda.core's GraphBuilder,
    which numba-cuda >= 0.30 accepts in place of a stream)."""
    if simulated():
        raise ValueError("CUDA graphs need a GPU, not the simulator")
    try:
        from cuda.core import Stream
    except ImportError as exc:
        raise ValueError(f"CUDA graphs need numba-cuda with cuda.core ({exc}); pip install 'khrbm[cuda]'")
    handle = getattr(stream.handle, "value", stream.handle)
    return Stream.from_handle(int(handle))


def _grid(cols: int, rows: int, runs: int, block) -> tuple:
    tx, ty = block
    return (-(-cols // tx), -(-rows // ty), runs), (tx, ty)


class BatchedCudaStepper:
    """R runs of shape (N visible, M hidden, batch ≤ B) in one dtype, stepped together on the GPU."""

    def __init__(self, n_visible: int, n_hidden: int, batch_size: int, n_runs: int, dtype=np.float32,
                 block: tuple[int, int] | None = None, graphs: bool = False):
        require_gpu()
        from numba import cuda

        from .cuda_kernels import N_FLOAT, N_INT, kernels_for

        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        self.batch_size, self.n_runs = int(batch_size), int(n_runs)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if min(self.n_visible, self.n_hidden, self.batch_size, self.n_runs) < 1:
            raise ValueError("n_visible, n_hidden, batch_size and n_runs must be at least 1")
        self.block = tuple(block or (SIM_BLOCK if simulated() else BLOCK))
        tx, ty = self.block
        if tx * ty & (tx * ty - 1):
            raise ValueError(f"threads per block must be a power of two, got {tx}×{ty}")
        self.kern = kernels_for(self.dtype.name, tx, ty)
        self.cuda = cuda
        self.stream = cuda.stream()
        self.staged = cuda.event()             # recorded after each step's input copies (see _stage)
        self.graphs = bool(graphs)
        self._graphs: dict = {}
        if self.graphs:
            self._core_stream = _core_stream(self.stream)
        R, N, M, B, dt = self.n_runs, self.n_visible, self.n_hidden, self.batch_size, self.dtype
        K = max(N, M)
        dev = cuda.device_array
        self.W, self.a, self.b = dev((R, N, M), dt), dev((R, N), dt), dev((R, M), dt)
        self.X, self.V = dev((R, B, N), dt), dev((R, B, N), dt)
        self.H, self.Ph, self.Qh = dev((R, B, M), dt), dev((R, B, M), dt), dev((R, B, M), dt)
        self.I, self.G, self.c = dev((R, B, K), dt), dev((R, B, K), np.float64), dev((R, K), np.float64)
        self.dsmax = dev(R, np.float64)
        self.ds = None                               # (R, N, M) float64, allocated with the first KH step
        self.ranked = None                           # (R, B, ℓ+1) int32, grown with ℓ
        self.Lact = dev((R, B, 1), dt)               # the label block's activations, sized per n_labels
        # per-step inputs: host staging (pinned) and their device buffers
        self.keys_h, self.keys = cuda.pinned_array(R, np.uint64), dev(R, np.uint64)
        self.ist_h, self.ist = cuda.pinned_array((R, N_INT), np.int64), dev((R, N_INT), np.int64)
        self.fst_h, self.fst = cuda.pinned_array((R, N_FLOAT), np.float64), dev((R, N_FLOAT), np.float64)
        self.X_h = cuda.pinned_array((R, B, N), dt)
        self.rows_h, self.rows = cuda.pinned_array((R, B), np.int64), dev((R, B), np.int64)
        self.data = None
        self.data_host = None
        self.chain_rows = np.zeros(R, np.int64)      # rows of each run's PCD chain on the device (0: none)

    # ---------------------------------------------------------------------------------------------
    # the step contract

    def step(self, params_list, X_list, settings_list, keys, chains=None) -> list[StepResult]:
        """``numpy_step(params_list[r], X_list[r], settings_list[r], keys[r], chains[r])`` for every run r
        (in place on the params; same random numbers), in one batched device step."""
        R = self.n_runs
        chains = [None] * R if chains is None else list(chains)
        X = [np.asarray(x) for x in X_list]
        if len(X) != R or len(chains) != R:
            raise ValueError(f"expected {R} batches and chains, got {len(X)} and {len(chains)}")
        nr = len(X[0])
        for r, st in enumerate(settings_list):
            if st.persistent:
                if chains[r] is None:
                    raise ValueError("PCD needs the persistent chain")
                if np.shape(chains[r]) != X[r].shape:
                    raise ValueError(f"the persistent chain must have X's shape {X[r].shape}, "
                                     f"got {np.shape(chains[r])}")
        self.load(params_list, [c if s.persistent else None for c, s in zip(chains, settings_list)])
        ranked = self.advance(settings_list, keys, X=X, want_ranked=True)
        self.fetch(params_list)
        out_chains = self.fetch_chains(nr)
        return [StepResult(out_chains[r] if st.persistent else None, ranked[r])
                for r, st in enumerate(settings_list)]

    # ---------------------------------------------------------------------------------------------
    # resident state

    def load(self, params_list, chains=None) -> None:
        """Copy θ of every run (and the PCD chains given; None keeps none) to the device."""
        params_list = list(params_list)
        if len(params_list) != self.n_runs:
            raise ValueError(f"expected {self.n_runs} params, got {len(params_list)}")
        for p in params_list:
            self._check_params(p)
        chains = [None] * self.n_runs if chains is None else [None if c is None else np.asarray(c, self.dtype)
                                                              for c in chains]
        for c in chains:
            if c is not None and (c.ndim != 2 or c.shape[1] != self.n_visible or not 1 <= len(c) <= self.batch_size):
                raise ValueError(f"a chain must have 1..{self.batch_size} rows of {self.n_visible}, got {c.shape}")
        with _LOCK:
            for name in ("W", "a", "b"):
                stacked = np.stack([getattr(p, name) for p in params_list])
                getattr(self, name).copy_to_device(stacked, stream=self.stream)
            for r, chain in enumerate(chains):
                self.chain_rows[r] = 0 if chain is None else len(chain)
                if chain is not None:
                    self.V[r, :len(chain)].copy_to_device(np.ascontiguousarray(chain), stream=self.stream)
            self.stream.synchronize()

    def fetch(self, params_list=None) -> list[Params]:
        """θ of every run from the device: into ``params_list``'s arrays (in place) or new Params."""
        with _LOCK:
            W, a, b = (x.copy_to_host(stream=self.stream) for x in (self.W, self.a, self.b))
            self.stream.synchronize()
        if params_list is None:
            return [Params(W[r], a[r], b[r]) for r in range(self.n_runs)]
        for r, p in enumerate(params_list):
            p.W[...], p.a[...], p.b[...] = W[r], a[r], b[r]
        return list(params_list)

    def fetch_chains(self, nr: int | None = None) -> list[np.ndarray | None]:
        """Each run's PCD chain (its rows as of the last step; ``nr`` rows if given), None if it has none."""
        with _LOCK:
            V = self.V.copy_to_host(stream=self.stream)
            self.stream.synchronize()
        return [V[r, :(nr or n)].copy() if n else None for r, n in enumerate(self.chain_rows)]

    def set_data(self, V) -> None:
        """Put a dataset of visible vectors (n × N; uint8, bool or float) on the device for ``advance(rows=...)``."""
        V = np.ascontiguousarray(V)
        if V.dtype == np.bool_:
            V = V.view(np.uint8)
        if V.ndim != 2 or V.shape[1] != self.n_visible:
            raise ValueError(f"data must be n × {self.n_visible}, got {V.shape}")
        with _LOCK:
            self.data = self.cuda.to_device(V, stream=self.stream)
            self.data_host = V
            self.stream.synchronize()

    # ---------------------------------------------------------------------------------------------

    def advance(self, settings_list, keys, X=None, rows=None, want_ranked=False):
        """One step of every run on the resident θ: the batch is ``X`` (R × nr × N, host) or ``rows``
        (R × nr indices into the dataset of :meth:`set_data`). A persistent run without a chain starts
        it at its batch (as Run does); a chain of another length is cut or tiled to nr rows (as Run's).
        Returns each run's KH ranking (nr × (ℓ+1) int64, None when its KH step is inactive) if
        ``want_ranked``, else None (no host synchronisation)."""
        settings = list(settings_list)
        R = self.n_runs
        if len(settings) != R or len(keys) != R:
            raise ValueError(f"expected {R} settings and keys, got {len(settings)} and {len(keys)}")
        if (X is None) == (rows is None):
            raise ValueError("give the batch as X or as rows, not both")
        nr = self._check_batch(X, rows)
        n_labels = self._check_settings(settings)
        host = [st.kh_active and st.shuffle_xi for st in settings]
        with _LOCK:
            self._stage(settings, keys, host, X, rows, nr)
            self._launch(self._plan(settings, host, nr, n_labels))
            ranked = self._ranked(settings, host, nr) if want_ranked else None
            if any(host):
                ranked = self._host_steps(settings, keys, host, X, rows, nr, ranked)
        return ranked

    # ---------------------------------------------------------------------------------------------
    # internals

    def _check_params(self, p) -> None:
        N, M, dt = self.n_visible, self.n_hidden, self.dtype
        if p.W.shape != (N, M) or p.W.dtype != dt:
            raise ValueError(f"stepper is for W {N}×{M} {dt}, got {p.W.shape} {p.W.dtype}")
        for name, arr, n in (("W", p.W, N * M), ("a", p.a, N), ("b", p.b, M)):
            if not arr.flags.c_contiguous or arr.dtype != dt or arr.size != n:
                raise ValueError(f"params.{name} must be a C-contiguous {dt} array of {n} values")

    def _check_batch(self, X, rows) -> int:
        """The number of rows nr of this step's batch, after checking its shape (and row indices)."""
        R, N = self.n_runs, self.n_visible
        if X is not None:
            shapes = {np.shape(x) for x in X}
            nr = len(X[0]) if len(X) else 0
            if len(X) != R or shapes != {(nr, N)} or not 1 <= nr <= self.batch_size:
                raise ValueError(f"X must be {R} batches of 1..{self.batch_size} rows of {N}, got {sorted(shapes)}")
            return nr
        if self.data is None:
            raise ValueError("advance(rows=...) needs set_data() first")
        rows = np.asarray(rows)
        n = len(self.data_host)
        if rows.ndim != 2 or len(rows) != R or not 1 <= rows.shape[1] <= self.batch_size or \
                rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"rows must be {R} × (1..{self.batch_size}) indices below {n}, got shape {rows.shape}")
        return rows.shape[1]

    def _check_settings(self, settings) -> int:
        n_labels = {int(st.n_labels) for st in settings}
        if len(n_labels) != 1:
            raise ValueError(f"the runs of one batched stepper share n_labels, got {sorted(n_labels)}")
        n_labels = n_labels.pop()
        if not 0 <= n_labels < self.n_visible:
            raise ValueError(f"n_labels must be in [0, {self.n_visible}), got {n_labels}")
        for st in settings:
            if int(st.k) < 1:
                raise ValueError(f"k must be at least 1, got {st.k}")
            if st.kh_mode not in ("off", "td", "bu"):
                raise ValueError(f"unknown KH mode {st.kh_mode!r}")
            if st.kh_active:
                K = self.n_visible if st.kh_mode == "td" else self.n_hidden
                if not 1 <= int(st.ell) < K:
                    raise ValueError(f"ℓ must be in [1, {K - 1}] for {K} postsynaptic units, got {st.ell}")
        return n_labels

    def _stage(self, settings, keys, host, X, rows, nr) -> None:
        """Per-step inputs into the pinned staging arrays, then into their device buffers. The copies
        are asynchronous: the previous step's must have left the staging arrays before they are refilled."""
        from .cuda_kernels import BU, OFF, TD
        self.staged.synchronize()
        modes = {"td": TD, "bu": BU}
        self.keys_h[:] = keys if isinstance(keys, np.ndarray) and keys.dtype == np.uint64 else \
            np.array([int(key) & 0xFFFFFFFFFFFFFFFF for key in keys], np.uint64)
        self.ist_h[:] = [(not h, st.k, modes.get(st.kh_mode, OFF) if st.kh_active else OFF, st.ell, st.ell_band,
                          st.persistent, st.label_sampling != "argmax") for st, h in zip(settings, host)]
        self.fst_h[:] = [(st.lr, st.eps, st.delta, float(st.radius) ** float(st.p), st.p) for st in settings]
        s = self.stream
        self.keys.copy_to_device(self.keys_h, stream=s)
        self.ist.copy_to_device(self.ist_h, stream=s)
        self.fst.copy_to_device(self.fst_h, stream=s)
        k = self.kern
        if X is not None:
            for r in range(self.n_runs):
                self.X_h[r, :nr] = X[r]
            self.X.copy_to_device(self.X_h, stream=s)
        else:
            self.rows_h[:, :nr] = rows
            self.rows.copy_to_device(self.rows_h, stream=s)
            grid, block = _grid(self.n_visible, nr, self.n_runs, self.block)
            k.gather[grid, block, s](self.data, self.rows, nr, self.X)
        self.staged.record(s)
        # PCD chains: start at the batch, or cut / tile to nr rows (as Run does)
        for r, st in enumerate(settings):
            if not st.persistent:
                continue
            n = int(self.chain_rows[r])
            if n == 0:
                self.V[r, :nr].copy_to_device(self.X[r, :nr], stream=s)
            elif n < nr:
                grid, block = _grid(self.n_visible, nr, 1, self.block)
                k.tile_rows[grid, block, s](self.V[r:r + 1], n, nr)
            self.chain_rows[r] = nr

    def _plan(self, settings, host, nr, n_labels) -> list:
        """The step's launches for these settings: [(kernel, grid, block, args)], in order."""
        from .cuda_kernels import H_CHAIN, H_GIBBS, H_KH, H_NEGATIVE, H_POSITIVE
        k, R, blk = self.kern, self.n_runs, self.block
        N, M = self.n_visible, self.n_hidden
        live = [st for st, h in zip(settings, host) if not h]
        if not live:
            return []
        g_nm, b2 = _grid(M, N, R, blk)                 # one thread per W element
        g_bm, _ = _grid(M, nr, R, blk)                 # per hidden unit of each batch row
        g_bn, _ = _grid(N, nr, R, blk)                 # per visible unit of each batch row
        g_bk, _ = _grid(max(N, M), nr, R, blk)
        g_b = (-(-nr // blk[0]), 1, R)                 # per batch row
        g_k = (-(-max(N, M) // blk[0]), 1, R)
        b1 = (blk[0], 1)
        W, a, b, keys, ist, fst = self.W, self.a, self.b, self.keys, self.ist, self.fst
        plan = []
        if any(st.kh_active for st in live):
            if self.ds is None:
                self.ds = self.cuda.device_array((R, N, M), np.float64)
            L = max(int(st.ell) for st in live if st.kh_active) + 1
            if self.ranked is None or self.ranked.shape[2] < L:
                self.ranked = self.cuda.device_array((R, self.batch_size, L), np.int32)
            if any(st.kh_active and st.kh_mode == "td" for st in live):
                plan.append((k.hidden, g_bm, b2, (self.X, W, b, keys, ist, H_KH, 0, nr, self.Ph, self.H)))
            plan += [(k.currents, g_bk, b2, (self.X, self.H, W, ist, fst, nr, self.I)),
                     (k.rank, g_b, b1, (self.I, ist, fst, nr, N, M, self.ranked, self.G, self.dsmax)),
                     (k.kh_c, g_k, b1, (self.G, self.I, ist, nr, N, M, self.c)),
                     (k.kh_ds, g_nm, b2, (self.X, self.H, self.G, W, self.c, ist, fst, nr, self.ds, self.dsmax)),
                     (k.kh_apply, g_nm, b2, (W, self.ds, self.dsmax, ist, fst))]
        plan.append((k.hidden, g_bm, b2, (self.X, W, b, keys, ist, H_POSITIVE, 0, nr, self.Ph, self.H)))
        if any(st.persistent for st in live):
            plan.append((k.hidden, g_bm, b2, (self.V, W, b, keys, ist, H_CHAIN, 0, nr, self.Ph, self.H)))
        if n_labels and self.Lact.shape[2] != n_labels:
            self.Lact = self.cuda.device_array((R, self.batch_size, n_labels), self.dtype)
        npix = N - n_labels
        kmax = max(int(st.k) for st in live)
        for t in range(kmax):
            plan.append((k.visible, g_bn, b2, (self.H, W, a, keys, ist, t, nr, npix, self.V, self.Lact)))
            if n_labels:
                plan.append((k.labels, g_b, b1, (self.Lact, keys, ist, t, nr, npix, self.V)))
            if t + 1 < kmax:
                plan.append((k.hidden, g_bm, b2, (self.V, W, b, keys, ist, H_GIBBS, t + 1, nr, self.Qh, self.H)))
        plan += [(k.hidden, g_bm, b2, (self.V, W, b, keys, ist, H_NEGATIVE, 0, nr, self.Qh, self.H)),
                 (k.gradient, g_nm, b2, (self.X, self.V, self.Ph, self.Qh, W, a, b, ist, fst, nr))]
        return plan

    def _launch(self, plan) -> None:
        """Launch the plan on the stream; with ``graphs``, replay it as a CUDA graph captured the second
        time the same plan comes (the first run compiles and loads the kernels, which a capture must not)."""
        if not self.graphs:
            for kernel, grid, block, args in plan:
                kernel[grid, block, self.stream](*args)
            return
        key = tuple((kernel, grid, block, tuple(x if np.isscalar(x) else id(x) for x in args))
                    for kernel, grid, block, args in plan)
        graph = self._graphs.get(key)
        if graph is None and key not in self._graphs:
            self._graphs[key] = None                      # seen once: run it eagerly
            for kernel, grid, block, args in plan:
                kernel[grid, block, self.stream](*args)
            return
        if graph is None:
            builder = self._core_stream.create_graph_builder().begin_building()
            for kernel, grid, block, args in plan:
                kernel[grid, block, builder](*args)
            graph = self._graphs[key] = builder.end_building().complete()
        graph.launch(self._core_stream)

    def _ranked(self, settings, host, nr) -> list:
        """Each run's ranking from the device (waits for the step)."""
        out = [None] * self.n_runs
        if any(st.kh_active and not h for st, h in zip(settings, host)):
            ranked = self.ranked.copy_to_host(stream=self.stream)
            self.stream.synchronize()
            for r, st in enumerate(settings):
                if st.kh_active and not host[r]:
                    out[r] = ranked[r, :nr, :int(st.ell) + 1].astype(np.int64)
        else:
            self.stream.synchronize()
        return out

    def _host_steps(self, settings, keys, host, X, rows, nr, ranked):
        """The shuffled control's runs, on the host (:func:`shuffled_xi_step`) from their θ and chain on
        the device (untouched by the device step), then back to the device."""
        params = self.fetch()
        chains = self.fetch_chains(nr)
        for r, st in enumerate(settings):
            if not host[r]:
                continue
            batch = np.asarray(X[r]) if X is not None else self.data_host[np.asarray(rows)[r]]
            res = shuffled_xi_step(params[r], batch, st, int(keys[r]), chains[r] if st.persistent else None)
            for name in ("W", "a", "b"):
                getattr(self, name)[r].copy_to_device(getattr(params[r], name), stream=self.stream)
            if st.persistent:
                self.V[r, :nr].copy_to_device(np.ascontiguousarray(res.chain, self.dtype), stream=self.stream)
            if ranked is not None:
                ranked[r] = res.ranked
        self.stream.synchronize()
        return ranked


class CudaStepper:
    """``backend="cuda"``: the step of one run on the GPU with :class:`khrbm.core.kernels.NumbaStepper`'s
    contract (θ copied to the device and back every step; a batch of 1..``batch_size`` rows)."""

    def __init__(self, n_visible: int, n_hidden: int, batch_size: int, dtype=np.float32, block=None,
                 graphs: bool = False):
        self.batched = BatchedCudaStepper(n_visible, n_hidden, batch_size, 1, dtype, block, graphs)
        self.n_visible, self.n_hidden, self.batch_size = n_visible, n_hidden, batch_size
        self.dtype = self.batched.dtype

    def step(self, params, X, st: StepSettings, key: int, chain=None) -> StepResult:
        if st.kh_active and st.shuffle_xi:
            return shuffled_xi_step(params, X, st, key, chain)
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_visible or not 1 <= len(X) <= self.batch_size:
            raise ValueError(f"X must have 1..{self.batch_size} rows of {self.n_visible}, got {X.shape}")
        return self.batched.step([params], [X], [st], [key], [chain])[0]

    def warmup(self):
        """Compile every kernel for this dtype (Numba compiles CUDA kernels at their first launch)."""
        warmup(self.dtype)


def warmup(dtype=np.float32) -> None:
    """Launch every kernel variant once on a tiny batched stepper (CD-2, PCD, KH TD/BU with p ≠ 2, the
    cRBM label block, a dataset gather)."""
    N, M, B = 12, 5, 4
    g = np.random.default_rng(0)
    dt = np.dtype(dtype)
    stepper = BatchedCudaStepper(N, M, B, 2, dt)
    params = [Params((g.standard_normal((N, M)) * 0.1).astype(dt), np.zeros(N, dt), np.zeros(M, dt))
              for _ in range(2)]
    X = (g.random((2, B, N)) < 0.3).astype(dt)
    stepper.load(params)
    stepper.set_data(X[0].astype(np.uint8))
    both = [StepSettings(k=2, kh_mode="td", eps=0.01, p=3.0, n_labels=3, label_sampling="softmax"),
            StepSettings(persistent=True, kh_mode="bu", eps=0.01, n_labels=3)]
    stepper.advance(both, [1, 2], X=X, want_ranked=True)
    stepper.advance(both, [3, 4], rows=np.tile(np.arange(B), (2, 1)))
    stepper.fetch()
