"""Hostile input, generated (hypothesis) and hand-made: every config field, CLI flag and config file; every
kind of broken checkpoint file (random bytes, truncations, flipped bytes, arrays of the wrong dtype or shape,
pickles, .npy headers declaring huge shapes, zip bombs). Each gives a valid result or one line of
ConfigError / CheckpointError: never another exception, never unbounded memory.

``max_examples`` is set on every property (1,900 cases in all, derandomized so CI runs the same ones).
"""
import io
import json
import pathlib
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from khrbm.cli import build_parser
from khrbm.cli.common import config_from_args
from khrbm.config import FIELD, FIELDS, MAX_CONFIG_BYTES, ConfigError, RunConfig, check_value
from khrbm.train.checkpoint import (COMPETITION_KEYS, MAX_MEMBERS, RUN_KEYS, CheckpointError, load_npz,
                                    read_checkpoint, read_trainer_checkpoint)
from khrbm.train.run import Run

MiB = 1 << 20


def cases(n: int):
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def assert_one_line(err: Exception, limit: int = 1000) -> None:
    text = str(err)
    assert "\n" not in text and 0 < len(text) < limit, text


# ================================================================================================ configs

NAMES = [f.name for f in FIELDS]
huge_ints = st.sampled_from([2**63, -2**63 - 1, 2**64, 10**400, -(10**400), 10**4000])
numbers = (st.integers() | huge_ints | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0, 1, -1, 0.5, 1e-320, 1e308, float("nan"), float("inf"), -float("inf")]))
scalars = st.none() | st.booleans() | numbers | st.text(max_size=30) | st.sampled_from(
    ["x" * 5_000_000, "td", "bu", "off", "mnist", "bars", "float64", "numpy", "true", "\n\r\x00", "é" * 200])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
texts = (st.text(max_size=40) | numbers.map(str) | numbers.map(repr)
         | st.sampled_from(["", " ", "none", "NULL", "yes", "Off", "1e999", "-0", "0x10", "1_000", "9" * 400,
                            "9" * 5000, "nan", "-inf", "3.0", "1e2", "\x00", "x" * 100_000]))


def config_or_one_line(make) -> RunConfig | None:
    """``make()`` if it gives a RunConfig; None if it raises a one-line ConfigError; any other outcome fails."""
    try:
        cfg = make()
    except ConfigError as err:
        assert_one_line(err)
        return None
    assert isinstance(cfg, RunConfig)
    assert RunConfig.from_json(cfg.to_json()) == cfg              # what is accepted serialises and comes back
    for f in FIELDS:
        assert check_value(f, getattr(cfg, f.name)) == getattr(cfg, f.name)
    return cfg


@cases(400)
@given(name=st.sampled_from(NAMES), value=json_values)
def test_any_value_of_any_field(name, value):
    cfg = config_or_one_line(lambda: RunConfig.from_dict({name: value}))
    if cfg is not None and FIELD[name].kind in (int, float) and value is not None:
        assert getattr(cfg, name) == value          # numbers are taken as given (ints may come as 3.0)


@cases(150)
@given(doc=st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=12), json_values, max_size=6) | json_values)
def test_any_json_document(doc):
    config_or_one_line(lambda: RunConfig.from_dict(doc))
    config_or_one_line(lambda: RunConfig.from_json(json.dumps(doc)))


PARSER = build_parser()


@cases(300)
@given(name=st.sampled_from(NAMES), text=texts)
def test_any_text_of_any_cli_flag(name, text):
    args = PARSER.parse_args(["train", f"--{name.replace('_', '-')}={text}"])
    cfg = config_or_one_line(lambda: config_from_args(args))
    if cfg is not None and FIELD[name].kind is bool:
        assert getattr(cfg, name) is (text.strip().lower() in ("1", "true", "yes", "on"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


nested = st.integers(1, 300_000).flatmap(lambda n: st.sampled_from([
    ("[" * n + "]" * n).encode(), ('{"n_hidden": ' + "[" * n + "]" * n + "}").encode(),
    ('{"a":' * n + "1" + "}" * n).encode()]))


@cases(150)
@given(raw=st.binary(max_size=3000) | nested | json_values.map(lambda v: json.dumps({"seed": v}).encode())
       | st.text(max_size=200).map(lambda t: t.encode("utf-16")))
def test_any_config_file(scratch, raw):
    path = scratch / "config.json"
    path.write_bytes(raw)
    config_or_one_line(lambda: RunConfig.load(path))


@cases(20)
@given(size=st.integers(MAX_CONFIG_BYTES - 20, MAX_CONFIG_BYTES + 20))
def test_config_files_are_read_up_to_the_size_bound(scratch, size):
    path = scratch / "padded.json"
    body = '{"n_hidden": 12}'
    path.write_bytes((body + " " * (size - len(body))).encode())
    cfg = config_or_one_line(lambda: RunConfig.load(path))
    assert (cfg is not None) == (size <= MAX_CONFIG_BYTES)


def test_dev_zero_and_a_50_mb_value_on_the_command_line(tmp_path):
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="/dev/zero is larger than 1,048,576 bytes"):
            RunConfig.load("/dev/zero")
        assert tracemalloc.get_traced_memory()[1] < 4 * MiB
    finally:
        tracemalloc.stop()
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"kh_mode": "x" * 50_000_000}))
    long_value = tmp_path / "long.json"
    long_value.write_text(json.dumps({"kh_mode": "x" * 900_000}))
    for path, fragment in ((big, "is larger than 1,048,576 bytes"), (long_value, "got 'xxxxxxxx")):
        proc = subprocess.run([sys.executable, "-m", "khrbm", "train", "--config", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr) < 300 and fragment in proc.stderr, proc.stderr[:300]


# ================================================================================================ checkpoints

CONFIG = RunConfig(dataset="bars", n_hidden=4, batch_size=20, epochs=2, train_size=100, val_size=20, eval_size=20,
                   backend="numpy", sampler="pcd", kh_mode="bu", probe_every=1, probe_trials=2)


@pytest.fixture(scope="module")
def saved(scratch):
    """A real checkpoint of a short run (PCD chain, KH counts, ξ probes, two metric points): (arrays, bytes)."""
    run = Run(CONFIG)
    run.evaluate()
    for _ in range(3):
        run.train_batch()
    run.evaluate()
    path = run.save(scratch / "base.npz")
    return run.state_arrays(), path.read_bytes()


def open_checkpoint(path) -> bool:
    """What ``khrbm train --resume`` (Run.load) and the app's upload (read_trainer_checkpoint, then restore into
    a new Run, as Trainer.load_checkpoint does) do with ``path``: True if both accept it, False if both give a
    one-line CheckpointError (or ConfigError); anything else fails."""
    outcomes = []
    for load in (lambda: Run.load(path),
                 lambda: [Run(RunConfig.from_json(str(a["config_json"]))).restore(a, str(path))
                          for a in read_trainer_checkpoint(path)[0]]):
        try:
            load()
            outcomes.append(True)
        except (CheckpointError, ConfigError) as err:   # ConfigError: a config that does not fit its data
            assert_one_line(err)
            outcomes.append(False)
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (NaN included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_the_saved_checkpoint_itself_opens(scratch, saved):
    assert open_checkpoint(scratch / "base.npz")


@cases(150)
@given(raw=st.binary(max_size=4000) | st.binary(max_size=400).map(lambda b: b"PK\x03\x04" + b))
def test_random_bytes(scratch, raw):
    path = scratch / "random.npz"
    path.write_bytes(raw)
    assert not open_checkpoint(path)


@cases(100)
@given(data=st.data())
def test_truncated_files(scratch, saved, data):
    whole = saved[1]
    cut = data.draw(st.integers(0, len(whole) - 1))
    path = scratch / "cut.npz"
    path.write_bytes(whole[:cut])
    assert not open_checkpoint(path)


@cases(150)
@given(data=st.data())
def test_flipped_bytes(scratch, saved, data):
    raw = bytearray(saved[1])
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    path = scratch / "flipped.npz"
    path.write_bytes(bytes(raw))
    if open_checkpoint(path):                     # a flip in a field nobody reads (a zip timestamp …)
        assert all(same(v, saved[0][k]) for k, v in read_checkpoint(path).items())


class Exploit:
    """Unpickling this creates the file ``marker``: proof that a pickle was (not) loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


dtypes = st.sampled_from(["float32", "float64", "int64", "int8", "uint8", "bool", "complex64", "<U6", "S4", ">f4"])
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))


@cases(200)
@given(key=st.sampled_from([*RUN_KEYS, "chain", *COMPETITION_KEYS]),
       value=arrays | st.sampled_from(["pickle", "object"]))
def test_any_array_in_any_place(scratch, saved, key, value):
    marker = scratch / "unpickled"
    if isinstance(value, str):
        value = (np.array([Exploit(marker)], dtype=object) if value == "pickle"
                 else np.array([{"a": 1}, None], dtype=object))
    path = scratch / "replaced.npz"
    path.write_bytes(npz_bytes({**saved[0], key: value}))
    if open_checkpoint(path):
        assert same(read_checkpoint(path)[key], value)
    assert not marker.exists()


def test_pickles_are_refused_unopened(scratch, saved):
    marker = scratch / "unpickled-W"
    path = scratch / "pickled.npz"
    path.write_bytes(npz_bytes({**saved[0], "W": np.array([Exploit(marker)], dtype=object)}))
    with pytest.raises(CheckpointError, match=r"pickled\.npz: array 'W' holds Python objects \(pickles are refused\)"):
        load_npz(path)
    assert not marker.exists()


@cases(100)
@given(step=st.integers(-2**63, 2**63 - 1) | st.sampled_from([-5, 0, 2, 3, 4, 10, 10**12, 500_000, 500_001]))
def test_step_values(scratch, saved, step):
    path = scratch / "step.npz"
    path.write_bytes(npz_bytes({**saved[0], "step": np.int64(step)}))
    # valid: not before the last metric point (step 3), not past 100,000 epochs of 5 minibatches
    assert open_checkpoint(path) == (3 <= step <= 100_000 * 5)


@cases(100)
@given(table=hnp.arrays(np.float64, st.tuples(st.integers(0, 5), st.integers(0, 11)),
                        elements=st.floats(-1, 50) | st.sampled_from([0.0, 0.2, 0.4, 0.6, 3.0, float("nan")])))
def test_history_tables(scratch, saved, table):
    path = scratch / "history.npz"
    path.write_bytes(npz_bytes({**saved[0], "history": table}))
    if open_checkpoint(path):
        steps = table[:, 0]
        assert table.shape[1] == 9 and (steps == np.round(steps)).all() and (np.diff(steps) >= 0).all()
        assert (0 <= steps).all() and (steps <= 3).all() and np.allclose(table[:, 1], steps / 5)


def zip_of(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def peak_while(fn) -> int:
    """Peak bytes allocated (tracemalloc; NumPy reports its buffers) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@cases(60)
@given(shape=st.lists(st.integers(0, 2**62) | st.integers(0, 10), min_size=1, max_size=3).map(tuple),
       descr=st.sampled_from(["<f8", "<f4", "<i8", "|u1"]), data=st.binary(max_size=200))
def test_npy_headers_declaring_huge_shapes_cost_no_memory(scratch, saved, shape, descr, data):
    path = scratch / "declared.npz"
    members = {f"{k}.npy": npz_member(v) for k, v in saved[0].items() if k != "W"}
    members["W.npy"] = npy_header(descr, shape) + data
    path.write_bytes(zip_of(members))

    def load():
        try:
            load_npz(path)
        except CheckpointError as err:
            assert_one_line(err)
    assert peak_while(load) < 8 * MiB


def npz_member(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


@lru_cache(maxsize=4)
def zero_bomb(n_bytes: int) -> bytes:
    """An .npz whose one member W.npy holds ``n_bytes`` of float32 zeros, deflated (about 1,000 : 1), written
    in 1 MiB pieces so the test never holds the whole."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("W.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(npy_header("<f4", (n_bytes // 4,)))
            zeros = bytes(MiB)
            for _ in range(n_bytes // MiB):
                member.write(zeros)
    return buffer.getvalue()


def with_declared_size(archive: bytes, size: int) -> bytes:
    """``archive`` (one member) with the uncompressed size in its central directory replaced by ``size``."""
    raw = bytearray(archive)
    entry = raw.rindex(b"PK\x01\x02")
    struct.pack_into("<I", raw, entry + 24, size)
    return bytes(raw)


@cases(30)
@given(n_mib=st.sampled_from([16, 768]), lie=st.sampled_from(["honest", "small", "huge"]),
       declared=st.integers(0, 2**31))
def test_zip_bombs_are_refused_or_bounded(scratch, n_mib, lie, declared):
    bomb = zero_bomb(n_mib * MiB)
    assert len(bomb) < n_mib * MiB // 100                          # a real bomb: ~1,000 times smaller
    if lie == "small":
        bomb = with_declared_size(bomb, declared % (n_mib * MiB))
    elif lie == "huge":
        bomb = with_declared_size(bomb, n_mib * MiB + 1 + declared % 2**31)
    path = scratch / "bomb.npz"
    path.write_bytes(bomb)
    outcome = {}

    def load():
        try:
            outcome["arrays"] = load_npz(path)
        except CheckpointError as err:
            assert_one_line(err)
    peak = peak_while(load)
    # nothing past what the file declares is ever decompressed; over the 512 MiB limit nothing at all
    assert peak < (n_mib + 4) * MiB if n_mib < 512 else peak < 4 * MiB
    if "arrays" in outcome:
        assert lie == "honest" and n_mib == 16 and not outcome["arrays"]["W"].any()
        assert not open_checkpoint(path)                            # W alone is no checkpoint


def test_a_zip_of_many_members_or_odd_names_is_refused(scratch):
    path = scratch / "odd.npz"
    for members, fragment in (({f"x{i}.npy": npz_member(np.zeros(1)) for i in range(MAX_MEMBERS + 1)},
                               f"holds {MAX_MEMBERS + 1} arrays"),
                              ({"W": b"data"}, "member 'W' is not an .npy array"),
                              ({"../../etc/passwd.npy": npz_member(np.zeros(1)), "W.npy": b""},
                               "array 'W' has no valid .npy header")):
        path.write_bytes(zip_of(members))
        with pytest.raises(CheckpointError, match=fragment):
            load_npz(path)


def test_hand_made_checkpoints_on_the_command_line(tmp_path):
    """The issue's repro (#9): step -5 and 10^12, a history of the wrong shape; also a W of another dtype."""
    out = tmp_path / "run"
    bars = ["--dataset", "bars", "--n-hidden", "8", "--train-size", "200", "--val-size", "50", "--no-progress",
            "--backend", "numpy", "--epochs", "1"]
    khrbm = [sys.executable, "-m", "khrbm", "train"]
    assert subprocess.run([*khrbm, *bars, "--out", str(out)], capture_output=True, timeout=300).returncode == 0
    good = read_checkpoint(out / "checkpoint.npz")
    for change, message in (
            ({"step": np.int64(-5)}, "step is -5, expected a count >= 0"),
            ({"step": np.int64(10**12)}, ("step 1,000,000,000,000 is past the 100,000 epochs of 2 minibatches a "
                                          "run may train")),
            ({"history": good["history"][:, :5]}, ("history has 5 columns, expected 9 (step, epoch, eps, val_mse, "
                                                   "val_ce, train_mse, train_ce, accuracy, overlap)")),
            ({"history": good["history"].ravel()}, ("history is a 1-D array of float64, expected a 2-D float table "
                                                    "of 9 columns")),
            ({"W": good["W"].astype(np.float64)}, "W is float64, its config says float32")):
        bad = tmp_path / "bad.npz"
        bad.write_bytes(npz_bytes({**good, **change}))
        proc = subprocess.run([*khrbm, "--resume", str(bad), "--out", str(tmp_path / "o")], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2 and proc.stderr == f"khrbm: error: {bad}: {message}\n"
