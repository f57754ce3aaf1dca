"""Files in and out of the lab (khrbm/app/files.py): exports, and uploads that are never trusted."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khrbm.app import files
from khrbm.app.errors import UserError
from khrbm.config import RunConfig


def test_exports_give_the_trainers_checkpoint_history_and_config(tmp_path):
    from khrbm.train.trainer import Trainer

    cfg = RunConfig(dataset="bars", n_hidden=12, train_size=200, val_size=100, eval_size=50, backend="numpy")
    with Trainer(cfg, cfg.replace(kh_mode="off")) as t:
        t.step(2)
        snap = t.sync(120)
        with np.load(io.BytesIO(files.weights_npz(t)), allow_pickle=False) as z:
            assert np.array_equal(z["A.W"], snap.arms[0].W) and int(z["A.step"]) == 2
        rows = files.metrics_csv(snap).splitlines()
        assert rows[0].startswith("arm,kh_mode,step") and {r.split(",")[0] for r in rows[1:]} == {"A", "B"}
    assert RunConfig.from_json(files.config_json(cfg)) == cfg
    with pytest.raises(UserError, match="nothing to export"):
        files.weights_npz(None)


def test_an_uploaded_config_is_read_through_the_config_checks():
    cfg = RunConfig(dataset="bars", n_hidden=12)
    assert files.read_config("a.json", cfg.to_json().encode()) == cfg
    assert files.upload_kind("a.json", b"{}") == "config" and files.upload_kind("x", b"PK\x03\x04") == "checkpoint"
    with pytest.raises(UserError, match="x.bin: expected a run config"):
        files.upload_kind("x.bin", b"\x00\x01")
    with pytest.raises(UserError, match="b.json: config field 'kh_mode'"):
        files.read_config("b.json", json.dumps({"kh_mode": "sideways"}).encode())
    with pytest.raises(UserError, match="not a UTF-8"):
        files.read_config("c.json", b"\xff\xfe{")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["x.json", "x.npz", "x", "x.JSON"]))
def test_any_bytes_uploaded_give_a_config_or_a_message(raw, name):
    try:
        if files.upload_kind(name, raw) == "config":
            assert isinstance(files.read_config(name, raw), RunConfig)
    except UserError as exc:
        assert name in str(exc) and "\n" not in str(exc)


MESSAGES = st.one_of(
    st.none(), st.integers(), st.text(max_size=20),
    st.fixed_dictionaries({}, optional={"name": st.one_of(st.text(max_size=300), st.integers(), st.none()),
                                        "size": st.one_of(st.integers(), st.floats(), st.text(max_size=5)),
                                        "data": st.one_of(st.none(), st.text(max_size=50), st.integers(),
                                                          st.binary(max_size=30).map(
                                                              lambda b: base64.b64encode(b).decode()))}))


@settings(max_examples=300, deadline=None)
@given(MESSAGES)
def test_the_upload_box_takes_any_message_without_an_error(msg):
    box = files.UploadBox()
    box._handle_msg(msg)
    if isinstance(msg, dict):
        name, raw, size = box.value
        assert isinstance(name, str) and len(name) <= files.MAX_NAME and size >= 0
        assert raw is None or isinstance(raw, bytes)
        if isinstance(msg.get("data"), str) and raw:
            assert base64.b64encode(raw).decode() == msg["data"]


def test_a_file_over_the_limit_is_named_with_its_size_and_the_limit():
    box = files.UploadBox()
    box._handle_msg({"name": "big.npz", "size": 30 * 1024 * 1024, "data": None})
    assert box.value == ("big.npz", None, 30 * 1024 * 1024)
    message = files.too_big("big.npz", 30 * 1024 * 1024)
    assert message.startswith("big.npz is 30.0 MB: the lab takes files up to 10.0 MB")
    assert files.UPLOAD_LIMIT_BYTES * 4 / 3 < files.WEBSOCKET_MAX_MESSAGE_BYTES * 0.9   # base64 fits one message
