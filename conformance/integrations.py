"""The tools people open a run's results in: JUnit XML (CI servers) and Allure.

Registered by ``conformance.plugin`` (``pytest_plugins``), active only for the rows of the
integration-test sheet (items marked ``kfr_case``); the project's own tests are untouched.

- JUnit XML (``--junitxml``): each row's testcase is named by its id *and* title
  (``KFR-16: Registrer kundeforhold på en annen banks fid``), and a row that did not pass
  carries ``kfr_referanse`` properties: where its error code or topic is explained.
- Allure (``--alluredir``): the same name; a row that *failed* (KFR answered otherwise
  than the sheet expects) shows as *failed*, while *Feil i miljø* (5xx, timeouts) stays
  *broken*, which is what Allure means by it; links to the explanation of a failure;
  ``environment.properties`` with bank, environment, sheet and its SHA-256, tool version
  and run id for Allure's environment panel, and ``categories.json`` naming the two kinds
  of trouble in Norwegian.

The rows' own data comes from what pytest carries anyway: the item's ``reportinfo`` (id
and title), the ``CaseResult`` the plugin puts in ``user_properties`` or on the exception
it raises, and the plugin's run state for the environment panel (read defensively: a
field it no longer has is left out, never a failure of the run).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from conformance import __version__
from conformance.models import CaseResult, Outcome
from conformance.references import Reference, references_for

__all__ = [
    "CASE_MARKER",
    "allure_categories",
    "allure_environment",
    "case_name",
    "write_allure_environment",
]

CASE_MARKER = "kfr_case"
JUNIT_REFERENCE_PROPERTY = "kfr_referanse"
ENVIRONMENT_FILE = "environment.properties"
CATEGORIES_FILE = "categories.json"


# --- the row behind an item or a report ---------------------------------------------------


def _is_case_item(item: pytest.Item) -> bool:
    return item.get_closest_marker(CASE_MARKER) is not None


def _is_case_report(report: pytest.TestReport) -> bool:
    return CASE_MARKER in getattr(report, "keywords", {})


def case_name(domain: str) -> str:
    """The name a row gets in JUnit and Allure from its ``reportinfo`` domain ("KFR-01:
    Token fra Maskinporten"): id and title, on one line."""
    return " ".join(str(domain).split())


def _result_from(value: Any) -> CaseResult | None:
    if isinstance(value, CaseResult):
        return value
    try:
        data = json.loads(value) if isinstance(value, str | bytes) else value
        if isinstance(data, dict) and {"case_id", "outcome", "expected"} <= data.keys():
            return CaseResult.from_dict(data)
    except (ValueError, TypeError, KeyError):
        pass
    return None


def _result_in(properties: Iterable[tuple[str, Any]]) -> CaseResult | None:
    """The row's result among ``user_properties`` (whatever name the plugin gives it)."""
    for _name, value in properties:
        result = _result_from(value)
        if result is not None:
            return result
    return None


def _reference_text(reference: Reference) -> str:
    text = f"{reference.label} – {reference.source}"
    return f"{text} ({reference.url})" if reference.url else text


# --- Allure ------------------------------------------------------------------------------


def _allure() -> Any | None:
    """The ``allure`` API when allure-pytest is installed (it is a test extra)."""
    try:
        import allure
    except ImportError:
        return None
    return allure


@cache
def _as_failure(exception_type: type[BaseException]) -> type[BaseException]:
    """``exception_type`` that is also an AssertionError: Allure reports an assertion as
    *failed*, anything else as *broken*."""
    return type(
        exception_type.__name__,
        (exception_type, AssertionError),
        {"__module__": exception_type.__module__, "__doc__": exception_type.__doc__},
    )


def _mark_as_failure(exc: BaseException) -> None:
    if isinstance(exc, AssertionError):
        return
    with contextlib.suppress(TypeError):  # a built-in type cannot change class; leave it
        exc.__class__ = _as_failure(type(exc))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    if not _is_case_item(item):
        return (yield)
    allure = _allure()
    if allure is not None:
        allure.dynamic.title(case_name(item.reportinfo()[2]))
    try:
        return (yield)
    except BaseException as exc:
        result = _result_from(getattr(exc, "result", None))
        if result is not None:
            if result.outcome is Outcome.FAILED:
                _mark_as_failure(exc)
            if allure is not None:
                _allure_references(allure, references_for(result))
        raise


def _allure_references(allure: Any, references: list[Reference]) -> None:
    """Links for the references that have a page; every one named in the description."""
    for reference in references:
        if reference.url:
            allure.dynamic.link(reference.url, name=reference.label)
    if references:
        allure.dynamic.description(
            "Se også:\n\n" + "\n".join(f"- {_reference_text(r)}" for r in references)
        )


def allure_environment(state: Any) -> dict[str, str]:
    """What Allure's environment panel shows for a run: bank, environment, sheet, tool."""
    env = getattr(state, "env", None)
    info = getattr(state, "sheet_info", None)
    sheet_path = getattr(state, "sheet_path", None)
    env_name = getattr(env, "env_name", None)
    values = {
        "Bank": f"{getattr(state, 'bank_name', '')} ({getattr(state, 'bank_orgnr', '')})",
        "Miljø": (
            "test (Bits' testmiljø)" if env_name == "test"
            else f"{env_name} (SANDBOX – ikke onboardingbevis)" if env_name else ""
        ),
        "KFR base-URL": getattr(env, "kfr_base_url", ""),
        "Maskinporten-utsteder": getattr(env, "maskinporten_issuer", ""),
        "Testark": Path(sheet_path).name if sheet_path else "",
        "Arkversjon": getattr(info, "version", "") or "",
        "Testark SHA-256": getattr(info, "sha256", "") or "",
        "Kjørings-ID": getattr(env, "run_id", ""),
        "Verktøy": f"kfr-conformance {__version__}",
    }
    return {key: str(value) for key, value in values.items() if value and value != " ()"}


def _properties_escape(text: str, *, key: bool = False) -> str:
    """Java .properties escaping: Allure reads the file as ISO-8859-1, so everything else
    is a \\uXXXX escape; in a key, spaces, ':' and '=' are escaped too."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[char])
        elif key and char in " :=#!":
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) > 0x7E:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def allure_categories() -> list[dict[str, Any]]:
    """Allure's two kinds of trouble, named as the report names them."""
    return [
        {
            "name": "Feilet – svaret avvek fra testarkets forventning",
            "matchedStatuses": ["failed"],
        },
        {
            "name": "Feil i miljø – testmiljøet svarte ikke som det skal (5xx, tidsavbrudd)",
            "matchedStatuses": ["broken"],
        },
    ]


def write_allure_environment(alluredir: Path, values: dict[str, str]) -> Path:
    """Write ``environment.properties`` (and ``categories.json``) into ``alluredir``."""
    alluredir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{_properties_escape(key, key=True)}={_properties_escape(value)}"
        for key, value in values.items()
    ]
    target = alluredir / ENVIRONMENT_FILE
    target.write_text("\n".join(lines) + "\n", encoding="ascii")
    (alluredir / CATEGORIES_FILE).write_text(
        json.dumps(allure_categories(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return target


def _run_state(config: pytest.Config) -> Any | None:
    try:
        from conformance.plugin import STATE
    except ImportError:  # the plugin is being rebuilt: no panel rather than no run
        return None
    return config.stash.get(STATE, None)


@pytest.hookimpl(trylast=True)  # after the plugin configured the run
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    alluredir = getattr(config.option, "allure_report_dir", None)
    if not alluredir or hasattr(config, "workerinput"):
        return
    state = _run_state(config)
    if state is None:
        return
    with contextlib.suppress(OSError):  # allure-pytest itself reports an unusable folder
        write_allure_environment(Path(alluredir), allure_environment(state))


# --- JUnit XML ---------------------------------------------------------------------------


def _junit_xml(config: pytest.Config) -> Any | None:
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # a pytest without it: the default names stay
        return None
    return config.stash.get(xml_key, None)


class _JunitNames:
    """Names each row's testcase in the JUnit XML by id and title (on the controller,
    where the XML is written; also for rows run by xdist workers)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)  # before LogXML records the report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not _is_case_report(report):
            return
        xml = _junit_xml(self.config)
        if xml is None:
            return
        reporter = xml.node_reporter(report)
        domain = report.location[2] if report.location else ""
        if domain:
            # Attributes set before LogXML records a report survive it ("user-defined").
            reporter.add_attribute("name", case_name(domain))
        if report.when == "call":
            result = _result_in(report.user_properties)
            for reference in references_for(result) if result is not None else ():
                reporter.add_property(JUNIT_REFERENCE_PROPERTY, _reference_text(reference))


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_JunitNames(config), "kfr_conformance_junit_names")
