"""A suite folder: its bundled sheet and its step registry.

A suite (``testcases/`` for KFR; another DSOP service would be a sibling folder) holds
exactly one bundled ``*.xlsx`` and a ``steps.py`` (or one ``*_steps.py``) whose
``REGISTRY`` is a :class:`~conformance.steps.StepRegistry`. The engine knows nothing
else about a suite.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from conformance.errors import UsageError
from conformance.steps import StepRegistry

__all__ = ["Suite", "default_suite_dir", "load_suite"]

STEPS_MODULE = "steps.py"


@dataclass(frozen=True)
class Suite:
    directory: Path
    sheet: Path
    registry: StepRegistry
    name: str


def default_suite_dir(cwd: Path | None = None) -> Path:
    """``./testcases`` when it exists, else the ``testcases`` folder of this checkout."""
    local = (cwd or Path.cwd()) / "testcases"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "testcases"


def _bundled_sheet(directory: Path) -> Path:
    # "~$name.xlsx" is Excel's lock file while the sheet is open; filled copies are results.
    sheets = sorted(
        p
        for p in directory.glob("*.xlsx")
        if p.is_file() and not p.name.startswith("~$") and "-utfylt" not in p.stem
    )
    if len(sheets) != 1:
        found = ", ".join(p.name for p in sheets) or "ingen"
        raise UsageError(
            f"Suite-mappen «{directory}» skal ha nøyaktig ett testark (.xlsx); fant {found}.",
            hint="Legg det medfølgende testarket i mappen, eller pek på et annet med --sheet.",
        )
    return sheets[0]


def _steps_file(directory: Path) -> Path:
    preferred = directory / STEPS_MODULE
    if preferred.is_file():
        return preferred
    candidates = sorted(p for p in directory.glob("*_steps.py") if p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    raise UsageError(
        f"Suite-mappen «{directory}» har ingen {STEPS_MODULE} med stegene (REGISTRY).",
        hint="Stegene som kjører hver rad ligger i testcases/steps.py.",
    )


def _import(path: Path) -> ModuleType:
    # One module per file, cached: loading a suite twice gives the same REGISTRY object.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_conformance_suite_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"Kan ikke laste stegene fra «{path}».")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken steps file: say which, keep the cause for --verbose
        del sys.modules[name]
        raise UsageError(
            f"Stegene i «{path}» kan ikke lastes: {type(exc).__name__}: {exc}.",
            hint="Kjør med --verbose for hele feilmeldingen.",
        ) from exc
    return module


def load_suite(directory: Path) -> Suite:
    """Load the suite in ``directory``; :class:`UsageError` when it is not a suite."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(
            f"Finner ikke suite-mappen «{directory}».",
            hint="Oppgi mappen med testarket og steps.py med --suite.",
        )
    sheet = _bundled_sheet(directory)
    module = _import(_steps_file(directory))
    registry = getattr(module, "REGISTRY", None)
    if not isinstance(registry, StepRegistry):
        raise UsageError(
            f"«{module.__file__}» har ingen REGISTRY (en StepRegistry).",
            hint="steps.py skal ha REGISTRY = StepRegistry() og registrere stegene på den.",
        )
    name = getattr(module, "SUITE_NAME", None) or sheet.stem
    return Suite(directory=directory, sheet=sheet, registry=registry, name=str(name))
