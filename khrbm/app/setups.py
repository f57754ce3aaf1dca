"""My setups and Recent runs, Panel-free: a saved setup as the lab opens it (through the same
:class:`~khrbm.app.urlstate.Setup` as a preset or a link), and the lines the two lists and their details show.

The registry (:mod:`khrbm.store`) holds both: named setups (config A, and config B when the arms are compared)
and every run the app, ``khrbm train`` and sweeps recorded.
"""
from __future__ import annotations

import contextlib
import html
import time

from ..store import Registry, RegistryError, RunRecord, Setup as SavedSetup, describe_config
from . import presets, urlstate
from .errors import UserError


@contextlib.contextmanager
def registry():
    """The run registry (``KHRBM_REGISTRY``, else the user's data directory), closed afterwards; a registry
    that cannot be opened, read or written raises UserError (one line naming the file and why)."""
    try:
        reg = Registry()
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    try:
        yield reg
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    finally:
        reg.close()


def setup_of(saved: SavedSetup) -> urlstate.Setup:
    """The setup a saved one opens: its arms exactly, based on the nearest preset (the link's base)."""
    return urlstate.Setup.of(presets.nearest(saved.config_a, saved.compare), saved.config_a, saved.config_b)


def ago(seconds: float) -> str:
    """``seconds`` ago, in words: ``just now``, ``12 min ago``, ``3 h ago``, ``5 days ago``."""
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400 * 2:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} days ago"


def setup_label(saved: SavedSetup) -> str:
    """The line of a setup in the list: its name, and what it compares."""
    return f"{saved.name} · {'A/B' if saved.compare else 'single'}"


def _arm_lines(a, b) -> str:
    lines = [f"<b>A</b> {html.escape(describe_config(a))}"]
    if b is not None:
        lines.append(f"<b>B</b> {html.escape(describe_config(b))}")
    return "<br>".join(lines)


def setup_details(saved: SavedSetup, now: float | None = None) -> str:
    """HTML: the setup's comment, its arms in short, and when it was saved."""
    now = time.time() if now is None else now
    comment = f"<i>{html.escape(saved.comment)}</i><br>" if saved.comment else ""
    return f"{comment}{_arm_lines(saved.config_a, saved.config_b)}<br>saved {ago(now - saved.updated)}"


def run_label(record: RunRecord, now: float | None = None) -> str:
    """The line of a run in the Recent runs list: ``#12 A · app · 3 min ago · KH_TD · finished @ 30.0``."""
    now = time.time() if now is None else now
    cfg = record.config
    mode = f"KH_{cfg.kh_mode.upper()}" if cfg.kh_mode != "off" else "plain"
    arm = f" {record.arm}" if record.arm else ""
    return (f"#{record.id}{arm} · {record.source} · {ago(now - record.started)} · {cfg.dataset} M={cfg.n_hidden} "
            f"{mode} · {record.state} @ {record.epoch:.1f}")


def run_details(record: RunRecord, now: float | None = None) -> str:
    """HTML: the run in full (summary, source, start, folder) and whether it can be continued."""
    now = time.time() if now is None else now
    where = (f"checkpoint: {html.escape(str(record.checkpoint))}" if record.can_continue else
             "its checkpoint is gone: the registry kept its thinned curves, no weights" if record.checkpoint else
             "no checkpoint: the registry kept its thinned curves, no weights")
    message = f"<br>{html.escape(record.message)}" if record.message else ""
    lesson = f" · played a lesson of {len(record.lesson.get('events', ()))} events" if record.lesson else ""
    return (f"<b>{html.escape(record.summary)}</b><br>{record.source}, started {ago(now - record.started)}"
            f"{lesson}{message}<br><span class='khrbm-run-where'>{where}</span>")
