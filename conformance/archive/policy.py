"""The trust policy a verdict was reached under, kept with the verdict.

A ``VerificationPolicy`` is turned into plain JSON field by field, so options the verifier
gains later are remembered without a change here: booleans, numbers, text and lists of
text as they are; a tuple of certificates (the trust roots) as their SHA-256
fingerprints, with the certificates themselves kept once in the index's ``certificates``
table so ``verify-all`` can rebuild the policy years later. The language and the zip
limits are how the verifier works, not what Bits trusts, and are not recorded. A value
of any other kind is recorded by its text only and left at its default when rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

NOT_RECORDED = ("lang", "limits")
_CERTS = "$certificates"
_TEXT = "$text"

LABELS_NB = {
    "trust_roots": "Rotsertifikater",
    "allow_sandbox": "Sandkassepakker godtatt",
    "accepted_kfr_base_urls": "Godtatte KFR-adresser",
    "expect_sheet_sha256": "Krevd SHA-256 for testarket",
    "expect_sheet_version": "Krevd arkversjon",
}


def certificate_sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def _is_certificates(value: Any) -> bool:
    return isinstance(value, tuple | list) and all(isinstance(c, x509.Certificate) for c in value)


def to_record(policy: Any) -> tuple[dict[str, Any], list[x509.Certificate]]:
    """The policy as JSON-ready data, and the certificates it names."""
    record: dict[str, Any] = {}
    certificates: list[x509.Certificate] = []
    for item in dataclasses.fields(policy):
        if item.name in NOT_RECORDED:
            continue
        value = getattr(policy, item.name)
        if value is None or isinstance(value, bool | int | float | str):
            record[item.name] = value
        elif _is_certificates(value) and value:
            certificates += list(value)
            record[item.name] = {
                _CERTS: [
                    {"sha256": certificate_sha256(c), "subject": c.subject.rfc4514_string()}
                    for c in value
                ]
            }
        elif isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
            record[item.name] = list(value)
        else:
            record[item.name] = {_TEXT: repr(value)[:200]}
    return record, certificates


def fingerprints(record: Mapping[str, Any]) -> list[str]:
    """Every certificate fingerprint a recorded policy names."""
    out = []
    for value in record.values():
        if isinstance(value, Mapping) and _CERTS in value:
            out += [str(c.get("sha256")) for c in value[_CERTS] if isinstance(c, Mapping)]
    return out


class PolicyNotRebuilt(ValueError):
    """A recorded policy names a certificate the archive does not hold."""


def from_record(
    record: Mapping[str, Any],
    certificates: Mapping[str, x509.Certificate],
    *,
    overrides: Mapping[str, Any] | None = None,
    lang: str = "nb",
) -> Any:
    """The ``VerificationPolicy`` a record describes, with ``overrides`` (field → value)
    taking precedence. Fields the verifier no longer has are ignored."""
    from conformance.pack.verify import VerificationPolicy

    known = {f.name for f in dataclasses.fields(VerificationPolicy)}
    values: dict[str, Any] = {}
    for name, value in record.items():
        if name not in known or name in NOT_RECORDED:
            continue
        if isinstance(value, Mapping) and _CERTS in value:
            wanted = [str(c.get("sha256")) for c in value[_CERTS] if isinstance(c, Mapping)]
            missing = [fp for fp in wanted if fp not in certificates]
            if missing:
                raise PolicyNotRebuilt(
                    f"sertifikat {missing[0][:16]}… i den lagrede policyen finnes ikke i arkivet"
                )
            values[name] = tuple(certificates[fp] for fp in wanted)
        elif isinstance(value, Mapping):
            continue  # recorded by its text only: the default applies
        elif isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    values.update(overrides or {})
    if "lang" in known:
        values["lang"] = lang
    return VerificationPolicy(**values)


def explicit_fields(given: Any, defaults: Any) -> dict[str, Any]:
    """The fields of ``given`` that differ from the policy the options make by default:
    what a person asked for on the command line."""
    out = {}
    for item in dataclasses.fields(given):
        if item.name in NOT_RECORDED:
            continue
        value = getattr(given, item.name)
        if value != getattr(defaults, item.name):
            out[item.name] = value
    return out


def describe(record: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) lines in Norwegian for pages and terminals."""
    if record is None:
        return [("Policy", "ikke registrert (vurdert før arkivet lagret policyen)")]
    lines = []
    order = {name: i for i, name in enumerate(LABELS_NB)}
    for name, value in sorted(record.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])):
        label = LABELS_NB.get(name, name)
        if isinstance(value, Mapping) and _CERTS in value:
            shown = "; ".join(
                f"{c.get('subject', '?')} (SHA-256 {str(c.get('sha256', ''))[:16]}…)"
                for c in value[_CERTS]
                if isinstance(c, Mapping)
            )
        elif isinstance(value, Mapping):
            shown = str(value.get(_TEXT, ""))
        elif isinstance(value, bool):
            shown = "ja" if value else "nei"
        elif value is None or value == [] or value == "":
            shown = "–" if name != "trust_roots" else "ingen"
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        else:
            shown = str(value)
        lines.append((label, shown))
    if "trust_roots" not in record:
        lines.insert(0, (LABELS_NB["trust_roots"], "ingen"))
    return lines
