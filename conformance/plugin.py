"""pytest plugin: ``pytest --bank=<orgnr>`` runs the KFR integration-test sheet.

Each sheet row becomes one pytest item named by its case id, so ``-k``, ``-x``, ``--lf``,
``--junitxml`` and ``-n 4`` work. Without ``--bank`` the plugin stays inert (the project's
own tests run as usual) unless KFR options or the sheet are named, which is a usage error.

Where things happen:
- ``pytest_configure`` (controller): options + profile → ``RunConfig``; start the embedded
  sandbox and issue the bank's credentials when needed; create the results folder.
- workers (xdist) receive the environment through ``workerinput`` and build their own
  clients; every process journals its own exchanges and writes each case's evidence file.
- outcomes travel to the controller in ``report.user_properties``; only the controller
  (no ``workerinput``) writes run.json, the filled sheet, the report and the pack.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import platform
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conformance import __version__
from conformance.errors import ConformanceError, UsageError
from conformance.models import CaseResult, CaseSpec, Outcome, RunRecord
from conformance.profile import PROFILE_FILE

pytest_plugins = ["conformance.integrations"]  # JUnit and Allure names, statuses, links
RESULT_PROPERTY = "kfr_case_result"
ROBUSTNESS_PROPERTY = "kfr_robustness_result"
WORKERINPUT_KEY = "kfr_conformance"
USAGE = "kfr-conformance: --bank=<organisasjonsnummer> mangler (f.eks. pytest --bank=311000004)"

_KFR_OPTIONS = (
    "sheet", "bindings", "kfr_env", "kfr_base_url", "maskinporten_url", "client_id", "cert",
    "manual", "tester", "tester_role",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kfr", "KFR integrasjonstest (kfr-conformance)")
    add = group.addoption
    add("--bank", metavar="ORGNR", help="bankens organisasjonsnummer: kjører integrasjonstest-arket som denne banken")
    add("--sheet", metavar="PATH", help="et annet integrasjonstest-ark enn det medfølgende")
    add("--suite", metavar="DIR", help="mappe med testtrinnene (standard: testcases/)")
    add("--bindings", metavar="FILE", help="TOML/JSON som binder rader til testtrinn: {bindings = {\"<id>\" = \"<trinn>\"}}")
    add("--kfr-env", choices=["sandbox", "test"], help="sandbox (innebygd, standard) eller test (Bits' testmiljø)")
    add("--kfr-base-url", metavar="URL", help="KFR base-URL (standard: Bits' testmiljø for --kfr-env=test)")
    add("--maskinporten-url", metavar="URL", help="Maskinporten-utsteder (issuer), med avsluttende /")
    add("--client-id", metavar="ID", help="klient-ID i Maskinporten")
    add("--cert", metavar="PATH", help="virksomhetssertifikat: PKCS#12 (.p12/.pfx) eller PEM")
    add("--key", metavar="PATH", help="privat nøkkel (PEM) når --cert er et PEM-sertifikat uten nøkkel")
    add("--cert-password-env", metavar="VAR", help="miljøvariabel som holder passordet til --cert")
    add("--signing-cert", metavar="PATH", help="eget signeringssertifikat for resultatpakken")
    add("--signing-cert-password-env", metavar="VAR", help="miljøvariabel med passordet til --signing-cert")
    add("--ca-bundle", metavar="PEM", help="CA-bundle for TLS (f.eks. bak TLS-inspiserende proxy)")
    add("--alt-scope", metavar="SCOPE", help="et scope klienten har som IKKE er skrivescope (for KFR-002-testen)")
    add("--reports-dir", metavar="DIR", help="hvor resultatene skrives (standard: reports/)")
    add("--manual", metavar="FILE", help="resultater for manuelle rader (TOML/JSON: status, comment, by)")
    add("--tester", metavar="NAME", help="hvem som utfører testen (attestasjon)")
    add("--tester-role", metavar="ROLE", help="rollen til den som utfører testen")
    add("--contact", metavar="ADDR", help="kontaktperson (e-post) i C-3-e-posten")
    add("--bank-name", metavar="NAME", help="bankens navn (standard: fra profil eller sertifikat)")
    add("--profile", metavar="FILE", help=f"profilfil (standard: {PROFILE_FILE} i prosjektroten)")
    add("--sandbox-data-dir", metavar="DIR", help="datamappe for den innebygde sandkassen")
    add("--realistic", action="store_true", default=None, help="den innebygde sandkassen svarer som Bits' testmiljø: en API-gateway foran KFR (gateway-svar ved autentiseringsfeil, struping, 5xx)")
    add("--ingest-rate", type=float, metavar="N", help="sandkassens innlesingstakt (ID-er/s, standard 250 som KFR)")
    add("--no-pack", action="store_true", help="ikke bygg signert resultatpakke")
    add("--test-ids", metavar="FILE", help="bankens egne testidentiteter (én per linje: fødselsnummer, D-nummer, organisasjonsnummer) i stedet for syntetiske")
    add("--resume", metavar="KJØRINGS-ID", help="fortsett en tidligere kjøring (samme pakke): radene som velges (-k, --lf) kjøres på nytt, resten beholdes")
    add("--tsa-url", metavar="URL", help="tidsstempeltjeneste (RFC 3161) for signaturen på pakken (standard i sandkassen: sandkassens egen)")
    add("--core-system", action="append", metavar="MAL",
        help="la bankens kjernesystem utføre radene det kan, gjennom opptaksgatewayen: én kommando for alle "
             "handlinger (får «open ID --from DATO», «close ID» eller «batch ID[#DATO] …» lagt til), "
             "«open=MAL»/«close=MAL»/«batch=MAL» per handling (plassholdere {customer_id}, {date}, {entries}, "
             "{customers}, {file}, {kfr_base_url}, {bank}, {case_id}), eller «guided» (du gjør det selv, med nedtelling)")
    add("--core-system-hook", metavar="URL", help="kjernesystemets testhook: handlingene sendes som JSON med POST hit")
    add("--core-system-timeout", type=float, metavar="SEK", help="hvor lenge det ventes på kjernesystemets forespørsel (standard 15 s, veiledet 300 s)")
    add("--robustness", action="store_true", default=None,
        help="kjør også robusthetsradene etter arket (503, 429, utløpt token, «finnes allerede»); rapporteres for seg, utenfor C-2")


# ------------------------------------------------------------------ state


@dataclass
class EnvironmentInfo:
    """What every process needs to talk to the environment (sent to xdist workers)."""

    env_name: str
    kfr_base_url: str
    maskinporten_issuer: str
    client_id: str
    cert_path: str
    key_path: str | None
    cert_password: str | None
    ca_bundle: str | None
    alt_scope: str | None
    results_dir: str
    run_id: str
    ingest_rate: float
    session: int = 1                         # > 1: a session of a run continued with --resume
    test_ids: str | None = None              # --test-ids: the bank's own identities
    core_system: dict[str, Any] | None = None  # CoreSystemSettings.to_dict(): the core system performs rows


@dataclass
class RunState:
    bank_orgnr: str
    bank_name: str
    sheet_path: Path
    suite_dir: Path
    bindings_path: Path | None
    manual: dict[str, dict[str, str]]
    env: EnvironmentInfo
    tester: str
    tester_role: str
    contact: str | None
    signing_cert: Path | None
    signing_cert_password: str | None
    is_controller: bool
    build_pack: bool
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    sandbox: Any = None
    session: Any = None                      # conformance.session.ProcessSession, lazily
    specs: list[CaseSpec] = field(default_factory=list)
    sheet_info: Any = None
    results: dict[str, CaseResult] = field(default_factory=dict)
    finish_notes: list[str] = field(default_factory=list)
    pack_result: Any = None
    record: RunRecord | None = None
    sheet_only: bool = True                  # no test paths given: run the sheet, not tests/
    sessions: list[dict[str, Any]] = field(default_factory=list)  # earlier sessions (--resume)
    session_started: dt.datetime | None = None
    ran_now: set[str] = field(default_factory=set)  # case ids run in this session
    tsa_url: str | None = None               # RFC 3161 TSA for the pack's signature
    gateway: Any = None                      # conformance.gateway.RunningGateway (--core-system)
    core_display: Any = None                 # where guided mode speaks (the terminal)
    invocation_dir: Path | None = None       # core-system commands run here
    robustness: dict[str, dict[str, Any]] = field(default_factory=dict)  # reported apart from the sheet

    @property
    def results_dir(self) -> Path:
        return Path(self.env.results_dir)

    @property
    def is_sandbox(self) -> bool:
        return self.env.env_name != "test"


STATE = pytest.StashKey[RunState]()


# ------------------------------------------------------------------ configuration


def _kfr_options_used(config: pytest.Config) -> bool:
    if any(config.getoption(name, None) for name in _KFR_OPTIONS):
        return True
    return any(str(arg).split("::")[0].endswith(".xlsx") or Path(str(arg)).name == "testcases"
               for arg in config.invocation_params.args if not str(arg).startswith("-"))


def _load_manual(path: Path | None) -> dict[str, dict[str, str]]:
    if path is None:
        return {}
    try:
        raw = path.read_text(encoding="utf-8")
        data = tomllib.loads(raw) if path.suffix.lower() == ".toml" else json.loads(raw)
    except FileNotFoundError as exc:
        raise pytest.UsageError(f"kfr-conformance: --manual-filen {path} finnes ikke") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise pytest.UsageError(f"kfr-conformance: --manual-filen {path} kan ikke leses: {exc}") from exc
    cases = data.get("cases", data) if isinstance(data, dict) else None
    if not isinstance(cases, dict) or not all(isinstance(v, dict) for v in cases.values()):
        raise pytest.UsageError(
            f"kfr-conformance: --manual-filen {path} må ha formen "
            '{"<case id>": {"status": "OK", "comment": "...", "by": "..."}}'
        )
    return {str(k): {kk: str(vv) for kk, vv in v.items()} for k, v in cases.items()}


_OPTION_NAMES = (
    "sheet", "suite", "bindings", "kfr_env", "kfr_base_url", "maskinporten_url", "client_id",
    "cert", "key", "cert_password_env", "signing_cert", "signing_cert_password_env",
    "ca_bundle", "alt_scope", "reports_dir", "manual", "tester", "tester_role", "contact",
    "bank_name", "sandbox_data_dir", "ingest_rate", "resume", "test_ids", "realistic", "tsa_url",
    "core_system", "core_system_hook", "core_system_timeout", "robustness",
)


def _configure_controller(config: pytest.Config, orgnr: str) -> RunState:
    from conformance.profile import load_settings, open_environment
    from conformance.runner import new_run_id, utc_now
    from conformance.suite import default_suite_dir, load_suite

    # Not config.rootpath: pytest may take a plugin option's value ("--reports-dir DIR")
    # for a test path when it guesses the rootdir; the invocation folder is unambiguous.
    here = config.invocation_params.dir
    options = {name: config.getoption(name) for name in _OPTION_NAMES}
    try:
        settings = load_settings(orgnr, options, cwd=here, profile=config.getoption("profile"))
        _core_system_options(config, settings)  # a bad core-system setting stops the run before any request
        suite_dir = settings.path("suite") or default_suite_dir(here)
        suite = load_suite(suite_dir)
        sheet = settings.path("sheet") or suite.sheet
        if not sheet.is_file():
            raise UsageError(f"Arket {sheet} finnes ikke.")
        previous = _previous_run(settings, config.getoption("resume"), sheet)
        if previous is not None and previous.is_sandbox and not settings.get("kfr_base_url"):
            # The embedded sandbox keeps its data; it must come back on the same address,
            # so that one pack names one environment.
            options["sandbox_port"] = urlsplit(previous.environment["kfr_base_url"]).port
            settings = load_settings(orgnr, options, cwd=here, profile=config.getoption("profile"))
        environment = open_environment(settings)
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: {exc.diagnostics()}") from exc
    try:
        # Fail fast (one token and one KFR request) before a results folder exists.
        from conformance.preflight import start_up_check

        start_up_check(environment)
    except BaseException as exc:
        environment.close()
        if isinstance(exc, ConformanceError):
            raise pytest.UsageError(f"kfr-conformance: {exc.diagnostics()}") from exc
        raise
    try:
        if previous is not None:
            _check_resumable(previous, environment)
            state = _controller_state(config, settings, environment, suite_dir, sheet, previous.run_id)
            _resume(state, previous)
            return state
        # The run id carries the start time; both come from one reading of the clock.
        started = utc_now()
        state = _controller_state(config, settings, environment, suite_dir, sheet, new_run_id(started))
        state.started = started
        return state
    except BaseException:
        environment.close()
        raise


def _checked_test_ids(settings: Any) -> str | None:
    """--test-ids read and validated before row 1: a bad line stops the run, with its number."""
    path = settings.path("test_ids")
    if path is None:
        return None
    from conformance.testids import load_test_ids

    try:
        load_test_ids(path)
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: {exc.diagnostics()}") from exc
    return str(path.resolve())


def _previous_run(settings: Any, run_id: str | None, sheet: Path) -> RunRecord | None:
    """The run ``--resume`` continues: same bank, same sheet, found in the reports folder."""
    if not run_id:
        return None
    from conformance.results import load_record

    reports_dir = settings.path("reports_dir") or settings.cwd / "reports"
    folder = reports_dir / settings.orgnr / Path(run_id).name
    if not (folder / "run.json").is_file():
        raise UsageError(f"Finner ingen kjøring {run_id} for {settings.orgnr} i {reports_dir}.",
                         hint=f"Tidligere kjøringer ligger i {reports_dir / settings.orgnr}.")
    previous = load_record(folder)
    if previous.bank.get("orgnr") != settings.orgnr:
        raise UsageError(f"Kjøringen {run_id} gjelder {previous.bank.get('orgnr')}, ikke {settings.orgnr}.")
    if previous.sheet.get("sha256") != _sha256(sheet):
        raise UsageError(
            f"Kjøringen {run_id} ble gjort med et annet testark ({previous.sheet.get('file_name')}, "
            f"SHA-256 {previous.sheet.get('sha256', '')[:16]}…); én pakke dekker ett ark.",
            hint="Bruk samme --sheet som i kjøringen, eller start en ny kjøring.",
        )
    return previous


def _check_resumable(previous: RunRecord, environment: Any) -> None:
    wanted = (previous.environment.get("name"), previous.environment.get("kfr_base_url"))
    now = (environment.env_name, environment.kfr_base_url)
    if wanted != now:
        raise pytest.UsageError(
            f"kfr-conformance: kjøringen {previous.run_id} gikk mot {wanted[0]} ({wanted[1]}), "
            f"denne går mot {now[0]} ({now[1]}); én pakke dekker ett miljø."
        )


def _resume(state: RunState, previous: RunRecord) -> None:
    """Continue ``previous``: its rows keep their results unless run again now; this
    session's exchanges are recorded as the next session, after the earlier ones."""
    from conformance.models import Outcome
    from conformance.pack.manifest import parse_time

    state.started = parse_time(previous.started_at)
    state.sessions = list(previous.sessions) or [
        {"session": 1, "started_at": previous.started_at, "finished_at": previous.finished_at}]
    state.env.session = max(int(s.get("session", 1)) for s in state.sessions) + 1
    state.results = {c.case_id: c for c in previous.cases if c.outcome is not Outcome.NOT_RUN}
    state.session_started = dt.datetime.now(dt.UTC)


def _controller_state(config: pytest.Config, settings: Any, environment: Any, suite_dir: Path,
                      sheet: Path, run_id: str) -> RunState:
    orgnr = settings.orgnr
    credentials = _check_credentials(orgnr, environment.cert_path, environment.key_path,
                                     environment.cert_password)
    bank_name = environment.bank_name or credentials.subject_name or f"Bank {orgnr}"
    try:
        reports_dir = settings.path("reports_dir") or settings.cwd / "reports"
        manual = _load_manual(settings.path("manual"))
        signing_password = settings.secret("signing_cert_password_env", "passord til --signing-cert")
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: {exc.diagnostics()}") from exc
    results_dir = reports_dir / orgnr / run_id
    results_dir.mkdir(parents=True, exist_ok=True)
    env = EnvironmentInfo(
        env_name=environment.env_name, kfr_base_url=environment.kfr_base_url,
        maskinporten_issuer=environment.maskinporten_issuer, client_id=environment.client_id,
        cert_path=str(environment.cert_path),
        key_path=str(environment.key_path) if environment.key_path else None,
        cert_password=environment.cert_password,
        ca_bundle=str(environment.ca_bundle) if environment.ca_bundle else None,
        alt_scope=environment.alt_scope, results_dir=str(results_dir), run_id=run_id,
        ingest_rate=float(settings.get("ingest_rate", 250.0)),
        test_ids=_checked_test_ids(settings),
        core_system=_core_system_options(config, settings),
    )
    state = RunState(
        bank_orgnr=orgnr, bank_name=bank_name, sheet_path=sheet.resolve(), suite_dir=suite_dir,
        bindings_path=settings.path("bindings"), manual=manual,
        env=env, tester=settings.get("tester") or _login_name(),
        tester_role=settings.get("tester_role") or "", contact=settings.get("contact"),
        signing_cert=settings.path("signing_cert"), signing_cert_password=signing_password,
        is_controller=True, build_pack=not config.getoption("no_pack"),
        sandbox=environment.sandbox, tsa_url=settings.get("tsa_url"),
        invocation_dir=settings.cwd,
    )
    _read_cases(state)
    from conformance.results import copy_bindings, copy_original_sheet

    copy_original_sheet(state.sheet_path, results_dir)
    if state.bindings_path is not None:
        copy_bindings(state.bindings_path, results_dir)
    return state


def _core_system_options(config: pytest.Config, settings: Any) -> dict[str, Any] | None:
    """--core-system / --core-system-hook, or the profile's [core_system] table: how the
    bank's core system is reached, or None (the tool performs every row)."""
    from conformance.coresystem import core_system_settings

    try:
        core = core_system_settings(
            config.getoption("core_system"), config.getoption("core_system_hook"),
            timeout_s=config.getoption("core_system_timeout"), robustness=config.getoption("robustness"),
            profile=settings.profile.get("core_system"),
        )
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: {exc.diagnostics()}") from exc
    if core is None:
        return None
    if getattr(config.option, "numprocesses", None) not in (None, 0, "0"):
        raise pytest.UsageError(
            "kfr-conformance: med kjernesystemet (--core-system) kjøres radene i én prosess, "
            "gjennom én opptaksgateway; dropp -n."
        )
    return core.to_dict()


def _start_core_system(config: pytest.Config, state: RunState) -> None:
    """Put the recording gateway in front of the environment: the core system talks to KFR
    through it, and the rows it performs are judged on what it recorded."""
    if not state.env.core_system:
        return
    from conformance.gateway import GatewaySettings, start_gateway

    record_dir = state.results_dir / ("gateway" if state.env.session <= 1 else f"gateway-{state.env.session}")
    try:
        state.gateway = start_gateway(GatewaySettings(
            bank_orgnr=state.bank_orgnr, upstream_url=state.env.kfr_base_url,
            maskinporten_issuer=state.env.maskinporten_issuer, env_name=state.env.env_name,
            client_id=state.env.client_id or None, record_dir=record_dir,
            upstream_ca_bundle=Path(state.env.ca_bundle) if state.env.ca_bundle else None,
        ))
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: opptaksgatewayen startet ikke: {exc.diagnostics()}") from exc
    state.core_display = _TerminalDisplay(config)


def _stop_core_system(state: RunState) -> None:
    if state.gateway is not None:
        gateway, state.gateway = state.gateway, None
        gateway.stop()


class _TerminalDisplay:
    """Guided mode speaks in the terminal, past pytest's output capture (as live logging
    does): ``line`` prints a line, ``status`` rewrites the current one (the countdown)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._status = False

    def _reporter(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def _uncaptured(self) -> Any:
        import contextlib

        capture = self.config.pluginmanager.get_plugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()

    def line(self, text: str) -> None:
        reporter = self._reporter()
        if reporter is None:
            print(text, flush=True)
            return
        with self._uncaptured():
            if self._status:
                reporter.rewrite(text, erase=True)
                reporter.write("\n", flush=True)
            else:
                reporter.write_line(text)
                reporter.write("", flush=True)
            reporter.currentfspath = None  # the row's own result starts on a fresh line
        self._status = False

    def status(self, text: str) -> None:
        reporter = self._reporter()
        if reporter is None:
            print(text, flush=True)
            return
        with self._uncaptured():
            reporter.rewrite(text, erase=True)
            reporter.write("", flush=True)
        self._status = True


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return ""


def _check_credentials(orgnr: str, cert: Path, key: Path | None, password: str | None) -> Any:
    """Load the certificate once before anything runs: a broken or foreign certificate is a
    usage error with advice, not twenty failed rows."""
    from conformance.auth import Credentials

    try:
        credentials = Credentials.load(cert, password=password, key_path=key)
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: {exc.diagnostics()}") from exc
    if credentials.orgnr and credentials.orgnr != orgnr:
        raise pytest.UsageError(
            f"kfr-conformance: sertifikatet {cert.name} tilhører organisasjonsnummer "
            f"{credentials.orgnr}, ikke banken {orgnr}. Maskinporten ville avvist det (MP-122); "
            "bruk bankens eget virksomhetssertifikat."
        )
    return credentials


def _read_cases(state: RunState) -> None:
    from conformance.binding import bind_cases, load_bindings_file
    from conformance.sheet import read_sheet
    from conformance.suite import load_suite

    try:
        info, specs = read_sheet(state.sheet_path)
        overrides = load_bindings_file(state.bindings_path) if state.bindings_path else None
        registry = load_suite(state.suite_dir).registry
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: {exc.diagnostics()}") from exc
    state.sheet_info = info
    state.specs = bind_cases(specs, registry, overrides)
    _check_confirmations(state)


def _unmet_requirements(step: Any, state: RunState) -> list[str]:
    """Settings a step needs that this run lacks (e.g. an alternative scope): such a row is
    decided at start-up to be a manual procedure, with the step's own instructions."""
    if step is None or step.manual:
        return []
    return [name for name in step.requires if not getattr(state.env, name, None)]


def _manual_by_configuration(state: RunState) -> list[tuple[CaseSpec, Any]]:
    from conformance.suite import load_suite

    registry = load_suite(state.suite_dir).registry
    found = []
    for spec in state.specs:
        step = registry.get(spec.binding) if spec.binding else None
        if _unmet_requirements(step, state):
            found.append((spec, step))
    return found


def _check_confirmations(state: RunState) -> None:
    """--manual may confirm rows a person carries out (manual, or with no step), never
    overrule a row the tool proves with evidence; a bad entry stops the run before row 1."""
    from conformance.pack.manual import confirmation_problem

    specs = {spec.case_id: spec for spec in state.specs}
    manual_now = {spec.case_id for spec, _ in _manual_by_configuration(state)}
    problems = []
    for case_id, entry in state.manual.items():
        spec = specs.get(case_id)
        if spec is None:
            problems.append(f"{case_id}: finnes ikke i arket")
        elif not spec.manual and spec.binding is not None and spec.case_id not in manual_now:
            problems.append(f"{case_id}: er automatisert (trinn {spec.binding}); den bevises med utvekslinger, ikke med en bekreftelse")
        elif problem := confirmation_problem(case_id, entry):
            problems.append(problem)
    if problems:
        raise pytest.UsageError("kfr-conformance: --manual-filen kan ikke brukes:\n  - " + "\n  - ".join(problems))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kfr_case: a row of the KFR integration-test sheet")
    config.addinivalue_line("markers", "kfr_robustness: a robustness row of the core system (not in the sheet)")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and WORKERINPUT_KEY in workerinput:
        data = workerinput[WORKERINPUT_KEY]
        state = RunState(
            bank_orgnr=data["bank_orgnr"], bank_name=data["bank_name"],
            sheet_path=Path(data["sheet_path"]), suite_dir=Path(data["suite_dir"]),
            bindings_path=Path(data["bindings_path"]) if data["bindings_path"] else None,
            manual=data["manual"], env=EnvironmentInfo(**data["env"]),
            tester=data["tester"], tester_role=data["tester_role"], contact=data["contact"],
            signing_cert=None, signing_cert_password=None, is_controller=False, build_pack=False,
        )
        _read_cases(state)
        config.stash[STATE] = state
        if data["sheet_only"]:
            config.args = [str(state.sheet_path)]
        return
    bank = config.getoption("bank", None)
    if bank is None:
        if _kfr_options_used(config):
            raise pytest.UsageError(USAGE)
        return
    from conformance.ids import require_orgnr

    try:
        orgnr = require_orgnr(str(bank))
    except ConformanceError as exc:
        raise pytest.UsageError(f"kfr-conformance: {exc.message}") from exc
    state = _configure_controller(config, orgnr)
    config.stash[STATE] = state
    try:
        _start_core_system(config, state)
    except BaseException:
        if state.sandbox is not None:
            state.sandbox.__exit__(None, None, None)
        raise
    config.pluginmanager.register(_ResultCollector(state), "kfr_conformance_results")
    # Run the sheet instead of the project's tests unless paths were given explicitly.
    state.sheet_only = config.args_source != pytest.Config.ArgsSource.ARGS
    if state.sheet_only:
        config.args = [str(state.sheet_path)]
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state), "kfr_conformance_xdist")


class _XdistHooks:
    def __init__(self, state: RunState) -> None:
        self.state = state

    def pytest_configure_node(self, node: Any) -> None:
        s = self.state
        node.workerinput[WORKERINPUT_KEY] = {
            "bank_orgnr": s.bank_orgnr, "bank_name": s.bank_name, "sheet_path": str(s.sheet_path),
            "suite_dir": str(s.suite_dir),
            "bindings_path": str(s.bindings_path) if s.bindings_path else None,
            "manual": s.manual, "env": s.env.__dict__, "tester": s.tester,
            "tester_role": s.tester_role, "contact": s.contact, "sheet_only": s.sheet_only,
        }


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    if state.session is not None:
        state.session.close()
    _stop_core_system(state)
    if state.sandbox is not None:
        state.sandbox.__exit__(None, None, None)
        state.sandbox = None


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(STATE, None)
    if state is None:
        return None
    from conformance.binding import implied_expectation_lines

    label = "SANDBOX (innebygd testmiljø – ikke gyldig som onboardingbevis)" if state.is_sandbox else "test (Bits' testmiljø)"
    info = state.sheet_info
    return [
        f"kfr-conformance {__version__}: bank {state.bank_name} ({state.bank_orgnr}), miljø {label}",
        f"KFR: {state.env.kfr_base_url}  Maskinporten: {state.env.maskinporten_issuer}",
        f"ark: {state.sheet_path.name} versjon {getattr(info, 'version', None) or 'ukjent'}, "
        f"SHA-256 {getattr(info, 'sha256', '?')}",
        # Rows the reader did not read as written, by row number: never dropped silently.
        *(info.notice_lines() if info is not None else []),
        *implied_expectation_lines(state.specs or []),
    ] + [
        f"MANUELL denne gangen: {spec.case_id} «{spec.title}»: {step.without}"
        for spec, step in _manual_by_configuration(state)
    ] + _core_system_header(state)


def _core_system_header(state: RunState) -> list[str]:
    if not state.env.core_system or state.gateway is None:
        return []
    from conformance.coresystem import CoreSystemSettings
    from conformance.suite import load_suite

    settings = CoreSystemSettings.from_dict(state.env.core_system)
    registry = load_suite(state.suite_dir).registry
    rows = [spec.case_id for spec in state.specs
            if spec.binding and (step := registry.get(spec.binding)) is not None and step.core is not None]
    from conformance.evidence import redact_text

    lines = [
        f"Kjernesystemet utfører: {', '.join(rows) or 'ingen rader i dette arket'} "
        f"({redact_text(settings.describe_nb())})",
        f"KFR-base-URL for kjernesystemet (opptaksgatewayen): {state.gateway.kfr_base_url}",
    ]
    if settings.robustness:
        lines.append("Robusthetsrader etter arket: " + ", ".join(_robustness_ids()) + " (rapporteres for seg, utenfor C-2)")
    return lines


def _robustness_ids() -> list[str]:
    from conformance.coresystem.robustness import SCENARIOS

    return [scenario.id for scenario in SCENARIOS]


# ------------------------------------------------------------------ collection


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash.get(STATE, None)
    if state is None or file_path.suffix.lower() != ".xlsx":
        return None
    if file_path.resolve() != state.sheet_path:
        return None
    return SheetFile.from_parent(parent, path=file_path)


class SheetFile(pytest.File):
    def collect(self):
        state = self.config.stash[STATE]
        from conformance.suite import load_suite

        registry = load_suite(state.suite_dir).registry
        seen: dict[str, int] = {}
        for spec in state.specs:
            name = spec.case_id
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name}#{seen[name]}"
            step = registry.get(spec.binding) if spec.binding else None
            yield CaseItem.from_parent(self, name=name, spec=spec, step=step)
        core = state.env.core_system
        if core and core.get("robustness"):
            from conformance.coresystem.robustness import SCENARIOS

            for scenario in SCENARIOS:  # after the sheet, and never part of it
                yield RobustnessItem.from_parent(self, name=scenario.id, scenario=scenario)


class CaseFailed(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.message)
        self.result = result


class CaseItem(pytest.Item):
    def __init__(self, *, spec: CaseSpec, step: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.step = step
        self.add_marker(pytest.mark.kfr_case)

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        spec = self.spec
        from conformance import runner

        unmet = _unmet_requirements(self.step, state)
        if spec.manual or unmet or (self.step is None and spec.case_id in state.manual):
            result = runner.manual_result(spec, state.manual.get(spec.case_id),
                                          instructions=self.step.without if unmet else "")
        elif self.step is None:
            result = runner.not_automated_result(spec)
        else:
            result = _session(state).run(spec, self.step, self._progress)
        self.user_properties.append((RESULT_PROPERTY, json.dumps(result.to_dict(), ensure_ascii=False)))
        if result.outcome is Outcome.PASSED:
            return
        if result.outcome in (Outcome.FAILED, Outcome.ERROR):
            raise CaseFailed(result)
        pytest.skip(f"{result.outcome.label_nb}: {result.message}")

    def _progress(self, message: str) -> None:
        """Progress of long waits (batch ingestion): every message with -v, otherwise one
        line every 5 s once a wait has lasted 2 s, so a slow KFR never looks like a hang."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        now = time.monotonic()
        started = self.__dict__.setdefault("_wait_started", now)
        last = self.__dict__.get("_wait_last_shown", 0.0)
        if self.config.getoption("verbose", 0) > 0 or (now - started >= 2 and now - last >= 5):
            self._wait_last_shown = now
            capture = self.config.pluginmanager.get_plugin("capturemanager")
            if capture is None:
                reporter.write_line(f"  {self.spec.case_id}: {message}")
                return
            with capture.global_and_fixture_disabled():  # as pytest's live logging does
                reporter.write_line(f"  {self.spec.case_id}: {message}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            r = excinfo.value.result
            lines = [
                f"{r.case_id} {r.title}",
                f"  Status:    {r.outcome.label_nb}",
                f"  Forventet: {r.expected.describe()}  ({r.expected.text.strip()})",
                f"  Faktisk:   {r.actual}",
            ]
            if r.message:
                lines.append(f"  Hvorfor:   {r.message}")
            if r.correlation_ids:
                lines.append(f"  CorrelationID: {', '.join(r.correlation_ids)}")
            if r.evidence_file:
                lines.append(f"  Bevis:     {r.evidence_file}")
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, max(0, self.spec.row - 1), f"{self.spec.case_id}: {self.spec.title}"


class RobustnessFailed(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("message", ""))
        self.result = result


class RobustnessItem(pytest.Item):
    """A robustness row: reported apart from Bits' sheet (``robustness.json``), never in
    run.json's cases, the manifest, ``verify`` or the C-3 gate."""

    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker(pytest.mark.kfr_robustness)

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        result = _session(state).run_robustness(self.scenario, lambda message: None)
        self.user_properties.append((ROBUSTNESS_PROPERTY, json.dumps(result, ensure_ascii=False)))
        if result["outcome"] != str(Outcome.PASSED):
            raise RobustnessFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, RobustnessFailed):
            r = excinfo.value.result
            lines = [f"{r['id']} {r['title']} (robusthet – utenfor C-2)", f"  Status:  {r['label']}"]
            if r.get("message"):
                lines.append(f"  Hvorfor: {r['message']}")
            if r.get("evidence_file"):
                lines.append(f"  Bevis:   {r['evidence_file']}")
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.scenario.id}: {self.scenario.title}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    # A skipped row (manual, not automated) points at its sheet row, not at the plugin.
    if isinstance(item, CaseItem) and report.skipped and isinstance(report.longrepr, tuple):
        _, _, reason = report.longrepr
        report.longrepr = (str(item.path), max(0, item.spec.row - 1), reason)  # pytest shows +1
    return report


def _session(state: RunState):
    if state.session is None:
        from conformance.session import ProcessSession

        worker = os.environ.get("PYTEST_XDIST_WORKER")
        state.session = ProcessSession(state, journal_name=f"journal-{worker}.jsonl" if worker else "journal.jsonl")
    return state.session


# ------------------------------------------------------------------ outcomes and the end


class _ResultCollector:
    """Receives every case's result on the controller (also from xdist workers)."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY:
                result = CaseResult.from_dict(json.loads(value))
                self.state.results[result.case_id] = result
                self.state.ran_now.add(result.case_id)
            elif name == ROBUSTNESS_PROPERTY:
                row = json.loads(value)
                self.state.robustness[row["id"]] = row


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None or not state.is_controller:
        return
    if state.session is not None:
        state.session.close()
        state.session = None
    _stop_core_system(state)  # its journal and robustness.json complete before the pack
    _finish_run(state)


def _finish_run(state: RunState) -> None:
    from conformance import runner
    from conformance.results import ordered_results, write_outputs

    cases = ordered_results(state.specs, state.results, runner.not_run_result)
    record = RunRecord(
        run_id=state.env.run_id,
        bank={"orgnr": state.bank_orgnr, "name": state.bank_name},
        environment={
            "name": state.env.env_name, "kfr_base_url": state.env.kfr_base_url,
            "maskinporten_issuer": state.env.maskinporten_issuer,
        },
        sheet=_sheet_record(state),
        runner={"version": __version__, "python": platform.python_version(),
                "platform": platform.platform()},
        attestation={"tester": state.tester, "role": state.tester_role,
                     **({"contact": state.contact} if state.contact else {})},
        started_at=runner.iso(state.started),
        finished_at=runner.iso(dt.datetime.now(dt.UTC)),
        cases=cases,
    )
    if state.sessions:  # a resumed run: one more session, named by the rows it ran
        record.sessions = [*state.sessions, {
            "session": state.env.session,
            "started_at": runner.iso(state.session_started or state.started),
            "finished_at": record.finished_at,
            "rows": sorted(state.ran_now),
        }]
    if state.robustness:  # before the report, which shows them in a section of their own
        from conformance.coresystem.robustness import write_robustness

        try:
            write_robustness(state.results_dir, state.bank_orgnr, state.env.run_id, list(state.robustness.values()))
        except OSError as exc:
            state.finish_notes.append(f"robustness.json kunne ikke skrives: {exc}")
    written = write_outputs(state.results_dir, record, sheet_info=state.sheet_info)
    state.finish_notes.extend(written.problems)
    if state.build_pack:
        try:
            state.pack_result = _build_pack(state)
        except ConformanceError as exc:
            state.finish_notes.append(f"Resultatpakken ble ikke bygget: {exc.diagnostics()}")
        except Exception as exc:  # never lose the rest of the results over the pack
            state.finish_notes.append(f"Resultatpakken ble ikke bygget: {type(exc).__name__}: {exc}")
    state.record = record


def _build_pack(state: RunState):
    from conformance.auth import Credentials
    from conformance.pack import build_pack

    if state.signing_cert:
        creds = Credentials.load(state.signing_cert, password=state.signing_cert_password)
    else:
        creds = Credentials.load(Path(state.env.cert_path), password=state.env.cert_password,
                                 key_path=Path(state.env.key_path) if state.env.key_path else None)
    tsa_url = state.tsa_url
    if tsa_url is None and state.is_sandbox:  # the sandbox's own TSA
        from conformance.sandbox.pki import PkiUrls, sandbox_base_url

        tsa_url = PkiUrls.for_base(sandbox_base_url(state.env.kfr_base_url)).tsa
    result = build_pack(state.results_dir, certificate=creds.certificate,
                        private_key=creds.private_key, chain=creds.chain, contact=state.contact,
                        tsa_url=tsa_url)
    state.finish_notes.extend(result.warnings)  # e.g. the TSA failed: packed untimestamped
    return result


def _sheet_record(state: RunState) -> dict[str, str]:
    """The sheet as run: name, version, SHA-256, and whether it is the tool's own
    reconstruction ("bundled") or the sheet the bank supplied ("supplied")."""
    from conformance.suite import load_suite

    info = state.sheet_info
    sha = getattr(info, "sha256", None) or _sha256(state.sheet_path)
    bundled = load_suite(state.suite_dir).sheet
    source = "bundled" if bundled.is_file() and _sha256(bundled) == sha else "supplied"
    return {"file_name": state.sheet_path.name, "version": getattr(info, "version", None) or "",
            "sha256": sha, "source": source}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.is_controller:
        return
    record = state.record
    tr = terminalreporter
    title = "KFR integrasjonstest" + (" – SANDBOX" if state.is_sandbox else "")
    tr.write_sep("=", title)
    if record is not None:
        counts = record.counts()
        parts = [f"{Outcome(k).label_nb}: {v}" for k, v in counts.items() if k != "total" and v]
        tr.write_line(f"{counts['total']} rader – " + ", ".join(parts))
        for case in record.cases:
            if case.outcome not in (Outcome.PASSED,):
                tr.write_line(f"  {case.case_id:<10} {case.outcome.label_nb:<32} {case.title}")
    if state.robustness:
        tr.write_line("Robusthet (rapporteres for seg, inngår ikke i C-2-resultatet):")
        for row in sorted(state.robustness.values(), key=lambda r: r["id"]):
            tr.write_line(f"  {row['id']:<10} {row['label']:<32} {row['title']}")
    tr.write_line(f"Resultater: {state.results_dir}")
    pack = state.pack_result
    if pack is not None:
        tr.write_line(f"Resultatpakke: {pack.zip_path}")
        if getattr(pack, "email_path", None):
            tr.write_line(f"C-3-e-post: {pack.email_path}")
        elif getattr(pack, "blockers", None):
            tr.write_line("C-3-e-post er ikke laget fordi:")
            for reason in pack.blockers[:12]:
                tr.write_line(f"  - {reason}")
    if state.is_sandbox:
        tr.write_line("SANDBOX: resultatene er laget mot det innebygde testmiljøet og gjelder ikke som onboardingbevis.", yellow=True)
    for note in state.finish_notes:
        tr.write_line(f"Advarsel: {note}", red=True)
    sys.stdout.flush()
