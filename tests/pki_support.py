"""Helpers for the trusted-time and revocation tests: packs signed by certificates of a
real sandbox's CA, timestamped (or not) by its TSA over HTTP, and verification policies
that trust that CA.

Certificates come from ``sandbox.ca.issue``: issued while the sandbox runs, they name its
OCSP responder and CRL, so every revocation check in these tests goes over loopback HTTP.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from pack_support import BANK_NAME, BANK_ORGNR, make_results_dir

from conformance.pack.build import PackResult, build_pack
from conformance.pack.verify import VerificationPolicy
from conformance.sandbox import RunningSandbox
from conformance.sandbox.pki import IssuedCertificate

YEARS = dt.timedelta(days=3 * 365)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ca_certificate(sb: RunningSandbox) -> x509.Certificate:
    return sb.ca.cert


def issue(sb: RunningSandbox, **kwargs: Any) -> IssuedCertificate:
    """A fresh enterprise certificate for our bank from ``sb``'s CA (revocation is final,
    so tests that revoke never share one)."""
    return sb.ca.issue(BANK_ORGNR, BANK_NAME, **kwargs)


def signed_pack(
    root: Path, issued: IssuedCertificate, *, tsa_url: str | None = None, **results: Any
) -> PackResult:
    folder = make_results_dir(root, **results)
    return build_pack(folder, certificate=issued.cert, private_key=issued.key, tsa_url=tsa_url)


def policy_for(sb: RunningSandbox, *, strict: bool = False, **overrides: Any) -> VerificationPolicy:
    make = VerificationPolicy.strict if strict else VerificationPolicy
    return make(trust_roots=(ca_certificate(sb),), **overrides)


def failed(report) -> set[str]:
    return {check.name for check in report.failed}


def reason(report, name: str) -> str:
    return next(check.reason for check in report.checks if check.name == name)
