"""What the sessions of one server process share: the registry of live trainers, closing a trainer off
the event loop, the app's logger, and the local resource URLs of a session's page.

This module is imported once per server process, so its state survives a session's teardown (when
``on_session_destroyed`` callbacks run).
"""
from __future__ import annotations

import logging
import sys
import threading
import traceback

import panel as pn

REGISTRY_KEY = "khrbm_live_trainers"

log = logging.getLogger("khrbm.app")
if not log.handlers:
    _h = logging.StreamHandler(sys.stderr)
    _h.setFormatter(logging.Formatter("%(asctime)s khrbm.app %(levelname)s: %(message)s"))
    log.addHandler(_h)
    log.setLevel(logging.INFO)
    log.propagate = False

_REGISTRY_LOCK = threading.Lock()
CLOSER = "khrbm-app-close"        # the name of the threads of close_in_background


def _registry() -> dict:
    """session id -> Trainer of every open tab in this server process (shared by all sessions)."""
    return pn.state.cache.setdefault(REGISTRY_KEY, {})


def live_trainers() -> int:
    with _REGISTRY_LOCK:
        return len(_registry())


def register(session_id: str, trainer) -> None:
    with _REGISTRY_LOCK:
        _registry()[session_id] = trainer


def unregister(session_id: str) -> None:
    with _REGISTRY_LOCK:
        _registry().pop(session_id, None)


def close_in_background(trainer, session_id: str | None, why: str):
    """Close ``trainer`` off the event loop (close() joins its thread, which may be compiling), then drop
    it from the registry if it is still the one registered for ``session_id``. The log line counts the
    trainers and the khrbm threads left (a closed tab leaves none)."""
    def run():
        try:
            trainer.close(timeout=120)
        except Exception:  # noqa: BLE001
            log.error("closing a trainer failed:\n%s", traceback.format_exc())
        with _REGISTRY_LOCK:      # counted and logged in turn: the last line has the last count
            if session_id is not None and _registry().get(session_id) is trainer:
                del _registry()[session_id]
            log.info("session %s: trainer closed (%s); live trainers: %d; khrbm threads: %d", session_id, why,
                     len(_registry()), khrbm_threads())
    threading.Thread(target=run, name=CLOSER, daemon=True).start()


def khrbm_threads() -> int:
    """Threads of this process started by khrbm and still at work: trainers' loops and the app's workers (all
    named "khrbm-..."), not the threads that only log a closed trainer on their way out."""
    return sum(1 for t in threading.enumerate() if t.name.startswith("khrbm-") and t.name != CLOSER)


def connections(doc) -> int | None:
    """Browser connections to the served session of ``doc`` (None in a notebook)."""
    ctx = getattr(doc, "session_context", None)
    server_session = getattr(ctx, "session", None)
    return None if server_session is None else server_session.connection_count


def periodic(callback, period_ms: int):
    """Call ``callback`` every ``period_ms`` on the session's event loop, as ``pn.state.add_periodic_callback``
    but in the background: Panel's busy indicator is left alone. (Each foreground call sets the process-wide
    ``pn.state.busy`` twice, which redraws the busy indicator of every open tab: measured with py-spy at a
    quarter of the server's event loop with one trainer and four followers; benchmarks/bench_sessions.py.)"""
    from panel.io.callbacks import PeriodicCallback
    cb = PeriodicCallback(callback=callback, period=period_ms, background=True, log=False)
    cb.start()
    return cb


def served() -> bool:
    """True in a served page (`panel serve`, `khrbm serve`), False in a notebook."""
    doc = pn.state.curdoc
    return doc is not None and getattr(doc, "session_context", None) is not None


def query_args() -> dict:
    """The query of the page's URL as Panel gives it (name -> list of bytes); empty in a notebook."""
    return dict(pn.state.session_args or {}) if served() else {}


def session_id() -> str:
    return pn.state.curdoc.session_context.id if served() else f"local-{id(pn.state.curdoc)}"


SWITCH_INTERVAL = 0.001   # s: how long a thread waiting for the GIL waits before it asks for it (Python: 0.005)


def share_the_gil() -> None:
    """A served process: the event loop (every tab's redraw and sending) and the trainers' threads hand the
    GIL to each other within SWITCH_INTERVAL. With Python's 5 ms, each socket write of the event loop and
    each return of a trainer from a Numba kernel (which runs without the GIL) waited up to 5 ms for the other
    thread's Python code: in a class of 30 followers (bench_sessions.py, py-spy), the event loop spent most
    of its wall time waiting (18 % of a core of CPU, ~100 % busy), in ``socket.send`` and in trivial calls."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))


def local_resources():
    """Give the session's document its local resource URL before any component is built.

    Panel sets ``dist_url`` only when it renders the page, and patches the models that exist then. Seen
    here with Panel 1.9.4 (also in a bare BootstrapTemplate app): now and then the first page of a fresh
    server is sent with every stylesheet still pointing at cdn.holoviz.org, which an offline classroom
    cannot reach (and the browser logs an error per file). Models created with ``dist_url`` already set
    get local URLs from the start.
    """
    try:
        from panel.io.resources import LOCAL_DIST
        doc = pn.state.curdoc
        if doc is not None:
            rel = pn.state.rel_path
            doc._template_variables.setdefault("dist_url", f"{rel}/{LOCAL_DIST}" if rel else LOCAL_DIST)
    except Exception:  # noqa: BLE001 - a Panel without these internals: keep its default behaviour
        pass
