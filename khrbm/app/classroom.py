"""One tab's place in a classroom server (issue 9): :class:`Seat`, owned by the Lab (``lab.seat``).

A tab is in one of four modes:

- ``own``: it trains on a trainer of its own, holding one of the server's training places
  (``capacity.SLOTS``). It may share its run (Share: a short code and a ``/app?follow=CODE`` link).
- ``waiting``: it opened while every place was taken; it shows its queue position (and the runs it could
  follow meanwhile) and opens its setup by itself when a place frees.
- ``follow``: it draws a shared run's snapshots (no trainer, no place), read-only; "Make my own copy" forks
  the run into a trainer of its own (through its checkpoint; queued like any other trainer when needed).
- ``released``: it trained, then stayed idle past ``capacity.idle_seconds()`` (not training, or no browser
  connected): its trainer was closed and its place given back, its checkpoint kept in memory. ▶ Start or
  ⇥ Step brings the run back (restored from that checkpoint, at the step it reached).

The Lab calls the hooks (:meth:`tick`, :meth:`follow`, :meth:`when_admitted`, :meth:`reclaim`, :meth:`close`,
...); the server-wide parts are :mod:`khrbm.app.capacity` (places and queue) and :mod:`khrbm.app.follow`
(shared runs). In a notebook (not served) a tab always trains: no places, no sharing, no release.
"""
from __future__ import annotations

import html
import threading
import time

import panel as pn

from .. import data as kdata
from . import capacity, follow, presets, session
from .errors import UserError, describe
from .session import log

SEAT_CSS = """
.khrbm-seat { font-size: 13.5px; line-height: 1.45; padding: 5px 10px; border-radius: 6px; background: #fff8e1;
  border: 1px solid #e7c46a; color: #3d2f00; }
.khrbm-seat[data-mode='follow'] { background: #e8f2fc; border-color: #9cc2e8; color: #0b2e4f; }
.khrbm-seat a { color: #0550ae; font-weight: 600; }
.khrbm-share-info { font-size: 12px; color: #333; line-height: 1.3; }
.khrbm-share-info b { font-size: 14px; letter-spacing: .08em; color: #1f3b57; }
"""


def split_follow(query) -> tuple[str | None, object]:
    """(the code of a ``?follow=`` link as written, or None; the query without it). ``query``: Panel's
    served arguments (name -> list of bytes); anything else is returned as it is."""
    if not isinstance(query, dict) or follow.FOLLOW_ARG not in query:
        return None, query
    rest = dict(query)
    values = rest.pop(follow.FOLLOW_ARG) or [b""]
    raw = values[0]
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)), rest


def server_line() -> str:
    """The sidebar's last line: trainers live, the cap, tabs queued, runs shared; with data attributes for
    tests and benchmarks (``data-threads``: threads of this process started by khrbm)."""
    live = session.live_trainers()
    _held, queued = capacity.SLOTS.counts()
    cap = capacity.SLOTS.max_trainers
    shared = len(follow.listing())
    parts = [f"server: {live} live trainer{'s' if live != 1 else ''} (at most {cap})"]
    if queued:
        parts.append(f"{queued} queued")
    if shared:
        parts.append(f"{shared} shared run{'s' if shared != 1 else ''}")
    return (f"<span class='khrbm-live' data-live='{live}' data-cap='{cap}' data-queued='{queued}' "
            f"data-shared='{shared}' data-threads='{session.khrbm_threads()}'>{' · '.join(parts)}</span>")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


class Seat:
    """Which of the modes above the tab is in, the widgets that show it (``sidebar_row``, ``main_row``) and
    the transitions between modes. Runs on the session's event loop; slow work goes through
    ``lab._background`` (a worker thread, its result applied by the next tick)."""

    def __init__(self, lab):
        self.lab = lab
        self.sid = lab.session_id
        self.managed = session.served()
        self.mode = "own"
        self.shared: follow.Share | None = None      # this tab's run, shared
        self.followed: follow.Share | None = None    # the run this tab follows
        self.pending = None            # queued: what to run once a place is given (on the event loop)
        self.saved = None              # released: (checkpoint bytes, the last snapshot)
        self.active_at = self.seen_at = time.monotonic()
        self._readonly = None          # read-only state last applied to the widgets
        self._changed = False          # the mode changed since the last tick
        self._lock = threading.Lock()  # guards the two below against a restore finishing on a worker thread
        self._closed = False
        self._restored = None          # a restored trainer not yet adopted by the Lab
        self._shown_cfg = None         # follow: the config the sidebar shows
        self._ended_seen = False       # follow: the tab has shown that the shared run ended
        self._doc = pn.state.curdoc
        self.share_btn = pn.widgets.Button(name="⇪ Share my run", css_classes=["khrbm-share"], width=120,
                                           margin=(4, 2, 4, 10), visible=self.managed, button_type="light",
                                           description="Let other tabs watch this run, read-only: gives a short "
                                           "code and a link (/app?follow=CODE). It costs no extra training.")
        self.share_btn.on_click(self._on_share)
        self.share_info = pn.pane.HTML("", css_classes=["khrbm-share-info"], margin=(4, 4), width=210,
                                       stylesheets=[SEAT_CSS], visible=self.managed)
        self.notice = pn.pane.HTML("", css_classes=["khrbm-seat-box"], sizing_mode="stretch_width",
                                   margin=(0, 5, 4, 5), stylesheets=[SEAT_CSS], visible=False)
        self.copy_btn = pn.widgets.Button(name="Make my own copy", button_type="primary", width=170,
                                          css_classes=["khrbm-copy-run"], margin=(2, 5, 4, 5), visible=False,
                                          description="Train on from this run's current step in a trainer of "
                                          "your own (its settings and weights); the shared run goes on.")
        self.copy_btn.on_click(self._on_copy)

    # --- layout -----------------------------------------------------------------------------------
    def sidebar_row(self):
        return pn.Row(self.share_btn, self.share_info, margin=0, visible=self.managed)

    def main_row(self):
        return pn.Row(self.notice, self.copy_btn, margin=0, sizing_mode="stretch_width")

    # --- what the Lab asks ------------------------------------------------------------------------
    def snapshot(self):
        """The snapshot this tab draws: its own trainer's, the followed run's, or the last one kept."""
        if self.lab.trainer is not None:
            return self.lab.trainer.snapshot
        if self.mode == "follow":
            return self.followed.frame()
        if self.mode == "released" and self.saved is not None:
            return self.saved[1]
        return None

    def trainer(self):
        """The trainer whose checkpoint 'weights .npz' exports (a follower's: the shared one)."""
        return self.followed.trainer if self.mode == "follow" else self.lab.trainer

    def may_train(self) -> bool:
        return self.mode == "own"

    def check_may_train(self):
        """UserError unless this tab trains a run of its own (its controls are read-only otherwise)."""
        if self.mode == "follow":
            raise UserError(f"this tab follows {self.followed.code}, read-only: press “Make my own copy” to train")
        if self.mode != "own":
            raise UserError("this tab has no trainer now (see the message above the figures)")

    def allowed_buttons(self) -> set:
        """Run buttons that may be enabled: all when training, ▶ Start and ⇥ Step when released."""
        if self.mode == "own":
            return {"start", "pause", "step"}
        return {"start", "step"} if self.mode == "released" and self.pending is None else set()

    def line(self) -> str:
        """What the status line adds about this tab's mode."""
        if self.mode == "follow":
            return f"following {self.followed.code}" + (" (ended)" if self.followed.ended else "")
        if self.mode == "released":
            return "released (idle)"
        return ""

    def link_query(self) -> str:
        """A follower's page address keeps its follow link ('' otherwise: the setup's link)."""
        return f"{follow.FOLLOW_ARG}={self.followed.code}" if self.mode == "follow" else ""

    def mosaic_interval(self, own: float) -> float:
        """Seconds between two redraws of the mosaics (the heaviest data sent): ``own`` for a trainer's tab, for
        a follower FOLLOW_MOSAIC stretched as the shared run's frames are (``follow.PACE``)."""
        return follow.FOLLOW_MOSAIC * follow.PACE.scale() if self.mode == "follow" else own

    def mosaics_at_once(self, snap) -> bool:
        """A trainer's tab redraws its mosaics at once when its run stops; a follower's redraw at the teacher's
        click (all followers at once) sends the status and curves, its mosaics when due (see Lab._tick)."""
        return snap.state != "running" and self.mode != "follow"

    def drawn(self, seconds: float) -> None:
        """A redraw took ``seconds`` of the event loop's CPU: a follower's paces the frames of shared runs."""
        if self.mode == "follow":
            follow.PACE.record(seconds)

    def touch(self):
        """A person acted in this tab (it is not idle)."""
        self.active_at = time.monotonic()

    # --- opening ----------------------------------------------------------------------------------
    def when_admitted(self, then) -> None:
        """Run ``then()`` now if this tab holds or gets a training place, else once the queue gives it one."""
        if not self.managed or capacity.SLOTS.request(self.sid):
            self.pending = None
            then()
            return
        self.pending = then
        log.info("session %s: queued for a training place (position %d)", self.sid, capacity.SLOTS.position(self.sid))
        self._show()

    def open(self, then) -> None:
        """Opening a setup: ``then()`` now if a place is free, else show the queue until one is."""
        self._set_mode("waiting")

        def admitted():
            self._set_mode("own")
            then()
        self.when_admitted(admitted)

    def follow(self, code: str) -> str:
        """Follow the run shared as ``code``; '' when done, else why not (the tab then opens its own lab)."""
        item = follow.lookup(code)
        if item is None:
            return (f"**No run is shared as “{html.escape(str(code)[:12])}”** (the code may be mistyped, or its "
                    "tab was closed); this tab opened a lab of its own instead.")
        self.followed = item
        self._set_mode("follow")
        item.join(self.sid)
        log.info("session %s: follows %s (%d following)", self.sid, item.code, item.followers)
        self._show()
        return ""

    # --- sharing ----------------------------------------------------------------------------------
    def _on_share(self, _event):
        if self.mode != "own" or self.lab.trainer is None:
            return
        if self.shared is None:
            self.shared = follow.share(self.sid, self.lab.trainer, self.lab.preset_id, self._label())
            log.info("session %s: shares its run as %s", self.sid, self.shared.code)
        self._show_share()

    def _label(self) -> str:
        return presets.PRESETS[self.lab.preset_id].name

    def installed(self, trainer) -> None:
        """The Lab trains on a new trainer (Reset, a preset, a restore): a shared run shows that one."""
        self.touch()
        if self.shared is not None:
            self.shared.trainer, self.shared.preset, self.shared.label = trainer, self.lab.preset_id, self._label()

    def _link(self, code: str) -> str:
        loc = pn.state.location
        query = f"?{follow.FOLLOW_ARG}={code}"
        if loc is None or not loc.hostname:
            return query
        port = f":{loc.port}" if loc.port else ""
        return f"{loc.protocol}//{loc.hostname}{port}{loc.pathname}{query}"

    def _show_share(self):
        if self.shared is None:
            return
        n = self.shared.followers
        link = html.escape(self._link(self.shared.code), quote=True)
        text = (f"<div class='khrbm-share-info' data-code='{self.shared.code}' data-followers='{n}'>Shared as "
                f"<b>{self.shared.code}</b> · {n} following<br><a href='{link}' target='_blank'>{link}</a></div>")
        if self.share_info.object != text:
            self.share_info.object = text
        if self.share_btn.visible:
            self.share_btn.visible = False

    # --- following --------------------------------------------------------------------------------
    def _on_copy(self, _event):
        """Make my own copy: the followed run's checkpoint (taken off the event loop), restored into a trainer
        of this tab's own once it has a training place."""
        if self.mode != "follow" or self.pending is not None:
            return
        self.touch()
        item = self.followed
        snap = item.snapshot
        configs = tuple(a.config for a in snap.arms)

        def copied(raw):
            msg = f"Your copy of {item.code} at step {snap.step:,}: it trains on its own. Press ▶ Start."
            self.when_admitted(lambda: self._restore(raw, configs, msg, None, f"copy-of-{item.code}.npz"))
        self.lab._background(lambda: follow.checkpoint_bytes(item.trainer), copied, f"copying {item.code}…")

    # --- releasing an idle trainer and bringing it back -----------------------------------------------
    def _idle(self) -> bool:
        limit = capacity.idle_seconds()
        trainer = self.lab.trainer
        if not self.managed or not limit or self.mode != "own" or trainer is None:
            return False
        now = time.monotonic()
        if trainer.snapshot.state in ("running", "compiling"):
            self.active_at = now
        if session.connections(self._doc) != 0:
            self.seen_at = now
        if self.shared is not None and self.shared.followers:      # a class is watching this run
            return False
        return now - self.active_at > limit or now - self.seen_at > limit

    def _release(self):
        """Give the trainer and its place back; keep its checkpoint (and last snapshot) for a return."""
        lab = self.lab
        trainer, snap = lab.trainer, lab.trainer.snapshot
        lab.trainer = None
        self._set_mode("releasing")
        why = "no browser connected" if time.monotonic() - self.seen_at > capacity.idle_seconds() else "idle"
        log.info("session %s: releasing its trainer (%s for %s)", self.sid, why, _minutes(capacity.idle_seconds()))

        def work():
            try:
                return follow.checkpoint_bytes(trainer)
            except Exception as exc:  # noqa: BLE001 - the run comes back fresh, with its settings
                log.error("session %s: saving the idle trainer failed: %r", self.sid, exc)
                return None
            finally:
                trainer.close(timeout=120)

        def done(raw):
            self.saved = (raw, snap)
            session.unregister(self.sid)
            capacity.SLOTS.release(self.sid)
            self._set_mode("released")
            log.info("session %s: trainer released; live trainers: %d", self.sid, session.live_trainers())

        lab._background(work, done, "releasing the idle trainer…")

    def reclaim(self, then) -> bool:
        """▶ Start or ⇥ Step in a released tab: bring the run back (queued if need be), then ``then()``. False
        when the tab is not released (the button acts as usual)."""
        if self.mode != "released":
            return False
        if self.pending is None and self.saved is not None:
            raw, snap = self.saved
            configs = tuple(a.config for a in snap.arms)
            back = (f"Your run is back at step {snap.step:,}." if raw is not None
                    else "Your run could not be kept; a fresh one with its settings opened.")
            self.when_admitted(lambda: self._restore(raw, configs, back, then, "your-run.npz"))
            self._show()
        return True

    def _restore(self, raw: bytes | None, configs: tuple, message: str, then, name: str):
        """A trainer of this tab's own from checkpoint ``raw`` (built off the event loop; named ``name`` in the
        status), then ``then(None)`` (a button's callback)."""
        lab = self.lab
        self.pending = "restoring"
        dataset = kdata.load_dataset(configs[0].dataset)

        def work():
            try:
                trainer = follow.restore(raw, configs, dataset, name)
            except Exception as exc:  # noqa: BLE001 - CheckpointError, DataError ...: said, the tab goes on
                return None, exc
            with self._lock:             # a tab closed meanwhile never adopts it: close() closes it
                if self._closed:
                    trainer.close()
                    return None, None
                self._restored = trainer
            return trainer, None

        def done(result):
            trainer, exc = result
            self.pending = None
            with self._lock:
                self._restored = None
            if exc is not None:
                if self.mode != "own":
                    capacity.SLOTS.release(self.sid)
                lab.error(f"the run could not be restored: {describe(exc)}")
                return
            self.saved = None
            if self.followed is not None:
                self.followed.leave(self.sid)
                self.followed = None
            self._set_mode("own")
            lab.adopt(trainer, message)
            if then is not None:
                then(None)

        lab._background(work, done, "restoring the run…")

    # --- the periodic hook and closing ----------------------------------------------------------------
    def _set_mode(self, mode: str):
        self.mode = mode
        self._changed = True

    def tick(self, page_shown: bool) -> bool:
        """Called by every redraw tick: a place given to a queued tab, an idle trainer, the follower's
        sidebar, the notices and (once the page is drawn) the read-only state of the widgets. True when the
        mode changed since the last call (the Lab then redraws the status and the run buttons)."""
        if callable(self.pending) and capacity.SLOTS.holds(self.sid):
            if session.connections(self._doc) == 0:       # the tab went away while queued: pass the place on
                capacity.SLOTS.release(self.sid)
                self.pending = None
            else:
                then, self.pending = self.pending, None
                log.info("session %s: got a training place", self.sid)
                then()
        elif self._idle():
            self._release()
        if self.mode == "follow":
            snap = self.followed.snapshot
            shown = (tuple(a.config for a in snap.arms), self.followed.preset)
            if self.followed.ended and not self._ended_seen:     # the status line says so at once
                self._ended_seen = self._changed = True
            if shown != self._shown_cfg:
                self._shown_cfg = shown
                self.lab.controls.show(snap.arms[0].config, snap.compare)
                self.lab.preset_id = self.followed.preset       # a copy's link starts from the same preset
                with self.lab.controls.quiet():
                    self.lab.preset.value = self.followed.preset
        self._show()
        self._show_share()
        if page_shown:
            self._apply_readonly()
        changed, self._changed = self._changed, False
        return changed

    def _apply_readonly(self):
        readonly = self.mode != "own"
        if readonly == self._readonly:
            return
        self._readonly = readonly
        lab = self.lab
        lab.controls.set_disabled(readonly)
        lab.preset.disabled = readonly
        lab.reset_btn.disabled = readonly
        self.share_btn.visible = self.managed and self.shared is None and not readonly
        if readonly:                  # else the next redraw enables them as the run's state allows
            lab.start_btn.disabled = lab.pause_btn.disabled = lab.step_btn.disabled = True
        self._changed = True

    def _show(self):
        """The notice above the figures (and the copy button) for the current mode."""
        text, visible_copy = "", False
        pos = capacity.SLOTS.position(self.sid)
        cap = capacity.SLOTS.max_trainers
        _held, queued = capacity.SLOTS.counts()
        queue = (f"queued, position {pos} of {queued}: this server trains at most {cap} run{'s' if cap != 1 else ''} "
                 f"at once") if pos else ""
        if self.mode == "follow":
            item = self.followed
            visible_copy = self.pending is None
            if item.ended:
                text = (f"The shared run <b>{item.code}</b> ended (its tab was closed). You see its last state; "
                        f"<b>Make my own copy</b> to train on from there.")
            else:
                text = (f"Following <b>{item.code}</b> — “{html.escape(item.label)}”, shared by another tab: "
                        f"you watch its run live, read-only. <b>Make my own copy</b> to train on from its current "
                        f"step.")
            if queue:
                text += f"<br>Your copy waits for a training place: {queue}."
        elif self.mode == "waiting":
            head = queue.capitalize() if queue else "Opening…"
            text = f"<b>{head}</b>. Your lab opens by itself when a place frees."
            runs = follow.listing()
            if runs:
                links = ", ".join(f"<a href='?{follow.FOLLOW_ARG}={r.code}'>{r.code}</a> ({html.escape(r.label)})"
                                  for r in runs[:8])
                text += f" Meanwhile you can follow a shared run: {links}."
        elif self.mode in ("released", "releasing"):
            snap = self.saved[1] if self.saved else None
            step = f" from step {snap.step:,}" if snap is not None else ""
            text = (f"This tab's trainer was released after {_minutes(capacity.idle_seconds())} without training, so "
                    f"that others can train. ▶ Start (or ⇥ Step) brings your run back{step}.")
            if queue:
                text += f"<br>Waiting for a training place: {queue}."
        attrs = f"data-mode='{self.mode}' data-position='{pos}'"
        if self.followed is not None:
            attrs += f" data-following='{self.followed.code}' data-ended='{int(self.followed.ended)}'"
        html_text = f"<div class='khrbm-seat' {attrs}>{text}</div>" if text else ""
        if self.notice.object != html_text:
            self.notice.object = html_text
        if self.notice.visible != bool(text):
            self.notice.visible = bool(text)
        if self.copy_btn.visible != visible_copy:
            self.copy_btn.visible = visible_copy

    def close(self, trainer) -> None:
        """The tab closed: unlist its shared run (followers keep the closed ``trainer``), leave the run it
        followed, give its place (or its spot in the queue) back."""
        with self._lock:
            self._closed = True
            restored, self._restored = self._restored, None
        if restored is not None:
            session.close_in_background(restored, None, "restored for a closed tab")
        if self.shared is not None:
            self.shared.trainer = trainer if trainer is not None else self.shared.trainer
            follow.end(self.shared)
            log.info("session %s: shared run %s ended", self.sid, self.shared.code)
        if self.followed is not None:
            self.followed.leave(self.sid)
        self.pending = None
        if self.managed:
            capacity.SLOTS.release(self.sid)
