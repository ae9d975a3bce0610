"""Where kfr-conformance keeps its state: ``$KFR_CONFORMANCE_HOME`` (default ``~/.kfr-conformance``)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "KFR_CONFORMANCE_HOME"


def conformance_home() -> Path:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".kfr-conformance"


def default_sandbox_dir() -> Path:
    """The sandbox's data folder: its SQLite database and its test CA live here."""
    return conformance_home() / "sandbox"


def default_archive_dir() -> Path:
    return conformance_home() / "archive"


def template_cache_dir() -> Path:
    """Compiled report templates (``conformance.template_cache``); safe to delete."""
    return conformance_home() / "cache" / "templates"
