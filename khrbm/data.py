"""Datasets: MNIST, KMNIST and Fashion-MNIST from IDX files, and Földiák's bars generated from a seed.

Every dataset is returned binarized with the paper's global threshold (grey >= 127 -> 1) as read-only
uint8 arrays of shape (n, 784).

Where the IDX files are looked for, in order (the first directory holding all four files wins):

1. the ``data_dir`` argument of :func:`load_dataset`;
2. the environment variable ``KHRBM_DATA_DIR``;
3. the user cache, ``$XDG_CACHE_HOME/khrbm/<name>`` or ``~/.cache/khrbm/<name>`` (where :func:`fetch`
   puts its downloads);
4. for Fashion-MNIST only, Debian's package ``dataset-fashion-mnist`` (:data:`DEBIAN_FASHION_MNIST_DIR`).

In 1 and 2 the files may sit in a subfolder named after the dataset (``$KHRBM_DATA_DIR/mnist/...``,
tried first) or directly in the directory; direct files are not used for a dataset when the directory
itself is named after a different dataset (so ``KHRBM_DATA_DIR=.../mnist`` never serves KMNIST).
Each file may be gzip-compressed (``.gz``) or raw. Nothing is downloaded except by an explicit
:func:`fetch` (``khrbm data fetch NAME``).

A fifth source, ``"array"``, is data handed in from Python: :func:`array_dataset` wraps arrays in memory
(what the scikit-learn estimators train on); it has no files and cannot be loaded by name.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "kmnist", "fashion-mnist", "bars")
ARRAY = "array"                   # config's dataset for arrays passed in from Python (array_dataset)
IDX_DATASETS = ("mnist", "kmnist", "fashion-mnist")
DISPLAY_NAMES = {"mnist": "MNIST", "kmnist": "KMNIST", "fashion-mnist": "Fashion-MNIST", "bars": "bars"}
N_CLASSES = 10
IMAGE_SIDE = 28

BINARIZE_THRESHOLD = 127          # the paper's global threshold: grey >= 127 -> 1
CANONICAL_SIZES = (60000, 10000)  # (train, test) of all three IDX datasets

# Files of each IDX dataset: role -> file name without ".gz".
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # files of `dataset-fashion-mnist`
ENV_DATA_DIR = "KHRBM_DATA_DIR"

# validation="holdout": the last 1/6 of the permutation default_rng(HOLDOUT_SEED).permutation(n_train)
# is the validation set, the rest the training set (both kept in file order).
HOLDOUT_SEED = 20240
HOLDOUT_FRACTION = 6

# bars: load_dataset("bars") is make_bars(BARS_SIZES[0], BARS_SEED) / make_bars(BARS_SIZES[1], BARS_SEED + 1).
BARS_SIZES = (10000, 2000)
BARS_SEED = 1991                  # Földiák 1990/91
BARS_PER_IMAGE = 2.5              # default p_bar = BARS_PER_IMAGE / (2 * size): 2.5 bars on average

MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# SHA-256 of the official .gz files, from TensorFlow Datasets' download checksums
# (github.com/tensorflow/datasets, tensorflow_datasets/url_checksums/{mnist,kmnist,fashion_mnist}.txt).
# The MNIST values are listed there for the cvdf-datasets mirror; the ossci mirror serves the same files.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16
FETCH_DEADLINE = 600.0            # seconds a whole `fetch` may take (the four MNIST files are 11 MB)


class DataError(Exception):
    """A dataset is missing, unreadable or malformed. ``str(err)`` says what and how to fix it."""


@dataclass(frozen=True)
class Dataset:
    """A binarized dataset: x_* uint8 {0,1} (n, 784) read-only, y_* int64 (n,) (bars: all -1).
    An "array" dataset (:func:`array_dataset`) has any number of columns, and float values in [0, 1]
    where its data were not binary."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    notice: str          # "" or a remark for the user, e.g. that the training set is partial
    n_classes: int       # 10, or 0 for bars

    @property
    def n_pixels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_shape(self) -> tuple[int, int]:
        side = int(round(self.n_pixels ** 0.5))
        return (side, side)


# --------------------------------------------------------------------------------------------------
# IDX files

def _check_name(name: str, idx_only: bool = False) -> None:
    allowed = IDX_DATASETS if idx_only else DATASETS
    if name not in allowed:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(allowed)}")


def _read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped if it starts with the gzip magic."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip file ({err}); delete it and fetch it again") from None


def _parse_header(data: bytes, path) -> tuple[int, tuple[int, ...]]:
    """(magic, dims) of IDX ``data``; checks the magic number, dtype byte and dimension count."""
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(data)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(f"{path}: not an IDX file (magic number 0x{int.from_bytes(data[:4], 'big'):08x}, "
                        f"expected 0x{_IDX_IMAGES:08x} for images or 0x{_IDX_LABELS:08x} for labels)")
    if dtype != 0x08:
        raise DataError(f"{path}: IDX data type byte is 0x{dtype:02x}, expected 0x08 (unsigned byte)")
    if ndim not in (1, 3):
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected 3 (images) or 1 (labels)")
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    if ndim == 3 and dims[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    return (0x0800 | ndim), dims


def _check_payload(path, dims: tuple[int, ...], got: int) -> None:
    """DataError unless ``got`` data bytes are what IDX dimensions ``dims`` promise."""
    expected = int(np.prod(dims, dtype=np.int64))
    if got < expected:
        raise DataError(f"{path}: truncated: header promises {expected} data bytes, file has {got}")
    if got > expected:
        raise DataError(f"{path}: {got - expected} trailing bytes after the {expected} data bytes "
                        f"the header promises")


def read_idx(path, kind: str | None = None) -> np.ndarray:
    """The uint8 array stored in IDX file ``path`` (gzip or raw): images (n, 28, 28) or labels (n,).

    ``kind`` ("images" or "labels") additionally requires that type. Any defect raises :class:`DataError`
    naming the file: bad magic number or dtype byte, wrong dimension count or image size, a payload shorter
    or longer than the header says, or a corrupt gzip stream.
    """
    data = _read_bytes(Path(path))
    magic, dims = _parse_header(data, path)
    if kind is not None:
        want = {"images": _IDX_IMAGES, "labels": _IDX_LABELS}[kind]
        if magic != want:
            raise DataError(f"{path}: holds {'labels' if magic == _IDX_LABELS else 'images'}, expected {kind}")
    start = 4 + 4 * len(dims)
    _check_payload(path, dims, len(data) - start)
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims).copy()


@functools.lru_cache(maxsize=32)
def _verified_idx(path: Path, size: int, mtime_ns: int) -> tuple[int, tuple[int, ...]]:
    """(magic, dims) of IDX file ``path`` after reading all of it, a gzip stream to its end (so its CRC and
    length are checked): DataError unless the payload is exactly what the header declares. Streamed in
    chunks; remembered per (path, size, mtime) so that repeated status checks are free."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == _GZIP_MAGIC
        if not gzipped:
            with open(path, "rb") as f:
                head = f.read(16)
            magic, dims = _parse_header(head, path)
            _check_payload(path, dims, size - 4 - 4 * len(dims))
            return magic, dims
        with gzip.open(path, "rb") as f:
            head = f.read(16)
            magic, dims = _parse_header(head, path)
            got = len(head) - 4 - 4 * len(dims)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                got += len(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip file ({err}); delete it and fetch it again") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    _check_payload(path, dims, got)
    return magic, dims


def binarize(x) -> np.ndarray:
    """uint8 {0,1} array: 1 where grey level ``x >= 127`` (the paper's global threshold)."""
    return (np.asarray(x) >= BINARIZE_THRESHOLD).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# locating files

def cache_dir(name: str) -> Path:
    """The user cache directory of dataset ``name``: $XDG_CACHE_HOME/khrbm/<name> or ~/.cache/khrbm/<name>."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "khrbm" / name


def _find_file(directory: Path, base: str) -> Path | None:
    for candidate in (directory / (base + ".gz"), directory / base):
        if candidate.is_file():
            return candidate
    return None


def _candidate_dirs(name: str, data_dir) -> list[Path]:
    """Directories to search for dataset ``name``, in order."""
    out: list[Path] = []
    roots = [Path(data_dir)] if data_dir is not None else []
    env = os.environ.get(ENV_DATA_DIR, "")
    if env:
        roots.append(Path(env))
    for root in roots:
        root = root.expanduser().absolute()
        out.append(root / name)
        if name == "fashion-mnist":
            out.append(root / "fashion_mnist")
        if root.name not in DATASETS or root.name == name:
            out.append(root)
    out.append(cache_dir(name))
    if name == "fashion-mnist":
        out.append(Path(DEBIAN_FASHION_MNIST_DIR))
    return out


def locate(name: str, data_dir=None) -> tuple[Path, dict[str, Path]]:
    """(directory, role -> file) of the first directory holding all four IDX files of ``name``;
    DataError saying how to get the data when there is none."""
    searched, incomplete = [], []
    for directory in _candidate_dirs(name, data_dir):
        searched.append(str(directory))
        found = {role: _find_file(directory, base) for role, base in FILES.items()}
        if all(found.values()):
            return directory, found  # type: ignore[return-value]
        if any(found.values()):
            missing = [FILES[r] + "[.gz]" for r, p in found.items() if p is None]
            incomplete.append(f"{directory} lacks {', '.join(missing)}")
    raise DataError(_missing_message(name, searched, incomplete))


def _missing_message(name: str, searched: list[str], incomplete: list[str]) -> str:
    shown = DISPLAY_NAMES[name]
    msg = f"{shown} not found — run `khrbm data fetch {name}` or set {ENV_DATA_DIR} to a folder with its IDX files"
    if name == "fashion-mnist":
        msg += " (or `apt-get install dataset-fashion-mnist`)"
    if incomplete:
        msg += "; incomplete: " + "; ".join(incomplete)
    return msg + "; searched: " + ", ".join(dict.fromkeys(searched))


# --------------------------------------------------------------------------------------------------
# loading

def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, kind="images")
    y = read_idx(labels, kind="labels")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels")
    if y.size and int(y.max()) >= N_CLASSES:
        raise DataError(f"{labels}: label {int(y.max())} out of range 0..{N_CLASSES - 1}")
    return binarize(x.reshape(x.shape[0], -1)), y.astype(np.int64)


def _size_notice(name: str, n_train: int, n_test: int) -> str:
    shown = DISPLAY_NAMES[name]
    notes = []
    for what, n, full in (("training", n_train, CANONICAL_SIZES[0]), ("test", n_test, CANONICAL_SIZES[1])):
        if n < full:
            notes.append(f"partial {shown}: {n} {what} images (the full set has {full})")
        elif n > full:
            notes.append(f"{shown}: {n} {what} images (the official set has {full})")
    return "; ".join(notes)


def holdout_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx) of the deterministic holdout: the last n//6 of a HOLDOUT_SEED permutation."""
    perm = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    n_val = n // HOLDOUT_FRACTION
    return np.sort(perm[:n - n_val]), np.sort(perm[n - n_val:])


def _make_dataset(name, x_tr, y_tr, x_te, y_te, notice, n_classes, validation) -> Dataset:
    if validation == "holdout":
        tr, va = holdout_split(x_tr.shape[0])
        x_tr, y_tr, x_te, y_te = x_tr[tr], y_tr[tr], x_tr[va], y_tr[va]
    return Dataset(name, _readonly(x_tr), _readonly(y_tr), _readonly(x_te), _readonly(y_te), notice, n_classes)


@functools.lru_cache(maxsize=6)
def _load_cached(name: str, files: tuple, validation: str) -> Dataset:
    if name == "bars":
        x_tr = make_bars(BARS_SIZES[0], BARS_SEED)
        x_te = make_bars(BARS_SIZES[1], BARS_SEED + 1)
        return _make_dataset(name, x_tr, np.full(len(x_tr), -1, np.int64), x_te,
                             np.full(len(x_te), -1, np.int64), "", 0, validation)
    paths = {role: Path(p) for role, p, _size, _mtime in files}
    x_tr, y_tr = _read_pair(paths["train_images"], paths["train_labels"])
    x_te, y_te = _read_pair(paths["test_images"], paths["test_labels"])
    notice = _size_notice(name, len(x_tr), len(x_te))
    return _make_dataset(name, x_tr, y_tr, x_te, y_te, notice, N_CLASSES, validation)


def clear_cache() -> None:
    """Forget every dataset loaded and every file verified so far."""
    _load_cached.cache_clear()
    _verified_idx.cache_clear()


def load_dataset(name: str, data_dir=None, validation: str = "test") -> Dataset:
    """Dataset ``name`` binarized; validation "test" (the official test set, as in the paper) or "holdout"
    (the last 1/6 of a fixed permutation of the training set, see :func:`holdout_split`).

    Results are cached in memory per (name, files found, validation); the arrays are read-only.
    Raises :class:`DataError` if the files are missing or malformed.
    """
    if name == ARRAY:
        raise DataError("the 'array' dataset is made of arrays passed in from Python and cannot be loaded by "
                        "name: build it with khrbm.data.array_dataset(X, y) and hand it over, e.g. "
                        "Run(config, dataset)")
    _check_name(name)
    if validation not in ("test", "holdout"):
        raise DataError(f"validation must be 'test' or 'holdout', not {validation!r}")
    if name == "bars":
        return _load_cached(name, (), validation)
    _directory, found = locate(name, data_dir)
    key = []
    for role in FILES:
        st = found[role].stat()
        key.append((role, str(found[role]), st.st_size, st.st_mtime_ns))
    return _load_cached(name, tuple(key), validation)


def dataset_status(name: str, data_dir=None) -> tuple[bool, str]:
    """(available, one-line message) for dataset ``name``. Every file is read whole (gzip CRC and length,
    IDX payload size against its header; about a second for MNIST the first time, then remembered)."""
    _check_name(name)
    if name == "bars":
        return True, (f"bars: generated from seed {BARS_SEED}, {BARS_SIZES[0]} train / {BARS_SIZES[1]} "
                      f"validation images")
    shown = DISPLAY_NAMES[name]
    try:
        directory, found = locate(name, data_dir)
        counts = {}
        for role, path in found.items():
            st = path.stat()
            magic, dims = _verified_idx(path, st.st_size, st.st_mtime_ns)
            want = _IDX_IMAGES if role.endswith("images") else _IDX_LABELS
            if magic != want:
                raise DataError(f"{path}: does not hold {role.split('_')[1]}")
            counts[role] = dims[0]
        for split in ("train", "test"):
            if counts[f"{split}_images"] != counts[f"{split}_labels"]:
                raise DataError(f"{split} images and labels of {shown} in {directory} differ in number "
                                f"({counts[f'{split}_images']} vs {counts[f'{split}_labels']})")
    except DataError as err:
        return False, str(err)
    parts = []
    for split, full in (("train", CANONICAL_SIZES[0]), ("test", CANONICAL_SIZES[1])):
        n = counts[f"{split}_images"]
        parts.append(f"{n} {split}" + (" (partial)" if n < full else ""))
    return True, f"{shown}: {' / '.join(parts)} from {directory}"


# --------------------------------------------------------------------------------------------------
# arrays from Python

def _visible_rows(X, what: str) -> np.ndarray:
    """A copy of ``X`` (any array, or a sparse matrix: anything with ``toarray()``) as samples × units:
    uint8 when every value is 0 or 1, else float (float32 stays float32)."""
    x = np.asarray(X.toarray() if hasattr(X, "toarray") else X)
    if x.ndim != 2 or 0 in x.shape:
        raise DataError(f"{what} must be a non-empty 2-D array (samples × features), got shape {x.shape}")
    if x.dtype.kind not in "buif":
        raise DataError(f"{what} must hold numbers, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{what} contains NaN or inf")
    if ((x == 0) | (x == 1)).all():
        return x.astype(np.uint8)
    return x.astype(np.float32 if x.dtype == np.float32 else np.float64)


def _class_codes(y, n: int, what: str) -> np.ndarray:
    """``y`` as int64 class codes 0..C-1, one per row (DataError naming ``what`` otherwise)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{what} must hold one label per row, shape ({n},), got {y.shape}")
    if y.dtype.kind not in "iu" or (n and int(y.min()) < 0):
        raise DataError(f"{what} must be integer class codes 0..C-1 (map other labels first, e.g. with "
                        f"np.unique(y, return_inverse=True)), got dtype {y.dtype}")
    return y.astype(np.int64)


def array_dataset(X, y=None, X_val=None, y_val=None) -> Dataset:
    """The dataset ``"array"`` made of arrays in memory, so that a Run or Trainer trains on user data:
    ``Run(RunConfig(dataset="array", ...), array_dataset(X, y))``.

    Rows of ``X`` are visible vectors (numpy arrays, or scipy sparse matrices, which are densified):
    binary, or values in [0, 1] read as probabilities. Binary data are kept as uint8, other data as float.
    ``y`` (optional) are integer class codes 0..C-1 with C = the largest code + 1 (needed for
    ``task="classification"``); without ``y`` there are no classes, as for bars. Without ``X_val`` the
    validation split is the training set itself (the same arrays). Values outside [0, 1] are kept (the
    energy is defined for any real v) but named in ``notice``. Everything else malformed: DataError.
    """
    x_tr = _readonly(_visible_rows(X, "X"))
    y_tr = _readonly(np.full(len(x_tr), -1, np.int64) if y is None else _class_codes(y, len(x_tr), "y"))
    if X_val is None:
        if y_val is not None:
            raise DataError("y_val was given without X_val")
        x_va, y_va = x_tr, y_tr
    else:
        x_va = _readonly(_visible_rows(X_val, "X_val"))
        if x_va.shape[1] != x_tr.shape[1]:
            raise DataError(f"X_val has {x_va.shape[1]} columns, X has {x_tr.shape[1]}")
        if (y is None) != (y_val is None):
            raise DataError("give y_val with X_val exactly when y is given")
        y_va = _readonly(np.full(len(x_va), -1, np.int64) if y_val is None
                         else _class_codes(y_val, len(x_va), "y_val"))
    n_classes = 0 if y is None else int(max(y_tr.max(), y_va.max())) + 1
    lo, hi = min(x_tr.min(), x_va.min()), max(x_tr.max(), x_va.max())
    notice = "" if 0 <= lo and hi <= 1 else (
        f"values outside [0, 1] (from {lo:g} to {hi:g}); the units are binary: scale the data into [0, 1] "
        f"(e.g. grey levels / 255)")
    return Dataset(ARRAY, x_tr, y_tr, x_va, y_va, notice, n_classes)


# --------------------------------------------------------------------------------------------------
# bars

def make_bars(n: int, seed: int, size: int = 28, p_bar: float | None = None) -> np.ndarray:
    """Földiák's bars: uint8 (n, size*size); each of the ``size`` horizontal and ``size`` vertical bars is
    on independently with probability ``p_bar`` (default BARS_PER_IMAGE / (2*size), i.e. 2.5 bars per
    image on average), a pixel is on iff a bar through it is on.
    """
    if p_bar is None:
        p_bar = BARS_PER_IMAGE / (2 * size)
    if not 0.0 <= p_bar <= 1.0:
        raise ValueError(f"p_bar must be in [0, 1], not {p_bar}")
    on = np.random.default_rng(seed).random((n, 2, size)) < p_bar
    rows, cols = on[:, 0, :], on[:, 1, :]
    images = rows[:, :, None] | cols[:, None, :]
    return np.ascontiguousarray(images.reshape(n, size * size).astype(np.uint8))


# --------------------------------------------------------------------------------------------------
# download

def _download(url: str, target_dir: Path, filename: str, sha256: str | None, timeout: float,
              progress: bool, deadline: float) -> Path:
    """Download ``url`` to ``target_dir/filename`` via a temp file; verified, then renamed atomically. The
    temp file is removed on any error or exception (a signal handler's included); DataError once
    ``time.monotonic()`` passes ``deadline``."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "khrbm"})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        timeout = min(timeout, max(deadline - time.monotonic(), 0.01))
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=filename, file=sys.stderr,
                      disable=not progress, leave=False) as bar:
                while True:
                    if time.monotonic() > deadline:
                        raise DataError(f"still downloading at the fetch deadline (got {received} of "
                                        f"{total if total is not None else '?'} bytes)")
                    try:
                        chunk = response.read1(_CHUNK)     # what has arrived: a slow server cannot hold it
                    except http.client.IncompleteRead as err:
                        received += len(err.partial)
                        raise DataError(f"truncated download: got {received} of {total} bytes") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DataError(f"truncated download: got {received} of {total} bytes")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DataError(f"SHA-256 mismatch: expected {sha256}, got {digest.hexdigest()}")
        try:
            read_idx(tmp)  # structure check (the only check for files without a known hash)
        except DataError as err:
            raise DataError(str(err).replace(str(tmp), "downloaded file")) from None
        final = target_dir / filename
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, dest=None, mirrors=None, progress: bool = True, timeout: float = 30,
          checksums: dict | None = None, deadline: float = FETCH_DEADLINE) -> Path:
    """Download the four IDX .gz files of ``name`` into ``dest`` (default :func:`cache_dir`) and return it.

    Mirrors (base URLs, default :data:`MIRRORS`) are tried in order per file. Each file is written to a
    temp file and renamed into place only after its SHA-256 (``checksums``: file name -> hex digest,
    default :data:`SHA256`; a missing entry skips the hash) and IDX structure check out; a failed,
    truncated or mismatched download leaves no file behind. Files already present and valid are kept.
    ``timeout``: seconds one network operation may wait; ``deadline``: seconds the whole fetch may take
    (DataError after that, keeping the files completed so far).
    """
    _check_name(name)
    if name == "bars":
        raise DataError("bars is generated from a seed; there is nothing to fetch")
    target = Path(dest) if dest is not None else cache_dir(name)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {target}: {err.strerror or err}") from None
    bases = tuple(mirrors) if mirrors is not None else MIRRORS[name]
    hashes = SHA256[name] if checksums is None else dict(checksums)
    end = time.monotonic() + deadline
    for base in FILES.values():
        filename = base + ".gz"
        want = hashes.get(filename)
        existing = target / filename
        if existing.is_file():
            if want is not None and _sha256_of(existing) == want:
                continue
            if want is None:
                try:
                    read_idx(existing)
                    continue
                except DataError:
                    pass
        failures = []
        for mirror in bases:
            url = mirror.rstrip("/") + "/" + filename
            if time.monotonic() > end:
                failures.append(f"{url}: not tried, the fetch deadline of {deadline:g} s has passed")
                continue
            try:
                _download(url, target, filename, want, timeout, progress, end)
                break
            except urllib.error.HTTPError as err:
                failures.append(f"{url}: HTTP {err.code} {err.reason}")
            except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
                reason = getattr(err, "reason", None) or err
                failures.append(f"{url}: {reason}")
            except DataError as err:
                failures.append(f"{url}: {err}")
        else:
            raise DataError(f"could not fetch {DISPLAY_NAMES[name]} file {filename}: " + "; ".join(failures)
                            + f". Alternatively download it by hand into {target} or set {ENV_DATA_DIR}")
    return target
