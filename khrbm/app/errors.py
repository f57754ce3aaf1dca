"""Messages for the person at the screen: which errors are theirs to fix, and how long a message may be."""
from __future__ import annotations

from ..config import ConfigError
from ..data import DataError


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
