"""The embedded KFR + Maskinporten test environment, with its own test CA.

    with start_sandbox(SandboxSettings(data_dir=tmp, ingest_rate=None)) as sb:
        creds = sb.register_bank("910000004", out_dir=tmp / "creds")
        ...  # talk to sb.kfr_base_url with a token from sb.token_endpoint

A real HTTP server on loopback (uvicorn in a background thread), real JWT validation and
SQLite storage. ``start_sandbox(settings, realistic=True)`` puts an API gateway in front of
KFR, as in Bits' test environment (``gateway.py``). See ``docs/architecture.md`` for the
contract.
"""

from conformance.sandbox.credentials import BankCredentials, issue_bank_credentials
from conformance.sandbox.pki import TestCA
from conformance.sandbox.server import RunningSandbox, start_sandbox
from conformance.sandbox.settings import MISBEHAVIOURS, Faults, SandboxSettings

__all__ = [
    "MISBEHAVIOURS",
    "BankCredentials",
    "Faults",
    "RunningSandbox",
    "SandboxSettings",
    "TestCA",
    "issue_bank_credentials",
    "start_sandbox",
]
