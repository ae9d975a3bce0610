"""Writes a benchmark's figures into its section of docs/performance.md (shared by the
benchmark scripts: each owns one "## …" section and replaces it whole, or appends it)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def write_section(title: str, text: str, doc: Path = DOC) -> None:
    """Replace the section headed ``title`` (up to the next "## " heading) with ``text``."""
    current = doc.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(title) + r"\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _: text.rstrip() + "\n", current)
    else:
        current = current.rstrip() + "\n\n" + text
    doc.write_text(current, encoding="utf-8")


def publish(title: str, lines: list[str], write: bool) -> None:
    """Print a benchmark's section and, with ``write``, put it into docs/performance.md."""
    text = "\n".join(lines)
    print()
    print(text)
    if write:
        write_section(title, text)
