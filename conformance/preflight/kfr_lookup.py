"""C-1: KFR's test environment answers an own-bank lookup of a fresh synthetic person with
the bank's token. Any KFR-shaped answer proves KFR is reachable; the lookup writes nothing."""

from __future__ import annotations

import json
import re

from conformance.errors import TargetEnvironmentError
from conformance.preflight.lines import STEP_KFR, CheckLine, Status, make_line
from conformance.preflight.probe import Probe


def _kfr_shaped(body: bytes) -> str | None:
    """What kind of KFR answer a body is: 'kfr' (banks or errorCode), 'gateway' (the
    published statusCode/message shape), or None (not from KFR: a proxy or firewall page)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("banks"), list) or re.fullmatch(r"(KFR|ERR)-\d{3}", str(data.get("errorCode", ""))):
        return "kfr"
    if "statusCode" in data and "message" in data:
        return "gateway"
    return None


def check_kfr_lookup(probe: Probe, token: str | None) -> CheckLine:
    """C-1: KFR's test environment answers an own-bank lookup of a fresh synthetic id."""
    ep = probe.kfr_ep
    try:
        response = probe.lookup(token)
    except TargetEnvironmentError as exc:
        problem = probe.problem(ep)
        exchange = probe.last(ep)
        if problem is None and exchange is not None and exchange.status is not None:
            kind = _kfr_shaped(exchange.body)
            return make_line(STEP_KFR, "kfr.lookup", Status.WARN if kind else Status.FAIL,
                             f"KFR ({ep.host}) svarte HTTP {exchange.status} på oppslag for egen bank"
                             + ("; tjenesten nås, men hadde en feil." if kind else
                                ", og svaret kom ikke fra KFR (en proxy eller brannmur?)."),
                             "Prøv igjen om litt; vedvarer det, kontakt Bits (DSOP@bits.no)." if kind
                             else "Kontroller proxy og brannmur mot KFR-verten (A-7).",
                             status=exchange.status)
        return make_line(STEP_KFR, "kfr.lookup", Status.FAIL,
                         f"KFR kan ikke nås – {problem.text if problem else exc.message} ({ep.route}).",
                         problem.advice if problem else exc.hint)
    kind = _kfr_shaped(response.body)
    status = response.status
    details = {"status": status, "error_code": response.error_code,
               "correlation_id": response.correlation_id}
    if kind is None:
        return make_line(STEP_KFR, "kfr.lookup", Status.FAIL,
                         f"{ep.host} svarte HTTP {status}, men ikke som KFR (verken «banks» eller "
                         "errorCode); svaret kommer trolig fra en proxy eller brannmur.",
                         "Kontroller KFR-URL-en (--kfr-base-url) og proxyen (A-7).", **details)
    if status == 200:
        return make_line(STEP_KFR, "kfr.lookup", Status.OK,
                         f"KFR svarte 200 på oppslag for egen bank (CorrelationID "
                         f"{response.correlation_id}); ingenting ble skrevet.", **details)
    if token is None:
        return make_line(STEP_KFR, "kfr.lookup", Status.WARN,
                         f"KFR nås (svarte HTTP {status} uten token), men oppslaget kunne ikke "
                         "prøves med token.", "Rett Maskinporten-linjene over først.", **details)
    if status in (401, 403):
        who = "API-gatewayen" if kind == "gateway" else "KFR"
        return make_line(STEP_KFR, "kfr.lookup", Status.FAIL,
                         f"{who} avviste oppslaget med bankens token (HTTP {status}"
                         f"{' ' + response.error_code if response.error_code else ''}).",
                         "Bits gir tilgang i testmiljøet når registreringsskjemaet er godkjent (B-2, "
                         "C-1); kontroller også scope og consumer i linjene over.", **details)
    if status >= 500:
        return make_line(STEP_KFR, "kfr.lookup", Status.WARN,
                         f"KFR nås, men svarte HTTP {status} på oppslaget.",
                         "Prøv igjen om litt; vedvarer det, kontakt Bits (DSOP@bits.no).", **details)
    return make_line(STEP_KFR, "kfr.lookup", Status.WARN,
                     f"KFR nås, men svarte HTTP {status}"
                     f"{' ' + response.error_code if response.error_code else ''} på oppslaget.",
                     "Se svaret i KFR-dokumentasjonen; oppslag for egen bank skal gi 200.", **details)
