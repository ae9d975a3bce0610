"""Shared fixtures: a real sandbox on loopback and banks registered on it.

sandbox          session scope: one server on a temporary data folder, unlimited ingestion;
                 its faults are reset to Faults() after every test that uses it
sandbox_factory  start extra sandboxes with given settings; stopped after the test
bank             BankCredentials for a fresh synthetic orgnr registered on ``sandbox``
other_bank       a second, different bank on ``sandbox``
sandbox_token    sandbox_token(creds, scopes=(WRITE_SCOPE,), sb=sandbox) -> access token
                 through the real JWT grant
set_home         autouse: KFR_CONFORMANCE_HOME is a temporary folder, so no test
                 touches ~/.kfr-conformance

A bank's own ``kfr-conformance.toml`` in the repository root is never read by the project's
tests: this session points the runs it starts from the repository root at an empty profile
(see ``pytest_configure`` below), so a profile for, say, bank 311000004 against Bits' test
environment cannot turn the sandbox tests into failures.

The project's test session gets the ``pytester`` plugin here (not from ``addopts``, which
every ``pytest --bank`` run would read too). Because this file is also loaded by every bank
run started from the repository root, it imports the sandbox, httpx and python-stdnum only
inside the fixtures that use them: a bank's run against Bits' test environment never needs
them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conformance.home import HOME_ENV

if TYPE_CHECKING:
    import httpx

    from conformance.sandbox import BankCredentials, RunningSandbox, SandboxSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILE_FILE = "kfr-conformance.toml"
# Set by the project's test session for the runs it starts; the name avoids the PYTEST_ and
# KFR_ prefixes that tests strip from a child's environment. Its value is an empty profile.
ISOLATED_PROFILE_ENV = "CONFORMANCE_TESTS_EMPTY_PROFILE"


@pytest.hookimpl(tryfirst=True)  # before the plugin reads --profile in its own pytest_configure
def pytest_configure(config: pytest.Config) -> None:
    """Keep a user's repository-root profile out of the project's own tests.

    This conftest is loaded twice over: in the project's test session, and — because the
    repository's ``testpaths`` name ``tests/`` — in every ``pytest --bank=…`` started from
    the repository root, including a bank's real runs. So the test session marks the runs
    it starts (an environment variable naming an empty profile), and only a marked run
    from the repository root without an explicit ``--profile`` is pointed at it.
    """
    bank = config.getoption("bank", None)
    if bank is None:  # the project's test session (or a pytester run inside it)
        _project_test_session(config)
        if ISOLATED_PROFILE_ENV not in os.environ and not hasattr(config, "workerinput"):
            folder = tempfile.mkdtemp(prefix="kfr-tests-profile-")
            empty = Path(folder) / PROFILE_FILE
            empty.write_text("# empty: the project's tests ignore the repository's profile\n")
            os.environ[ISOLATED_PROFILE_ENV] = str(empty)
            config.add_cleanup(lambda: _forget_isolated_profile(folder))
        return
    empty_profile = os.environ.get(ISOLATED_PROFILE_ENV)
    if (
        empty_profile
        and config.getoption("profile", None) is None
        and config.invocation_params.dir.resolve() == REPO_ROOT
    ):
        config.option.profile = empty_profile


def _project_test_session(config: pytest.Config) -> None:
    """What only the project's own tests need: the ``pytester`` fixture (registered here,
    as ``-p pytester`` would, so its options get their defaults and its fixture is found),
    and some modules imported before any in-process pytester run. Such a run drops the
    modules it imported, and a module imported again must not meet objects of its first
    life: httpx's error mapping must keep matching httpcore's classes in use, and
    rfc3161-client's compiled core (loaded once per process) keeps the classes of the
    first import, so a second import's hash algorithms are "invalid" to it."""
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
    import httpcore  # noqa: F401
    import rfc3161_client  # noqa: F401


def _forget_isolated_profile(folder: str) -> None:
    os.environ.pop(ISOLATED_PROFILE_ENV, None)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def set_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv(HOME_ENV, str(home))
    return home


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    from conformance.sandbox import SandboxSettings, start_sandbox

    data_dir = tmp_path_factory.mktemp("sandbox")
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None)) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _reset_sandbox_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that sets faults on the shared sandbox must not leak them into the next."""
    sb = request.getfixturevalue("sandbox") if "sandbox" in request.fixturenames else None
    yield
    if sb is not None:
        from conformance.sandbox import Faults

        sb.set_faults(Faults())


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., RunningSandbox]]:
    """``sandbox_factory(settings)`` or ``sandbox_factory(**SandboxSettings fields)``; by
    default a fresh data folder and unlimited ingestion."""
    from conformance.sandbox import SandboxSettings, start_sandbox

    started: list[RunningSandbox] = []
    numbers = itertools.count(1)

    def factory(settings: SandboxSettings | None = None, **fields: Any) -> RunningSandbox:
        if settings is None:
            fields.setdefault("data_dir", tmp_path / f"sandbox-{next(numbers)}")
            fields.setdefault("ingest_rate", None)
            settings = SandboxSettings(**fields)
        sb = start_sandbox(settings)
        started.append(sb)
        return sb

    yield factory
    for sb in reversed(started):
        sb.stop()


def _new_bank(sb: RunningSandbox, out_dir: Path, avoid: str | None = None) -> BankCredentials:
    from conformance.ids import synthetic_orgnr

    orgnr = synthetic_orgnr()
    while orgnr == avoid:
        orgnr = synthetic_orgnr()
    return sb.register_bank(orgnr, out_dir=out_dir)


@pytest.fixture
def bank(sandbox: RunningSandbox, tmp_path: Path) -> BankCredentials:
    return _new_bank(sandbox, tmp_path / "bank")


@pytest.fixture
def other_bank(sandbox: RunningSandbox, tmp_path: Path, bank: BankCredentials) -> BankCredentials:
    return _new_bank(sandbox, tmp_path / "other-bank", avoid=bank.orgnr)


@pytest.fixture
def sandbox_token(sandbox: RunningSandbox) -> Callable[..., str]:
    from conformance.sandbox.assertion import obtain_token
    from conformance.sandbox.credentials import WRITE_SCOPE

    def token(
        creds: BankCredentials,
        scopes: Iterable[str] = (WRITE_SCOPE,),
        sb: RunningSandbox | None = None,
    ) -> str:
        return obtain_token(creds, (sb or sandbox).maskinporten_issuer, scopes)

    return token


def multipart_body(fields: dict[str, str], boundary: str) -> bytes:
    """A multipart/form-data body as KFR expects it (CRLF line ends)."""
    lines = []
    for name, value in fields.items():
        lines += [f"--{boundary}", f'Content-Disposition: form-data; name="{name}"']
        if name == "customers":
            lines.append("Content-Type: text/plain")
        lines += ["", value]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


class BankApi:
    """Plain HTTP calls to the sandbox's KFR as one bank; every call returns the httpx.Response."""

    def __init__(self, sb: RunningSandbox, creds: BankCredentials, token: str) -> None:
        import httpx

        self.sb = sb
        self.creds = creds
        self.token = token
        self.http = httpx.Client(base_url=sb.kfr_base_url, timeout=30)

    def headers(self, customer: str | None = None, **extra: str | None) -> dict[str, str]:
        """Authorization + a fresh CorrelationID (+ CustomerID); ``extra`` overrides, None drops."""
        headers: dict[str, str | None] = {
            "Authorization": f"Bearer {self.token}",
            "CorrelationID": str(uuid.uuid4()),
            "CustomerID": customer,
        }
        headers.update(extra)
        return {k: v for k, v in headers.items() if v is not None}

    def _path(self, fid: str | None, rel_type: str = "DSOPBANK") -> str:
        return f"/customers/financialInstitutions/{fid or self.creds.orgnr}/relationshipType/{rel_type}"

    def add(
        self,
        customer: str | None,
        *,
        fid: str | None = None,
        rel_type: str = "DSOPBANK",
        **headers: str | None,
    ) -> httpx.Response:
        return self.http.post(self._path(fid, rel_type), headers=self.headers(customer, **headers))

    def end(
        self,
        customer: str | None,
        *,
        fid: str | None = None,
        rel_type: str = "DSOPBANK",
        **headers: str | None,
    ) -> httpx.Response:
        return self.http.delete(
            self._path(fid, rel_type), headers=self.headers(customer, **headers)
        )

    def lookup(
        self,
        customer: str | None,
        *,
        fid: str | None = None,
        from_date: Any = None,
        to_date: Any = None,
        **headers: str | None,
    ) -> httpx.Response:
        params = {
            k: str(v) for k, v in (("fromDate", from_date), ("toDate", to_date)) if v is not None
        }
        return self.http.get(
            f"/customers/financialInstitutions/{fid or self.creds.orgnr}/",
            params=params,
            headers=self.headers(customer, **headers),
        )

    def found(self, customer: str, **period: Any) -> bool:
        r = self.lookup(customer, **period)
        assert r.status_code == 200, r.text
        return any(b["organizationID"] == self.creds.orgnr for b in r.json()["banks"])

    def batch(
        self,
        customers: str | None = None,
        *,
        customer_type: str = "DSOPBANK",
        boundary: str = "873380600719114776488944",
        content_type: str | None = None,
        body: bytes | None = None,
        fid: str | None = None,
        **headers: str | None,
    ) -> httpx.Response:
        if body is None:
            body = multipart_body(
                {"customer_type": customer_type, "customers": customers or ""}, boundary
            )
        all_headers = self.headers(None, **headers)
        all_headers.setdefault(
            "Content-Type", content_type or f"multipart/form-data; boundary={boundary}"
        )
        return self.http.post(
            f"/customers/financialInstitutions/{fid or self.creds.orgnr}/batch",
            content=body,
            headers=all_headers,
        )

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def bank_api(sandbox: RunningSandbox) -> Iterator[Callable[..., BankApi]]:
    from conformance.sandbox.assertion import obtain_token
    from conformance.sandbox.credentials import WRITE_SCOPE

    opened: list[BankApi] = []

    def make(
        creds: BankCredentials,
        sb: RunningSandbox | None = None,
        scopes: Iterable[str] = (WRITE_SCOPE,),
    ) -> BankApi:
        target = sb or sandbox
        api = BankApi(target, creds, obtain_token(creds, target.maskinporten_issuer, scopes))
        opened.append(api)
        return api

    yield make
    for api in opened:
        api.close()
