"""The signed result pack: manifest, CMS signature, deterministic zip, C-3 e-mail, verify.

    manifest.py   Manifest (canonical JSON bytes) and build_manifest(results folder, run record)
    sign.py       sign_manifest: detached CMS over the manifest bytes (cryptography)
    build.py      build_pack: manifest + signature + deterministic, atomic zip (+ e-mail)
    email.py      the C-3 e-mail to DSOP@bits.no: email_blockers, write_email, send_email
    verify.py     verify_pack_bytes / verify_path / export_correlations (never imports sign)
    safezip.py    reading a received zip as hostile input
    cms.py        reading and checking a CMS SignedData (asn1crypto), adding a timestamp
    timestamp.py  RFC 3161 signature timestamps: asking a TSA, judging a token
    revocation.py OCSP and CRL status of the signer

Names are re-exported lazily, so ``import conformance.pack.verify`` loads no signing code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MANIFEST_FORMAT": "manifest",
    "MANIFEST_VERSION": "manifest",
    "Manifest": "manifest",
    "build_manifest": "manifest",
    "sign_manifest": "sign",
    "PackResult": "build",
    "build_pack": "build",
    "email_blockers": "email",
    "send_email": "email",
    "write_email": "email",
    "CheckResult": "verify",
    "VerificationFailed": "verify",
    "VerificationPolicy": "verify",
    "VerificationReport": "verify",
    "export_correlations": "verify",
    "verify_pack_bytes": "verify",
    "verify_path": "verify",
    "ZipLimits": "safezip",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
