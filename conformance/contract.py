"""KFR's contract as small named rules, each citing where it comes from.

One rule, one function: it takes plain values (a header, a path segment, decoded token
claims) and returns a :class:`Verdict` with a Norwegian reason and the rule it enforced.
The judge, ``verify``, the sandbox and the recording gateway all apply these functions, so
no place keeps a private copy of a rule; the report, ``verify`` and the gateway log show
the rule's id and source next to each verdict, so a bank's developer can look it up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "RULES",
    "Rule",
    "Verdict",
    "boundary_unquoted",
    "correlation_id_is_uuid",
    "customer_id_is_valid",
    "fid_is_bank",
    "rule",
    "token_consumer_is_bank",
    "token_has_scope",
    "token_issuer_is",
]


@dataclass(frozen=True)
class Rule:
    id: str          # stable, kebab-case: "correlation-id-uuid"
    title: str       # Norwegian, one line
    source: str      # where the rule is written down


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    ok: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.id, "ok": self.ok, "reason": self.reason,
                "source": self.rule.source}


RULES: dict[str, Rule] = {}


def rule(id: str, title: str, source: str) -> Rule:
    """Register a rule once; its id is its name in reports and logs."""
    if id in RULES:
        raise ValueError(f"rule {id!r} defined twice")
    RULES[id] = Rule(id, title, source)
    return RULES[id]


KFR_API = "KFR API 1.1.2"
KFR_FAQ = "KFR FAQ"
MASKINPORTEN = "Maskinporten (Digdir): JWT grant og access token"

R_CORRELATION = rule("correlation-id-uuid", "CorrelationID er en UUID", f"{KFR_API}: header CorrelationID (uuid)")
R_FID = rule("fid-is-bank", "fid i stien er bankens eget organisasjonsnummer", f"{KFR_API}: path fid")
R_CUSTOMER = rule("customer-id-valid", "CustomerID er et gyldig fødselsnummer, D-nummer eller organisasjonsnummer", f"{KFR_API}: header CustomerID")
R_BOUNDARY = rule("boundary-unquoted", "boundary i Content-Type står uten anførselstegn", f"{KFR_FAQ}: batch-opplasting")
R_TOKEN_ISSUER = rule("token-issuer", "tokenet er utstedt av miljøets Maskinporten", MASKINPORTEN)
R_TOKEN_CONSUMER = rule("token-consumer", "tokenets consumer er 0192:<bankens orgnr>", MASKINPORTEN)
R_TOKEN_SCOPE = rule("token-scope", "tokenet har scopet operasjonen krever", f"{KFR_API}: security scopes")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def correlation_id_is_uuid(value: str | None) -> Verdict:
    if not value:
        return Verdict(R_CORRELATION, False, "CorrelationID mangler")
    if not _UUID.match(value):
        return Verdict(R_CORRELATION, False, f"«{value[:60]}» er ikke en UUID")
    return Verdict(R_CORRELATION, True)


def fid_is_bank(fid: str | None, bank_orgnr: str) -> Verdict:
    if fid == bank_orgnr:
        return Verdict(R_FID, True)
    return Verdict(R_FID, False, f"fid «{(fid or '')[:20]}» er ikke bankens {bank_orgnr}")


def customer_id_is_valid(value: str | None) -> Verdict:
    from conformance.ids import classify

    if not value:
        return Verdict(R_CUSTOMER, False, "CustomerID mangler")
    kind = classify(value)
    if kind is None:
        return Verdict(R_CUSTOMER, False, f"«{value[:20]}» er ikke et gyldig ID-nummer")
    return Verdict(R_CUSTOMER, True, kind)


def boundary_unquoted(content_type: str | None) -> Verdict:
    match = re.search(r"boundary=(\S+)", content_type or "", re.IGNORECASE)
    if match is None:
        return Verdict(R_BOUNDARY, False, "Content-Type har ingen boundary")
    if match.group(1).startswith(('"', "'")):
        return Verdict(R_BOUNDARY, False, "boundary står i anførselstegn")
    return Verdict(R_BOUNDARY, True)


def token_issuer_is(claims: Mapping[str, Any], issuer: str) -> Verdict:
    actual = str(claims.get("iss") or "")
    if actual.rstrip("/") == issuer.rstrip("/"):
        return Verdict(R_TOKEN_ISSUER, True, actual)
    return Verdict(R_TOKEN_ISSUER, False, f"utstedt av «{actual[:80]}», ikke {issuer}")


def token_consumer_is_bank(claims: Mapping[str, Any], bank_orgnr: str) -> Verdict:
    consumer = claims.get("consumer")
    value = consumer.get("ID") if isinstance(consumer, Mapping) else None
    if value == f"0192:{bank_orgnr}":
        return Verdict(R_TOKEN_CONSUMER, True, str(value))
    return Verdict(R_TOKEN_CONSUMER, False, f"consumer er «{str(value)[:40]}», ikke 0192:{bank_orgnr}")


def token_has_scope(claims: Mapping[str, Any], scope: str) -> Verdict:
    scopes = str(claims.get("scope") or "").split()
    if scope in scopes:
        return Verdict(R_TOKEN_SCOPE, True, scope)
    return Verdict(R_TOKEN_SCOPE, False, f"scope er «{' '.join(scopes)[:80]}», mangler {scope}")
