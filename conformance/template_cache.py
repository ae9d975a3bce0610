"""Compiled jinja2 templates kept under the tool's home, so a run does not compile them again.

Compiling the report's two templates took 0.15–0.2 s of every run. jinja2's
``FileSystemBytecodeCache`` keeps the compiled code, keyed by template name and file and
checked against a hash of the source, so an edited template is compiled afresh. Around it:

- it can never fail a run: a home that is missing, read-only, full or on a broken share
  means no cache (compile as before), and a damaged cache file is compiled over;
- a cache file is Python code (marshal) behind a pickle, so it is only read from a folder
  and a file that belong to the user running the tool and that nobody else can write
  (the rule jinja2 applies to its own default folder); a shared or foreign cache is ignored;
- the file name carries a tag of the jinja2 version, the Python version and the
  environment's options (which change the generated code but not jinja2's own key).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
from typing import Any

import jinja2
from jinja2.bccache import Bucket

from conformance.home import template_cache_dir


def _ours(st: os.stat_result) -> bool:
    """Owned by this user and not writable by group or others."""
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()


class SafeBytecodeCache(jinja2.FileSystemBytecodeCache):
    """``FileSystemBytecodeCache`` that reads only files of our own and never raises."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)  # a planted symlink is not followed
            fd = os.open(self._get_cache_filename(bucket), flags)
        except OSError:
            return
        with os.fdopen(fd, "rb") as f:
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and _ours(st):
                    bucket.load_bytecode(f)
            except Exception:  # a truncated or foreign file: compile instead
                bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        # Read-only or full: the compiled template is simply not kept.
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def bytecode_cache(name: str, options: dict[str, Any]) -> jinja2.BytecodeCache | None:
    """A cache for the environment ``name`` built with ``options``, or None when the home
    cannot hold one safely (then templates are compiled on every run, as before)."""
    try:
        directory = template_cache_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(directory)
    except (OSError, RuntimeError):  # RuntimeError: no home directory can be found
        return None
    if not stat.S_ISDIR(st.st_mode) or not _ours(st):
        return None
    flavour = repr((jinja2.__version__, sys.version_info[:2], sorted(options.items(), key=str)))
    tag = hashlib.sha256(flavour.encode()).hexdigest()[:16]
    return SafeBytecodeCache(str(directory), f"{name}-{tag}-%s.cache")
