"""B-1/A-4: Maskinporten issues a token for the write scope (and the alternative scope),
and the token says what it should: scope, ``consumer`` (0192:orgnr), lifetime. Refusals
carry the MP code and the advice ``conformance.auth`` gives for it."""

from __future__ import annotations

import datetime as dt
import time

from conformance import contract
from conformance.errors import AuthError, ConformanceError, TargetEnvironmentError
from conformance.preflight.lines import (
    STEP_MASKINPORTEN,
    WRITE_SCOPE,
    CheckLine,
    Status,
    make_line,
)
from conformance.preflight.probe import Probe, decode_token

_ALT_SCOPE_ADVICE = (
    "Velg et scope klienten allerede har i Samarbeidsportalen (ikke bits:kundeforhold.write) "
    "og oppgi det med --alt-scope eller alt_scope i profilen; det trengs bare for raden "
    "«token uten skrivescope» (KFR-002)."
)


def _token_failure(probe: Probe, exc: ConformanceError, check: str, what: str,
                   advice: str | None = None) -> CheckLine:
    ep = probe.maskinporten_ep
    if isinstance(exc, AuthError):
        return make_line(STEP_MASKINPORTEN, check, Status.FAIL, f"{what}: {exc.message}.",
                     advice or exc.hint, mp_code=exc.mp_code, error=exc.error)
    problem = probe.problem(ep)
    if problem is not None:
        return make_line(STEP_MASKINPORTEN, check, Status.FAIL,
                     f"{what}: Maskinporten kan ikke nås – {problem.text} ({ep.route}).",
                     problem.advice, layer=problem.layer)
    return make_line(STEP_MASKINPORTEN, check, Status.FAIL, f"{what}: {exc.message}", exc.hint)


def check_token(probe: Probe) -> tuple[list[CheckLine], str | None]:
    """A token for the write scope and what it says: scope, consumer, lifetime."""
    assert probe.mp is not None
    what = f"Token for {WRITE_SCOPE}"
    try:
        token = probe.mp.fetch_token([WRITE_SCOPE])
    except (AuthError, TargetEnvironmentError) as exc:
        return [_token_failure(probe, exc, "maskinporten.token", what)], None
    left = max(0, round(token.expires_at - time.time()))
    lines = [make_line(STEP_MASKINPORTEN, "maskinporten.token", Status.OK,
                   f"Maskinporten utstedte token for {WRITE_SCOPE} (klient {probe.env.client_id}).",
                   expires_in_s=left)]
    decoded = decode_token(token.value)
    if decoded is None:
        lines.append(make_line(STEP_MASKINPORTEN, "maskinporten.claims", Status.WARN,
                           "Tokenet er ikke en JWT, så scope, consumer og levetid kan ikke leses.",
                           "Maskinporten utsteder JWT-er; kontroller --maskinporten-url."))
        return lines, token.value
    _, claims = decoded
    scope = contract.token_has_scope(claims, WRITE_SCOPE)
    lines.append(make_line(
        STEP_MASKINPORTEN, "maskinporten.scope", Status.OK if scope.ok else Status.FAIL,
        f"Tokenets scope: «{claims.get('scope', '')}»." if scope.ok
        else f"Tokenet mangler {WRITE_SCOPE}: {scope.reason}.",
        None if scope.ok else "Klienten får ikke skrivescopet: be Bits om tilgang til "
        f"{WRITE_SCOPE} og legg det til klienten i Samarbeidsportalen (B-1).",
        scope=claims.get("scope"), rule=scope.rule.id))
    consumer = contract.token_consumer_is_bank(claims, probe.env.orgnr)
    lines.append(make_line(
        STEP_MASKINPORTEN, "maskinporten.consumer", Status.OK if consumer.ok else Status.FAIL,
        f"Tokenets consumer er {consumer.reason} (banken)." if consumer.ok
        else f"Tokenet gjelder feil virksomhet: {consumer.reason}.",
        None if consumer.ok else "Klient-ID-en tilhører en annen virksomhet: bruk klienten "
        "banken selv har i Samarbeidsportalen (--client-id).",
        consumer=claims.get("consumer"), rule=consumer.rule.id))
    iat, exp = claims.get("iat"), claims.get("exp")
    if isinstance(iat, int | float) and isinstance(exp, int | float):
        lines.append(make_line(STEP_MASKINPORTEN, "maskinporten.lifetime", Status.OK,
                           f"Tokenet varer {exp - iat:.0f} s (utløper "
                           f"{dt.datetime.fromtimestamp(exp, dt.UTC):%H:%M:%S} UTC); verktøyet "
                           "fornyer det selv.", lifetime_s=exp - iat))
    else:
        lines.append(make_line(STEP_MASKINPORTEN, "maskinporten.lifetime", Status.WARN,
                           "Tokenet oppgir ikke iat/exp, så levetiden er ukjent.", None))
    return lines, token.value


def check_alt_scope(probe: Probe) -> CheckLine:
    """The alternative scope (a scope the client has that is not the write scope), for the
    row that shows KFR refuses a token without the write scope."""
    assert probe.mp is not None
    alt = probe.env.alt_scope
    if not alt:
        return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.WARN,
                     "Ingen alternativ scope er satt, så raden «token uten skrivescope» (KFR-002) "
                     "kan ikke kjøres automatisk.", _ALT_SCOPE_ADVICE)
    if WRITE_SCOPE in alt.split():
        return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.FAIL,
                     f"Den alternative scopen «{alt}» inneholder skrivescopet; raden trenger et "
                     "token uten det.", _ALT_SCOPE_ADVICE, scope=alt)
    what = f"Token for den alternative scopen {alt}"
    try:
        token = probe.mp.fetch_token(alt.split())
    except (AuthError, TargetEnvironmentError) as exc:
        scope_refused = isinstance(exc, AuthError) and (
            exc.mp_code == "MP-200" or exc.error == "invalid_scope")
        # MP-200 here means: pick another scope the client has (not: ask Bits for one).
        return _token_failure(probe, exc, "maskinporten.alt_scope", what,
                              _ALT_SCOPE_ADVICE if scope_refused else None)
    decoded = decode_token(token.value)
    claims = decoded[1] if decoded else {}
    if claims and contract.token_has_scope(claims, WRITE_SCOPE).ok:
        return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.FAIL,
                     f"Tokenet for «{alt}» har likevel {WRITE_SCOPE}; raden trenger et token uten det.",
                     _ALT_SCOPE_ADVICE, scope=claims.get("scope"))
    return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.OK,
                 f"Maskinporten utstedte token for den alternative scopen «{alt}» (uten skrivescopet).",
                 scope=claims.get("scope", token.scope))
