"""The run registry (one SQLite file), run folders, and the recorders that keep both up to date.

- :mod:`.db`: where the file lives (``KHRBM_REGISTRY``, else the user's data directory), WAL, migrations.
- :mod:`.registry`: :class:`Registry` — runs, changes, metric points, named setups, lessons.
- :mod:`.folder`: a run folder's ``run.json``, :func:`import_folder`, :func:`open_run` (a past run read back).
- :mod:`.recorder`: :class:`RunRecorder` (``khrbm train``, sweeps), :class:`TrainerRecorder` (the app).
"""
from .db import SCHEMA_VERSION, RegistryError, default_path
from .folder import Decimator, FolderError, RunView, import_folder, open_run
from .recorder import RunRecorder, TrainerRecorder
from .registry import STATES, Registry, RunRecord, Setup, StoredLesson, describe_config

__all__ = ["SCHEMA_VERSION", "STATES", "Decimator", "FolderError", "Registry", "RegistryError", "RunRecord",
           "RunRecorder", "RunView", "Setup", "StoredLesson", "TrainerRecorder", "default_path", "describe_config",
           "import_folder", "open_run"]
