"""C-2: the sheet the run will read — readable, its version and SHA-256, every row bound to a
step (or listed)."""

from __future__ import annotations

from pathlib import Path

from conformance.errors import ConformanceError
from conformance.preflight.lines import STEP_SHEET, CheckLine, Status, make_line


def check_sheet(sheet: Path | None, suite_dir: Path | None = None, bindings: Path | None = None,
                *, cwd: Path | None = None) -> list[CheckLine]:
    """C-2: the sheet the run will read (``--sheet``, else the suite's bundled one), its
    version and SHA-256, and whether every row binds to a step."""
    from conformance.binding import bind_cases, load_bindings_file
    from conformance.sheet import read_sheet
    from conformance.suite import default_suite_dir, load_suite

    suite_dir = suite_dir or default_suite_dir(cwd)
    try:
        suite = load_suite(suite_dir)
    except ConformanceError as exc:
        return [make_line(STEP_SHEET, "sheet.read", Status.FAIL, f"Testtrinnene kan ikke lastes: {exc.message}",
                          exc.hint)]
    sheet = sheet or suite.sheet
    try:
        info, specs = read_sheet(sheet)
    except ConformanceError as exc:
        return [make_line(STEP_SHEET, "sheet.read", Status.FAIL, f"Testarket kan ikke leses: {exc.message}",
                          exc.hint or "Bruk arket Bits sendte (--sheet).", file=str(sheet))]
    lines = [make_line(STEP_SHEET, "sheet.read", Status.OK,
                       f"Testark {info.file_name}, versjon {info.version or 'ukjent'}, "
                       f"SHA-256 {info.sha256}, {len(specs)} rader.",
                       file=str(sheet), version=info.version, sha256=info.sha256, rows=len(specs))]
    try:
        overrides = load_bindings_file(bindings) if bindings else None
        cases = bind_cases(specs, suite.registry, overrides)
    except ConformanceError as exc:
        lines.append(make_line(STEP_SHEET, "sheet.binding", Status.FAIL,
                               f"Radene kan ikke bindes: {exc.message}", exc.hint))
        return lines
    unbound = [c for c in cases if not c.binding and not c.manual]
    manual = [c.case_id for c in cases if c.manual]
    automated = len(cases) - len(unbound) - len(manual)
    summary = f"{automated} automatisert, {len(manual)} manuelle"
    if not unbound:
        lines.append(make_line(STEP_SHEET, "sheet.binding", Status.OK,
                               f"Alle rader er bundet: {summary}.", manual=manual))
    else:
        listed = ", ".join(f"{c.case_id} (rad {c.row})" for c in unbound)
        lines.append(make_line(STEP_SHEET, "sheet.binding", Status.WARN,
                               f"{len(unbound)} rader blir «Ikke automatisert» og hindrer C-3: "
                               f"{listed}; {summary}.",
                               "Bind dem med --bindings FIL ({bindings = {\"<id>\" = \"<steg>\"}}); "
                               "«kfr-conformance sheet ARK» viser stegene.",
                               unbound=[c.case_id for c in unbound], manual=manual))
    return lines
