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
    "og oppgi det med --alt-scope eller alt_scope i profilen, eller kjør uten: det trengs bare "
    "for raden «token uten skrivescope» (KFR-18)."
)
_WRITE_SCOPE_ADVICE = (
    f"Klienten mangler {WRITE_SCOPE}, som hver rad trenger: Bits gir tilgang til scopet når "
    "registreringsskjemaet er godkjent (B-2); legg det så til klienten i Samarbeidsportalen (B-1)."
)
_FALLBACK = (
    "raden «token uten skrivescope» (KFR-18) kjøres da som etatsoppslag med skrivetokenet, "
    "som KFR avviser med samme KFR-002"
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
        refused_scope = isinstance(exc, AuthError) and (
            exc.mp_code == "MP-200" or exc.error == "invalid_scope")
        return [_token_failure(probe, exc, "maskinporten.token", what,
                               _WRITE_SCOPE_ADVICE if refused_scope else None)], None
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
    if scope.ok:
        lines.append(make_line(STEP_MASKINPORTEN, "maskinporten.scope", Status.OK,
                               f"Tokenets scope: «{claims.get('scope', '')}».",
                               scope=claims.get("scope"), rule=scope.rule.id))
    else:
        lines.append(make_line(STEP_MASKINPORTEN, "maskinporten.scope", Status.FAIL,
                               f"Tokenet mangler {WRITE_SCOPE}: {scope.reason}.", _WRITE_SCOPE_ADVICE,
                               scope=claims.get("scope"), rule=scope.rule.id))
    consumer = contract.token_consumer_is_bank(claims, probe.env.orgnr)
    if consumer.ok:
        lines.append(make_line(STEP_MASKINPORTEN, "maskinporten.consumer", Status.OK,
                               f"Tokenets consumer er {consumer.reason} (banken).",
                               consumer=claims.get("consumer"), rule=consumer.rule.id))
    else:
        lines.append(make_line(STEP_MASKINPORTEN, "maskinporten.consumer", Status.FAIL,
                               f"Tokenet gjelder feil virksomhet: {consumer.reason}.",
                               "Klient-ID-en tilhører en annen virksomhet: bruk klienten banken "
                               "selv har i Samarbeidsportalen (--client-id).",
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
    """The alternative scope (a scope the client has that is not the write scope) for the
    row that shows KFR refuses a token without the write scope. Without one, or when
    Maskinporten refuses it, the row falls back to an agency lookup with the write token,
    so neither is red; a scope that would give a write token is."""
    assert probe.mp is not None
    alt = probe.env.alt_scope
    if not alt:
        return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.OK,
                         f"Ingen alternativ scope er oppgitt: {_FALLBACK}.")
    if WRITE_SCOPE in alt.split():
        return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.FAIL,
                         f"Den alternative scopen «{alt}» inneholder skrivescopet; raden KFR-18 "
                         "trenger et token uten det.", _ALT_SCOPE_ADVICE, scope=alt)
    what = f"Token for den alternative scopen {alt}"
    try:
        token = probe.mp.fetch_token(alt.split())
    except AuthError as exc:
        if exc.mp_code == "MP-200" or exc.error == "invalid_scope":
            # The fix is a scope the client already has (not: ask Bits for this one).
            return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.WARN,
                             f"{what}: Maskinporten avviste scopet ({exc.mp_code or exc.error}); "
                             f"{_FALLBACK}.", _ALT_SCOPE_ADVICE, mp_code=exc.mp_code)
        return _token_failure(probe, exc, "maskinporten.alt_scope", what)
    except TargetEnvironmentError as exc:
        return _token_failure(probe, exc, "maskinporten.alt_scope", what)
    decoded = decode_token(token.value)
    claims = decoded[1] if decoded else {}
    if claims and contract.token_has_scope(claims, WRITE_SCOPE).ok:
        return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.FAIL,
                         f"Tokenet for «{alt}» har likevel {WRITE_SCOPE}; raden KFR-18 trenger "
                         "et token uten det.", _ALT_SCOPE_ADVICE, scope=claims.get("scope"))
    return make_line(STEP_MASKINPORTEN, "maskinporten.alt_scope", Status.OK,
                     f"Maskinporten utstedte token for den alternative scopen «{alt}» (uten "
                     "skrivescopet) til raden KFR-18.", scope=claims.get("scope", token.scope))
