"""Files in and out of the lab: the export downloads (weights .npz, metrics .csv, config .json) and the
upload of a run config (.json) or a checkpoint (.npz), capped below what one websocket message may carry."""
from __future__ import annotations

import base64
import binascii
import functools
import io
import tempfile
from pathlib import Path

import panel as pn
import param
from panel.custom import JSComponent

from .. import data as kdata
from ..config import ConfigError, RunConfig
from . import views
from .follow import checkpoint_bytes
from .errors import UserError

# Bokeh's default limit on one websocket message (`panel serve --websocket-max-message-size`); `khrbm serve`
# sets it explicitly. A bigger message drops the connection without a word (issue 9, item 6). An upload
# travels as one message, base64-encoded (4/3 of the file's size): 10 MB become 13.3 MB, well below.
WEBSOCKET_MAX_MESSAGE_BYTES = 20 * 1024 * 1024
UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024
MAX_NAME = 200


def megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def too_big(name: str, size: int) -> str:
    return (f"{name} is {megabytes(size)}: the lab takes files up to {megabytes(UPLOAD_LIMIT_BYTES)} (one "
            f"message of the browser's connection); nothing was sent")


class UploadBox(JSComponent):
    """A file input that checks a file's size in the browser, before reading it: a file over ``limit`` bytes
    is never sent (the server hears only its name and size); else its bytes arrive in one message.
    ``value``: ``(name, bytes)`` of the last file, or ``(name, None)`` when it was over the limit."""

    accept = param.String(default="")
    limit = param.Integer(default=UPLOAD_LIMIT_BYTES)
    value = param.Parameter(default=None)

    _esm = """
export function render({ model, el }) {
  const input = document.createElement("input");
  input.type = "file";
  input.accept = model.accept;
  input.addEventListener("change", () => {
    const file = input.files[0];
    if (!file) { return; }
    if (file.size > model.limit) {
      model.send_msg({name: file.name, size: file.size, data: null});
      input.value = "";
      return;
    }
    const reader = new FileReader();
    reader.onload = () => {
      model.send_msg({name: file.name, size: file.size, data: String(reader.result).split(",")[1] || ""});
      input.value = "";
    };
    reader.readAsDataURL(file);
  });
  el.appendChild(input);
}
"""
    _stylesheets = ["input { font-size: 13px; margin-top: 4px; }"]

    def _handle_msg(self, msg):
        """A message from the browser: checked here again (a page could be modified), never trusted."""
        if not isinstance(msg, dict):
            return
        name = str(msg.get("name") or "upload")[:MAX_NAME]
        data, size = msg.get("data"), msg.get("size")
        if not isinstance(data, str) or len(data) > UPLOAD_LIMIT_BYTES * 4 // 3 + 4:
            said = size if isinstance(size, int) and not isinstance(size, bool) else 0
            value = (name, None, max(said, len(data) * 3 // 4 if isinstance(data, str) else 0))
        else:
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            value = (name, raw, len(raw))
        with param.discard_events(self):
            self.value = value
        self.param.trigger("value")          # the same file twice is two uploads


def weights_npz(trainer) -> bytes:
    """The trainer's checkpoint (every arm), as the bytes of its .npz file."""
    if trainer is None:
        raise UserError("nothing to export yet")
    if trainer.snapshot.state in ("compiling", "closed"):
        raise UserError("the trainer is still preparing; export again in a moment")
    return checkpoint_bytes(trainer)


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
    raw)`` gets each uploaded file, ``report`` the message for one over the limit."""

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
        self.upload = UploadBox(accept=".json,.npz", css_classes=["khrbm-load"], width=230, height=34,
                                margin=(6, 4))
        self._on_upload, self._report = on_upload, report
        self.upload.param.watch(self._uploaded, "value")

    def _uploaded(self, event):
        name, raw, size = event.new
        if raw is None:
            self._report(too_big(name, size))
        else:
            self._on_upload(name, raw)

    def row(self):
        return pn.Row(pn.pane.HTML("<b>Export</b>", margin=(12, 4, 0, 8)), self.weights, self.metrics, self.config,
                      pn.pane.HTML(f"<b>Load</b> config .json / checkpoint .npz <span class='khrbm-limit' "
                                   f"style='color:#555'>(up to {megabytes(UPLOAD_LIMIT_BYTES)})</span>",
                                   margin=(12, 4, 0, 24), css_classes=["khrbm-load-label"]), self.upload,
                      margin=(4, 0), css_classes=["khrbm-files"])
