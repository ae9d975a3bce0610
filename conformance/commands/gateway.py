"""``kfr-conformance gateway``: the recording gateway in the foreground.

    kfr-conformance gateway --bank ORGNR --upstream test|sandbox|URL
                            [--listen HOST:PORT] [--tls] [--record DIR]

The bank points its core system's KFR base URL at the URL this prints. Every request is
forwarded unchanged to the upstream, recorded redacted in ``DIR/gateway.jsonl`` and checked
against KFR's contract; each finding is printed as it happens, one line with the rule id.
Production is refused before the gateway listens. Injections (503, 429, 401, "already
exists") are scheduled over the loopback control API: ``POST /_gateway/injections``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from conformance.errors import UsageError

# The gateway, the sandbox and python-stdnum are imported inside the handlers: building the
# parser (every command, ``--help``) must not load them.

UPSTREAM_HELP = "test (Bits' testmiljø), sandbox (start den innebygde) eller en URL til KFR"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="opptaksgateway: test bankens eget kjernesystem mot KFR",
        description="Opptaksgateway mellom bankens kjernesystem og KFR. Kjernesystemet bruker "
        "gatewayens URL som KFR-base-URL; hver forespørsel sendes uendret videre, tas opp "
        "(uten hemmeligheter) og kontrolleres mot KFRs kontrakt.",
    )
    parser.add_argument("--bank", required=True, metavar="ORGNR", help="bankens organisasjonsnummer")
    parser.add_argument("--upstream", required=True, metavar="MÅL", help=UPSTREAM_HELP)
    parser.add_argument(
        "--listen", default="127.0.0.1:0", metavar="HOST:PORT",
        help="hvor gatewayen lytter (standard 127.0.0.1:0 = en ledig port på loopback)",
    )
    parser.add_argument(
        "--tls", action="store_true",
        help="lytt med https og et sertifikat fra sandkassens CA (for kjernesystemer som krever https)",
    )
    parser.add_argument(
        "--record", type=Path, metavar="DIR",
        help="mappe for opptaket (standard reports/<orgnr>/gateway-<tidspunkt>)",
    )
    parser.add_argument("--client-id", metavar="ID", help="bankens Maskinporten-klient-ID (kontrolleres i tokenet)")
    parser.add_argument("--maskinporten-url", metavar="URL", help="Maskinporten-issueren tokenene skal komme fra")
    parser.add_argument(
        "--max-rate", type=float, metavar="N",
        help="største takt, forespørsler per sekund (standard 20; 0 = ingen grense)",
    )
    parser.add_argument("--ca-bundle", type=Path, metavar="PEM", help="ekstra CA for TLS mot upstream")
    parser.add_argument("--sandbox-data-dir", type=Path, metavar="DIR", help="sandkassens datamappe")
    parser.add_argument("--profile", type=Path, metavar="FIL", help="profilfil (standard kfr-conformance.toml)")
    parser.add_argument(
        "--allow-non-loopback", action="store_true",
        help="tillat å lytte på en adresse som ikke er loopback",
    )
    parser.set_defaults(func=cmd_gateway)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (loopback)."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, "0"
    host = host or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen «{value}» er ikke HOST:PORT (f.eks. 127.0.0.1:8480).")
    return host, int(port_text)


def _default_record_dir(settings: Any, orgnr: str) -> Path:
    import secrets

    reports = settings.path("reports_dir") or settings.cwd / "reports"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return reports / orgnr / f"gateway-{stamp}-{secrets.token_hex(3)}"


def cmd_gateway(args: argparse.Namespace) -> int:
    import signal
    import threading

    from conformance.gateway import GatewaySettings, RunningGateway
    from conformance.gateway.upstream import resolve_upstream
    from conformance.ids import require_orgnr
    from conformance.profile import load_settings

    orgnr = require_orgnr(args.bank)
    host, port = parse_listen(args.listen)
    options = {
        "client_id": args.client_id, "maskinporten_url": args.maskinporten_url,
        "ca_bundle": str(args.ca_bundle) if args.ca_bundle else None,
        "sandbox_data_dir": str(args.sandbox_data_dir) if args.sandbox_data_dir else None,
    }
    settings = load_settings(orgnr, options, profile=args.profile)
    upstream = resolve_upstream(args.upstream, settings)   # refuses production, may start a sandbox
    try:
        record_dir = args.record or _default_record_dir(settings, orgnr)
        tls_cert = tls_key = None
        ca_path = None
        if args.tls:
            from conformance.gateway.tls import issue_server_certificate
            from conformance.home import default_sandbox_dir
            from conformance.sandbox import TestCA

            data_dir = settings.path("sandbox_data_dir") or default_sandbox_dir()
            ca = TestCA(data_dir)
            tls_cert, tls_key = issue_server_certificate(ca, [host], data_dir / "gateway-tls")
            ca_path = ca.cert_path
        max_rate = args.max_rate if args.max_rate is not None else settings.get("max_rate", 20.0)
        gateway_settings = GatewaySettings(
            bank_orgnr=orgnr, upstream_url=upstream.kfr_base_url,
            maskinporten_issuer=upstream.maskinporten_issuer, env_name=upstream.env_name,
            client_id=upstream.client_id, host=host, port=port,
            allow_non_loopback=args.allow_non_loopback, tls_cert=tls_cert, tls_key=tls_key,
            record_dir=record_dir, upstream_ca_bundle=upstream.ca_bundle,
            max_rate=float(max_rate) or None,
        )
        gateway = RunningGateway(gateway_settings, on_stop=upstream.close)
    except BaseException:
        upstream.close()
        raise
    gateway.recorder.add_listener(_print_findings)
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        gateway.start()
        _print_banner(gateway, upstream, ca_path)
        gateway.serve_forever(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        gateway.stop()
    return _print_summary(gateway)


def _print_banner(gateway: Any, upstream: Any, ca_path: Path | None) -> None:
    print(f"KFR-base-URL for kjernesystemet: {gateway.kfr_base_url}")
    print(f"Videresender til:                {upstream.kfr_base_url} ({upstream.label})")
    print(f"Maskinporten-issuer:             {upstream.maskinporten_issuer}")
    for line in upstream.notes:
        print(line)
    if ca_path:
        print(f"TLS: kjernesystemet må stole på CA-en i {ca_path}")
    print(f"Opptak:                          {gateway.journal_path}")
    print(f"Injeksjoner:                     POST {gateway.base_url}/_gateway/injections")
    print("Funn skrives fortløpende, én linje per regel. Stopp med Ctrl-C.", flush=True)


def _print_findings(exchange: dict[str, Any]) -> None:
    request = exchange.get("request") or {}
    headers = {k.lower(): v for k, v in (request.get("headers") or {}).items()}
    customer = headers.get("customerid")
    when = str(exchange.get("started_at", ""))[11:23]
    where = f"{request.get('method')} {exchange.get('operation')}" + (f" {customer}" if customer else "")
    lines = []
    if exchange.get("injected"):
        status = (exchange.get("response") or {}).get("status")
        lines.append(f"INJEKSJON {when} {where}: gatewayen svarte {status} ({exchange['injected']})")
    for verdict in exchange.get("contract") or []:
        if not verdict["ok"]:
            lines.append(f"FUNN [{verdict['rule']}] {when} {where}: {verdict['reason']}")
    if lines:
        print("\n".join(lines), flush=True)


def _print_summary(gateway: Any) -> int:
    from collections import Counter

    findings = gateway.findings()
    by_rule = Counter(verdict["rule"] for _, verdict in findings)
    print(f"Gatewayen er stoppet. {gateway.last_seq} utvekslinger tatt opp i {gateway.journal_path}.")
    if by_rule:
        print("Funn per regel: " + ", ".join(f"{rule} {n}" for rule, n in sorted(by_rule.items())))
    else:
        print("Ingen funn mot KFRs kontrakt.")
    for report in gateway.injection_report():
        failed = [v for v in report["verdicts"] if not v["ok"]]
        outcome = "OK" if report["ok"] else "; ".join(f"[{v['rule']}] {v['reason']}" for v in failed) or report["status"]
        print(f"Robusthet #{report['id']} {report['injection']['kind']}: {outcome}")
    if gateway.recorder.write_error:
        print(f"kfr-conformance: opptaket kunne ikke skrives helt: {gateway.recorder.write_error}", file=sys.stderr)
        return 1
    return 0
