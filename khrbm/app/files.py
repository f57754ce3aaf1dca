"""Files in and out of the lab: the export downloads (weights .npz, metrics .csv, config .json) and the
upload of a run config (.json) or a checkpoint (.npz)."""
from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import panel as pn

from .. import data as kdata
from ..config import ConfigError, RunConfig
from . import views
from .errors import UserError

# Bokeh's default limit on one websocket message (`panel serve --websocket-max-message-size`); `khrbm serve`
# sets it explicitly. An upload travels as one message, base64-encoded (4/3 of the file's size).
WEBSOCKET_MAX_MESSAGE_BYTES = 20 * 1024 * 1024


def weights_npz(trainer) -> bytes:
    """The trainer's checkpoint (every arm), as the bytes of its .npz file."""
    if trainer is None:
        raise UserError("nothing to export yet")
    if trainer.snapshot.state in ("compiling", "closed"):
        raise UserError("the trainer is still preparing; export again in a moment")
    with tempfile.TemporaryDirectory() as tmp:
        path = trainer.save_checkpoint(Path(tmp) / "weights.npz")
        return Path(path).read_bytes()


def metrics_csv(snap) -> str:
    return views.history_csv(snap.arms if snap is not None else ())


def config_json(cfg: RunConfig) -> str:
    return cfg.to_json() + "\n"


def read_config(name: str, raw: bytes) -> RunConfig:
    """An uploaded run config; UserError naming the file and what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{name}: not a UTF-8 text file; expected a run config (.json)") from None
    try:
        cfg = RunConfig.from_json(text)
    except ConfigError as exc:
        raise UserError(f"{name}: {exc}") from None
    ok, msg = kdata.dataset_status(cfg.dataset)
    if not ok:
        raise UserError(f"{name} asks for {cfg.dataset}: {msg}")
    return cfg


def upload_kind(name: str, raw: bytes) -> str:
    """'config' or 'checkpoint', from the file name or else its first bytes; UserError for anything else."""
    if name.lower().endswith(".json") or raw[:1] in (b"{", b"[", b" ", b"\n"):
        return "config"
    if name.lower().endswith(".npz") or raw[:2] == b"PK":
        return "checkpoint"
    raise UserError(f"{name}: expected a run config (.json) or a checkpoint (.npz)")


def temp_file(raw: bytes, suffix: str) -> Path:
    """``raw`` in a new temporary file (the caller deletes it)."""
    with tempfile.NamedTemporaryFile(prefix="khrbm-upload-", suffix=suffix, delete=False) as tmp:
        tmp.write(raw)
    return Path(tmp.name)


class FileBar:
    """The Export / Load row. ``weights``, ``metrics``, ``config``: functions returning the bytes or text
    of each download (a failure shows through ``report`` and downloads an empty file); ``on_upload(name,
    raw)`` gets each uploaded file."""

    def __init__(self, weights, metrics, config, on_upload, report):
        def download(fn, empty):
            @functools.wraps(fn)
            def wrapper():
                try:
                    out = fn()
                except Exception as exc:  # noqa: BLE001 - a failed export must not break the page
                    report(f"export failed: {exc}")
                    return empty()
                return io.BytesIO(out) if isinstance(out, bytes) else io.StringIO(out)
            return wrapper

        button = dict(button_type="light", width=110, margin=(4, 2))
        self.weights = pn.widgets.FileDownload(callback=download(weights, io.BytesIO), filename="khrbm-weights.npz",
                                               label="weights .npz", css_classes=["khrbm-export-weights"], **button)
        self.metrics = pn.widgets.FileDownload(callback=download(metrics, io.StringIO), filename="khrbm-metrics.csv",
                                               label="metrics .csv", css_classes=["khrbm-export-metrics"], **button)
        self.config = pn.widgets.FileDownload(callback=download(config, io.StringIO), filename="khrbm-config.json",
                                              label="config .json", css_classes=["khrbm-export-config"], **button)
        self.upload = pn.widgets.FileInput(accept=".json,.npz", multiple=False, css_classes=["khrbm-load"],
                                           width=250, margin=(6, 4))
        self._on_upload = on_upload
        self.upload.param.watch(self._uploaded, "value")

    def _uploaded(self, event):
        raw = event.new
        if raw is None:
            return
        self._on_upload(self.upload.filename or "upload", raw.encode() if isinstance(raw, str) else raw)

    def row(self):
        return pn.Row(pn.pane.HTML("<b>Export</b>", margin=(12, 4, 0, 8)), self.weights, self.metrics, self.config,
                      pn.pane.HTML("<b>Load</b> config .json / checkpoint .npz", margin=(12, 4, 0, 24)), self.upload,
                      margin=(4, 0), css_classes=["khrbm-files"])
