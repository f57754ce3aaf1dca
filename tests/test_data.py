"""Tests of khrbm.data: IDX parsing, locating and loading datasets, bars, holdout, fetch (loopback HTTP)."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from khrbm import data
from khrbm.data import DataError



# ---------------------------------------------------------------------------------------------- helpers

def idx_bytes(arr: np.ndarray, dtype_byte: int = 0x08) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, dtype_byte, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> Path:
    raw = idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def fake_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def fake_labels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)


def write_dataset(directory: Path, n_train: int = 30, n_test: int = 12, compress: bool = True,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four IDX files of a small fake dataset into ``directory``; returns the arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": fake_images(n_train, seed), "train_labels": fake_labels(n_train, seed + 1),
        "test_images": fake_images(n_test, seed + 2), "test_labels": fake_labels(n_test, seed + 3),
    }
    suffix = ".gz" if compress else ""
    for role, base in data.FILES.items():
        write_idx(directory / (base + suffix), arrays[role], compress)
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Every data source points at an empty temp dir; returns that root."""
    home, cache, debian = tmp_path / "home", tmp_path / "xdg", tmp_path / "debian"
    for d in (home, cache, debian):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("KHRBM_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian)
    data.clear_cache()
    yield tmp_path
    data.clear_cache()


# ---------------------------------------------------------------------------------------------- read_idx

@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    images, labels = fake_images(7, 1), fake_labels(7, 2)
    got_x = data.read_idx(write_idx(tmp_path / "x", images, compress))
    got_y = data.read_idx(write_idx(tmp_path / "y", labels, compress))
    assert got_x.dtype == np.uint8 and got_x.shape == (7, 28, 28)
    np.testing.assert_array_equal(got_x, images)
    np.testing.assert_array_equal(got_y, labels)
    assert got_x.flags.writeable  # read_idx returns a private copy


def test_read_idx_wrong_magic(tmp_path):
    raw = bytearray(idx_bytes(fake_labels(5, 0)))
    raw[0:2] = b"\x12\x34"
    (tmp_path / "bad").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"bad: not an IDX file \(magic number 0x12340801"):
        data.read_idx(tmp_path / "bad")


def test_read_idx_wrong_dtype_byte(tmp_path):
    (tmp_path / "f").write_bytes(idx_bytes(fake_labels(5, 0), dtype_byte=0x0D))
    with pytest.raises(DataError, match=r"f: IDX data type byte is 0x0d, expected 0x08"):
        data.read_idx(tmp_path / "f")


def test_read_idx_wrong_dimension_count_and_size(tmp_path):
    (tmp_path / "two_d").write_bytes(idx_bytes(np.zeros((3, 784), np.uint8)))
    with pytest.raises(DataError, match="2 dimensions, expected 3"):
        data.read_idx(tmp_path / "two_d")
    (tmp_path / "small").write_bytes(idx_bytes(np.zeros((3, 14, 14), np.uint8)))
    with pytest.raises(DataError, match="images are 14x14, expected 28x28"):
        data.read_idx(tmp_path / "small")


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_truncated_payload(tmp_path, compress):
    raw = idx_bytes(fake_images(4, 0))[:-100]
    path = tmp_path / "trunc"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(DataError, match=r"trunc: truncated: header promises 3136 data bytes, file has 3036"):
        data.read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    (tmp_path / "long").write_bytes(idx_bytes(fake_labels(5, 0)) + b"\0\0\0")
    with pytest.raises(DataError, match="long: 3 trailing bytes after the 5 data bytes"):
        data.read_idx(tmp_path / "long")


def test_read_idx_corrupt_gzip(tmp_path):
    gz = gzip.compress(idx_bytes(fake_images(20, 0)))
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match=r"cut\.gz: corrupt or truncated gzip"):
        data.read_idx(tmp_path / "cut.gz")
    garbled = bytearray(gz)
    garbled[20:60] = bytes(40)
    (tmp_path / "garbled.gz").write_bytes(bytes(garbled))
    with pytest.raises(DataError, match=r"garbled\.gz: corrupt or truncated gzip"):
        data.read_idx(tmp_path / "garbled.gz")


def test_read_idx_kind(tmp_path):
    path = write_idx(tmp_path / "labels.gz", fake_labels(3, 0))
    with pytest.raises(DataError, match="holds labels, expected images"):
        data.read_idx(path, kind="images")


def test_image_label_count_mismatch(isolated):
    folder = isolated / "d"
    write_dataset(folder, n_train=10)
    write_idx(folder / "train-labels-idx1-ubyte.gz", fake_labels(9, 0))
    with pytest.raises(DataError, match="holds 10 images but .*train-labels-idx1-ubyte.gz holds 9 labels"):
        data.load_dataset("mnist", data_dir=folder)
    ok, msg = data.dataset_status("mnist", data_dir=folder)
    assert not ok and "differ in number (10 vs 9)" in msg


def test_label_out_of_range(isolated):
    folder = isolated / "d"
    write_dataset(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 out of range 0..9"):
        data.load_dataset("mnist", data_dir=folder)


def test_status_reads_whole_files_and_reports_truncation_and_bad_crc(isolated):
    folder = isolated / "d"
    write_dataset(folder)
    expected = f"MNIST: 30 train (partial) / 12 test (partial) from {folder}"
    assert data.dataset_status("mnist", data_dir=folder) == (True, expected)
    images = folder / "train-images-idx3-ubyte.gz"
    whole = images.read_bytes()
    images.write_bytes(whole[:-100])                      # cut: the header still reads fine
    data.clear_cache()
    ok, msg = data.dataset_status("mnist", data_dir=folder)
    assert not ok and msg.startswith(f"{images}: corrupt or truncated gzip file")
    crc = bytearray(whole)
    crc[-8] ^= 0xFF                                        # the gzip trailer's CRC-32 no longer matches
    images.write_bytes(bytes(crc))
    data.clear_cache()
    ok, msg = data.dataset_status("mnist", data_dir=folder)
    assert not ok and "CRC check failed" in msg and str(images) in msg
    # a gzip stream that is whole but holds fewer images than its IDX header declares
    raw = gzip.decompress(whole)
    images.write_bytes(gzip.compress(raw[:-784]))
    data.clear_cache()
    ok, msg = data.dataset_status("mnist", data_dir=folder)
    assert not ok and msg == f"{images}: truncated: header promises {30 * 784} data bytes, file has {29 * 784}"


def test_status_of_raw_files_checks_their_size(isolated):
    folder = isolated / "raw"
    write_dataset(folder, compress=False)
    assert data.dataset_status("mnist", data_dir=folder)[0]
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes() + b"\0\0")
    data.clear_cache()
    ok, msg = data.dataset_status("mnist", data_dir=folder)
    assert not ok and msg == f"{labels}: 2 trailing bytes after the 12 data bytes the header promises"


# ---------------------------------------------------------------------------------------------- binarize

def test_binarize_threshold():
    x = np.array([0, 1, 126, 127, 128, 255], dtype=np.uint8)
    got = data.binarize(x)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 1])


# ---------------------------------------------------------------------------------------------- real MNIST

def test_real_mnist_from_shared_data(isolated, monkeypatch, mnist_dir):
    monkeypatch.setenv("KHRBM_DATA_DIR", str(mnist_dir))
    ds = data.load_dataset("mnist")
    n = ds.x_train.shape[0]                  # the full 60,000, or a subset a user holds
    assert ds.name == "mnist" and ds.n_classes == 10
    assert 1000 <= n <= 60000 and ds.x_val.shape == (10000, 784) and ds.x_train.shape == (n, 784)
    assert ds.n_pixels == 784 and ds.image_shape == (28, 28)
    for x in (ds.x_train, ds.x_val):
        assert x.dtype == np.uint8 and x.flags.c_contiguous and not x.flags.writeable
        assert set(np.unique(x)) == {0, 1}
        assert 0.11 < x.mean() < 0.15
    for y, size in ((ds.y_train, n), (ds.y_val, 10000)):
        assert y.dtype == np.int64 and y.shape == (size,) and not y.flags.writeable
        assert set(np.unique(y)) == set(range(10))
        assert np.bincount(y).min() > 0.08 * size             # every digit well represented
    if n < 60000:
        assert ds.notice == f"partial MNIST: {n} training images (the full set has 60000)"
    else:
        assert ds.notice == ""
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 1
    assert data.load_dataset("mnist") is ds  # cached
    ok, msg = data.dataset_status("mnist")
    assert ok and msg.startswith(f"MNIST: {n} train{' (partial)' if n < 60000 else ''} / 10000 test from ")
    assert str(mnist_dir) in msg


def test_real_mnist_holdout(isolated, monkeypatch, mnist_dir):
    monkeypatch.setenv("KHRBM_DATA_DIR", str(mnist_dir))
    full = data.load_dataset("mnist")
    ho = data.load_dataset("mnist", validation="holdout")
    n = full.x_train.shape[0]
    assert ho.x_train.shape == (n - n // 6, 784) and ho.x_val.shape == (n // 6, 784)
    assert ho.x_train.flags.c_contiguous and not ho.x_val.flags.writeable
    tr, va = data.holdout_split(n)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == n
    np.testing.assert_array_equal(ho.x_val, full.x_train[va])
    np.testing.assert_array_equal(ho.y_train, full.y_train[tr])


# ---------------------------------------------------------------------------------------------- locating

@pytest.mark.parametrize("name", ["mnist", "kmnist", "fashion-mnist"])
def test_missing_data_names_fetch_command(isolated, name):
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        data.load_dataset(name, data_dir=empty)
    msg = str(info.value)
    assert f"`khrbm data fetch {name}`" in msg and "KHRBM_DATA_DIR" in msg
    ok, status = data.dataset_status(name, data_dir=empty)
    assert not ok and f"khrbm data fetch {name}" in status


def test_incomplete_folder_is_reported(isolated):
    folder = isolated / "d"
    write_dataset(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"khrbm data fetch mnist.*lacks t10k-labels-idx1-ubyte\[\.gz\]"):
        data.load_dataset("mnist", data_dir=folder)


def test_env_subfolder_raw_files(isolated, monkeypatch):
    arrays = write_dataset(isolated / "env" / "kmnist", compress=False)
    monkeypatch.setenv("KHRBM_DATA_DIR", str(isolated / "env"))
    ds = data.load_dataset("kmnist")
    np.testing.assert_array_equal(ds.x_train, data.binarize(arrays["train_images"]).reshape(30, 784))
    np.testing.assert_array_equal(ds.y_val, arrays["test_labels"])
    assert "partial KMNIST: 30 training images" in ds.notice and "12 test images" in ds.notice


def test_data_dir_precedes_env_and_dataset_named_dir_serves_only_itself(isolated, monkeypatch):
    a = write_dataset(isolated / "arg", n_train=6, seed=10)
    write_dataset(isolated / "mnist", n_train=8, seed=20)
    monkeypatch.setenv("KHRBM_DATA_DIR", str(isolated / "mnist"))
    assert data.load_dataset("mnist", data_dir=isolated / "arg").x_train.shape[0] == 6
    np.testing.assert_array_equal(data.load_dataset("mnist", data_dir=isolated / "arg").y_train,
                                  a["train_labels"])
    assert data.load_dataset("mnist").x_train.shape[0] == 8  # files directly in $KHRBM_DATA_DIR
    with pytest.raises(DataError, match="khrbm data fetch kmnist"):
        data.load_dataset("kmnist")  # a folder named "mnist" never serves KMNIST


def test_user_cache_and_debian_fashion(isolated):
    write_dataset(isolated / "xdg" / "khrbm" / "mnist", n_train=5)
    assert data.load_dataset("mnist").x_train.shape == (5, 784)
    write_dataset(isolated / "debian", n_train=9)
    ds = data.load_dataset("fashion-mnist")
    assert ds.x_train.shape == (9, 784) and ds.n_classes == 10
    ok, msg = data.dataset_status("fashion-mnist")
    assert ok and str(isolated / "debian") in msg
    with pytest.raises(DataError, match="khrbm data fetch kmnist"):
        data.load_dataset("kmnist")  # the Debian folder is for Fashion-MNIST only


def test_cache_sees_replaced_files(isolated):
    folder = isolated / "d"
    write_dataset(folder, n_train=5)
    assert data.load_dataset("mnist", data_dir=folder).x_train.shape[0] == 5
    write_dataset(folder, n_train=7)
    assert data.load_dataset("mnist", data_dir=folder).x_train.shape[0] == 7


def test_unknown_dataset_and_validation():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar")
    with pytest.raises(DataError, match="validation must be"):
        data.load_dataset("bars", validation="train")


# ---------------------------------------------------------------------------------------------- holdout

def test_holdout_split_deterministic_and_disjoint():
    tr, va = data.holdout_split(600)
    tr2, va2 = data.holdout_split(600)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(va) == 100 and len(tr) == 500
    assert not set(tr) & set(va) and set(tr) | set(va) == set(range(600))
    assert not np.array_equal(va, np.arange(500, 600))  # a permutation, not the tail of the file


def test_holdout_dataset_disjoint(isolated):
    folder = isolated / "d"
    arrays = write_dataset(folder, n_train=60)
    ds = data.load_dataset("mnist", data_dir=folder, validation="holdout")
    assert ds.x_train.shape == (50, 784) and ds.x_val.shape == (10, 784)
    flat = data.binarize(arrays["train_images"].reshape(60, -1))
    rows = {r.tobytes(): i for i, r in enumerate(flat)}
    tr = {rows[r.tobytes()] for r in ds.x_train}
    va = {rows[r.tobytes()] for r in ds.x_val}
    assert len(tr) == 50 and len(va) == 10 and not tr & va


# ---------------------------------------------------------------------------------------------- bars

def _is_or_of_bars(img: np.ndarray, size: int) -> bool:
    img = img.reshape(size, size).astype(bool)
    rows, cols = img.all(axis=1), img.all(axis=0)
    return np.array_equal(img, rows[:, None] | cols[None, :])


def test_bars_deterministic_and_structured():
    a, b, c = data.make_bars(200, 3), data.make_bars(200, 3), data.make_bars(200, 4)
    assert a.dtype == np.uint8 and a.shape == (200, 784) and a.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) <= {0, 1}
    assert all(_is_or_of_bars(img, 28) for img in a)
    small = data.make_bars(50, 0, size=6, p_bar=0.3)
    assert small.shape == (50, 36) and all(_is_or_of_bars(img, 6) for img in small)


def test_bars_default_rate():
    x = data.make_bars(4000, 1).reshape(-1, 28, 28).astype(bool)
    bars = x.all(axis=2).sum(axis=1) + x.all(axis=1).sum(axis=1)
    assert 2.3 < bars.mean() < 2.7


def test_bars_dataset(isolated):
    ds = data.load_dataset("bars")
    assert ds.x_train.shape == (10000, 784) and ds.x_val.shape == (2000, 784)
    assert ds.n_classes == 0 and (ds.y_train == -1).all() and (ds.y_val == -1).all()
    assert ds.y_train.dtype == np.int64 and not ds.x_train.flags.writeable
    np.testing.assert_array_equal(ds.x_train, data.make_bars(10000, data.BARS_SEED))
    assert data.dataset_status("bars")[0]


# ---------------------------------------------------------------------------------------------- fetch

class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802
        _, mode, name = self.path.split("/", 2)
        body = self.files.get(name)
        if mode == "missing" or body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "slow":      # 100 bytes every 0.1 s, for at most 30 s or until the client goes away
            for start in range(0, min(len(body), 30_000), 100):
                try:
                    self.wfile.write(body[start:start + 100])
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        # "short": announce the full length but send only half of it, then close
        self.wfile.write(body[: len(body) // 2] if mode == "short" else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server with small IDX .gz files; yields (base_url, files, sha256 of each)."""
    arrays = {"train-images-idx3-ubyte": fake_images(20, 1), "train-labels-idx1-ubyte": fake_labels(20, 2),
              "t10k-images-idx3-ubyte": fake_images(8, 3), "t10k-labels-idx1-ubyte": fake_labels(8, 4)}
    files = {base + ".gz": gzip.compress(idx_bytes(a)) for base, a in arrays.items()}
    handler = type("Handler", (_Handler,), {"files": files})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    sums = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files, sums
    httpd.shutdown()
    httpd.server_close()


def test_fetch_success_then_load(isolated, server):
    url, files, sums = server
    dest = data.fetch("mnist", mirrors=[url + "/ok/"], checksums=sums, progress=True, timeout=5)
    assert dest == isolated / "xdg" / "khrbm" / "mnist"
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    for name, body in files.items():
        assert (dest / name).read_bytes() == body
    ds = data.load_dataset("mnist")  # found in the user cache
    assert ds.x_train.shape == (20, 784) and ds.x_val.shape == (8, 784)
    # already present and verified: no download needed (this mirror would fail)
    assert data.fetch("mnist", mirrors=[url + "/missing/"], checksums=sums, progress=False) == dest


def test_fetch_checksum_mismatch_leaves_nothing(isolated, server):
    url, files, sums = server
    wrong = dict(sums, **{"train-images-idx3-ubyte.gz": "0" * 64})
    dest = isolated / "dl"
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*SHA-256 mismatch: expected 0000"):
        data.fetch("kmnist", dest=dest, mirrors=[url + "/ok"], checksums=wrong, progress=False)
    assert list(dest.iterdir()) == []  # no file, no temp file


def test_fetch_official_checksums_reject_other_files(isolated, server):
    url, _, _ = server
    with pytest.raises(DataError, match="SHA-256 mismatch: expected 440fcabf"):
        data.fetch("mnist", dest=isolated / "dl", mirrors=[url + "/ok"], progress=False)
    assert list((isolated / "dl").iterdir()) == []


def test_fetch_short_body_leaves_nothing(isolated, server):
    url, files, sums = server
    dest = isolated / "dl"
    with pytest.raises(DataError, match=r"/short/train-images-idx3-ubyte\.gz: truncated download"):
        data.fetch("mnist", dest=dest, mirrors=[url + "/short"], checksums=sums, progress=False, timeout=5)
    assert list(dest.iterdir()) == []


def test_fetch_truncated_gzip_without_hash_leaves_nothing(isolated, server):
    url, files, sums = server
    name = "train-labels-idx1-ubyte.gz"
    files[name] = files[name][:-10]  # server sends a complete response of a truncated gzip
    no_hash = {k: v for k, v in sums.items() if k != name}
    dest = isolated / "dl"
    with pytest.raises(DataError, match="downloaded file: corrupt or truncated gzip"):
        data.fetch("fashion-mnist", dest=dest, mirrors=[url + "/ok"], checksums=no_hash, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["train-images-idx3-ubyte.gz"]  # the file before it


def test_fetch_falls_back_to_second_mirror(isolated, server):
    url, files, sums = server
    dest = data.fetch("mnist", dest=isolated / "dl", mirrors=[url + "/missing/", url + "/ok/"],
                      checksums=sums, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)


def test_fetch_all_mirrors_fail_message(isolated, server):
    url, _, sums = server
    with pytest.raises(DataError) as info:
        data.fetch("mnist", dest=isolated / "dl", mirrors=[url + "/missing/", url + "/short/"],
                   checksums=sums, progress=False)
    msg = str(info.value)
    assert "HTTP 404" in msg and "truncated download" in msg and "KHRBM_DATA_DIR" in msg


def test_fetch_bars_refused():
    with pytest.raises(DataError, match="nothing to fetch"):
        data.fetch("bars")


def test_fetch_gives_up_at_its_deadline_and_leaves_nothing(isolated, server):
    url, _, sums = server
    dest = isolated / "dl"
    t0 = time.monotonic()
    with pytest.raises(DataError, match=r"slow/train-images-idx3-ubyte\.gz: still downloading at the fetch deadline"):
        data.fetch("mnist", dest=dest, mirrors=[url + "/slow/"], checksums=sums, progress=False, deadline=1.0)
    assert time.monotonic() - t0 < 10                      # the server would trickle for 30 s
    assert list(dest.iterdir()) == []


def test_sigterm_during_fetch_leaves_no_partial_file(isolated, server):
    url, _, _ = server
    dest = isolated / "dl"
    proc = subprocess.Popen([sys.executable, "-m", "khrbm", "data", "fetch", "mnist", "--dest", str(dest),
                             "--mirror", url + "/slow/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(dest.glob(".*.part")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(dest.glob(".*.part")), "the download never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1] == "khrbm: error: fetch of mnist terminated (SIGTERM); no partial file left"
    assert "Traceback" not in err and list(dest.iterdir()) == []


def test_status_of_a_broken_file_on_the_command_line_and_a_closed_pipe(isolated):
    folder = isolated / "d"
    write_dataset(folder)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-50])
    env = {**os.environ, "KHRBM_DATA_DIR": str(folder)}
    proc = subprocess.run([sys.executable, "-m", "khrbm", "data", "status"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines()[0] == f"--  {images}: corrupt or truncated gzip file (Compressed file ended " \
                                          f"before the end-of-stream marker was reached); delete it and fetch it again"
    read_end, write_end = os.pipe()
    os.close(read_end)                                     # `khrbm data status | head` after head has exited
    try:
        closed = subprocess.run([sys.executable, "-m", "khrbm", "data", "status"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert closed.returncode == 128 + signal.SIGPIPE and closed.stderr == ""
