"""The registry's SQLite file: where it lives, how it is opened, and its schema with forward migrations.

Location: ``$KHRBM_REGISTRY`` if set, else ``$XDG_DATA_HOME/khrbm/registry.sqlite`` (``~/.local/share/khrbm/``
when XDG_DATA_HOME is unset); the CLI's ``--registry PATH`` wins over both.

Opening (:func:`connect`): WAL journal (readers never block the one writer, a writer killed mid-transaction
leaves the file intact), ``synchronous=FULL`` (a committed transaction survives a crash of the process or of
the machine), a busy timeout (``timeout`` seconds, default ``$KHRBM_REGISTRY_TIMEOUT`` or 5) for writers that
queue behind each other, foreign keys on. WAL needs shared memory between the writers, so the file must be
on a local disk: sweep workers on other machines write their run folders, and ``khrbm runs import`` adds them.

Schema: ``PRAGMA user_version`` is the version; ``MIGRATIONS[v]`` takes version v to v + 1, inside one
``BEGIN IMMEDIATE`` transaction (so concurrent openers migrate once). A file from a newer khrbm is refused,
never touched.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

ENV_PATH = "KHRBM_REGISTRY"
ENV_TIMEOUT = "KHRBM_REGISTRY_TIMEOUT"
DEFAULT_TIMEOUT = 5.0

# MIGRATIONS[v]: the statements that take a database at version v to v + 1 (never edit a shipped entry).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: runs, their live changes and their (decimated) metric points
    ("""CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL UNIQUE,            -- stable across machines and re-imports
            group_uid TEXT NOT NULL DEFAULT '',  -- the arms of one A/B (or one sweep) share it
            arm TEXT NOT NULL DEFAULT '',        -- 'A' / 'B' for the arms of an A/B, else ''
            source TEXT NOT NULL,                -- app, train, sweep, import
            state TEXT NOT NULL,                 -- running, finished, diverged, error, interrupted
            message TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL,                -- the RunConfig (JSON) the run started from
            started REAL NOT NULL,               -- Unix time
            ended REAL,
            updated REAL NOT NULL,               -- last write by the recording process
            start_step INTEGER NOT NULL DEFAULT 0,
            steps INTEGER NOT NULL DEFAULT 0,
            epoch REAL NOT NULL DEFAULT 0,
            final TEXT,                          -- the latest metric point (JSON)
            out_dir TEXT,
            checkpoint TEXT,
            host TEXT NOT NULL DEFAULT '',
            pid INTEGER)""",
     "CREATE INDEX runs_by_start ON runs (started)",
     """CREATE TABLE changes (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,                -- position in the run's change log
            step INTEGER NOT NULL,
            epoch REAL NOT NULL,
            field TEXT NOT NULL,
            old TEXT,                            -- JSON values
            new TEXT,
            PRIMARY KEY (run_id, seq)) WITHOUT ROWID""",
     """CREATE TABLE points (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            metrics TEXT NOT NULL,               -- JSON object: epoch, eps, val_mse, ... (NaN as null)
            PRIMARY KEY (run_id, step)) WITHOUT ROWID"""),
    # v2: named setups and lessons; the lesson a run played
    ("ALTER TABLE runs ADD COLUMN lesson TEXT",
     """CREATE TABLE setups (
            name TEXT PRIMARY KEY COLLATE NOCASE,
            comment TEXT NOT NULL DEFAULT '',
            config_a TEXT NOT NULL,
            config_b TEXT,                       -- NULL: a single run
            created REAL NOT NULL,
            updated REAL NOT NULL)""",
     """CREATE TABLE lessons (
            name TEXT PRIMARY KEY COLLATE NOCASE,
            comment TEXT NOT NULL DEFAULT '',
            body TEXT NOT NULL,                  -- the lesson as JSON
            created REAL NOT NULL,
            updated REAL NOT NULL)"""),
)
SCHEMA_VERSION = len(MIGRATIONS)


class RegistryError(RuntimeError):
    """The registry cannot be opened, read or written; ``str(err)`` is one line naming the file and why."""


def default_path() -> Path:
    """Where the registry lives unless told otherwise (see the module docstring)."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "khrbm" / "registry.sqlite"


def default_timeout() -> float:
    try:
        return float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def explain(exc: BaseException, path: Path, timeout: float) -> RegistryError:
    """A one-line RegistryError for an sqlite3/OS error on the registry at ``path``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "locked" in low or "busy" in low:
        why = f"locked by another process for more than {timeout:g} s"
    elif "not a database" in low or "malformed" in low or "disk image" in low:
        why = f"not a readable khrbm registry (corrupt, or another kind of file: {text})"
    elif "readonly" in low or "read-only" in low:
        why = "read-only"
    elif "unable to open" in low:
        why = "cannot be opened or created there"
    else:
        why = text
    return RegistryError(f"registry {path}: {why}")


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the registry at ``path``; RegistryError if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise explain(exc, path, timeout) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        refuse_newer(conn, path)                 # before WAL mode changes the file's header
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise explain(exc, path, timeout) from None
    except RegistryError:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def refuse_newer(conn: sqlite3.Connection, path) -> int:
    """The schema version; RegistryError if a newer khrbm wrote the file (it is then left untouched)."""
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise RegistryError(f"registry {path}: schema version {found} is from a newer khrbm (this one knows "
                            f"up to {SCHEMA_VERSION}): upgrade khrbm, or point {ENV_PATH} at another file")
    return found


def migrate(conn: sqlite3.Connection, path: Path | str = "", target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to version ``target`` (one transaction); returns the version found before."""
    found = refuse_newer(conn, path)
    if found >= target:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)             # another process may have migrated meanwhile
        for version in range(found, target):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {max(found, target)}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return found


def rollback(conn: sqlite3.Connection) -> None:
    """End the open transaction, if any, without its changes (quietly: it may be gone already)."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
