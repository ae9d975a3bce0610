"""Headless Chromium for the tests that render our pages (report, archive site).

The flags keep Chromium off this machine's closed network (background requests would be
refused many at a time) and away from any real profile.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def chromium() -> str:
    """The Chromium binary, or skip the test with the reason."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.skip("chromium is not installed (/usr/bin/chromium missing)")
    return found


def headless(binary: str, profile: Path, page: Path, *action: str) -> str:
    """Run one headless action (--screenshot=…, --print-to-pdf=…, --dump-dom) on ``page``;
    returns what Chromium printed (the DOM for --dump-dom)."""
    result = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *action, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return result.stdout
