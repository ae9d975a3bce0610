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
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.home import HOME_ENV
from conformance.ids import synthetic_orgnr
from conformance.sandbox import (
    BankCredentials,
    Faults,
    RunningSandbox,
    SandboxSettings,
    start_sandbox,
)
from conformance.sandbox.assertion import obtain_token
from conformance.sandbox.credentials import WRITE_SCOPE


@pytest.fixture(autouse=True)
def set_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv(HOME_ENV, str(home))
    return home


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    data_dir = tmp_path_factory.mktemp("sandbox")
    with start_sandbox(SandboxSettings(data_dir=data_dir, ingest_rate=None)) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _reset_sandbox_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that sets faults on the shared sandbox must not leak them into the next."""
    sb = request.getfixturevalue("sandbox") if "sandbox" in request.fixturenames else None
    yield
    if sb is not None:
        sb.set_faults(Faults())


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., RunningSandbox]]:
    """``sandbox_factory(settings)`` or ``sandbox_factory(**SandboxSettings fields)``; by
    default a fresh data folder and unlimited ingestion."""
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
    def token(
        creds: BankCredentials,
        scopes: Iterable[str] = (WRITE_SCOPE,),
        sb: RunningSandbox | None = None,
    ) -> str:
        return obtain_token(creds, (sb or sandbox).maskinporten_issuer, scopes)

    return token
