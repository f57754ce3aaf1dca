"""Messages for the person at the screen: which errors are theirs to fix, how long a message may be, and
:func:`guarded`, which turns a callback's exception into such a message."""
from __future__ import annotations

import functools
import logging
import traceback

from ..config import ConfigError
from ..data import DataError

log = logging.getLogger("khrbm.app")


class UserError(Exception):
    """A message for the person at the screen (bad file, unavailable dataset ...)."""


# shown as they are (one line that names the field or file); anything else is a bug: type name + log
KNOWN = (UserError, ConfigError, DataError, ValueError, KeyError)


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, KNOWN) else f"{type(exc).__name__}: {exc}"


def short_message(msg: str, limit: int = 220) -> str:
    """One screen line or two: drop the list of searched folders of a data error, cap the length."""
    msg = str(msg).split("; searched:")[0].strip()
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def guarded(fn):
    """Never let a callback exception reach Bokeh: ``self.error(message)`` shows it (the status area and the
    notifications); an unexpected one is also logged with its traceback."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the server must keep running
            if not isinstance(exc, KNOWN):
                log.error("callback %s failed:\n%s", fn.__name__, traceback.format_exc())
            self.error(describe(exc))
    return wrapper
