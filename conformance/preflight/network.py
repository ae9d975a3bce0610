"""A-7: the route to Maskinporten and KFR — which proxy the tool's HTTP client uses, DNS and
TCP probes, what a network error means (which layer, which host, which proxy), and the
clock against a server's ``Date`` header.

Clock skew is the local clock minus the server's ``Date`` (whole seconds, so +0.5 s), taken
at the midpoint of the exchange. Up to 5 s is ok; over 5 s a warning (it works, but the
header's resolution and network delay leave little margin); 10 s or more is red against
Maskinporten, which refuses assertions whose ``iat`` is more than about 10 s off its clock
(MP-130). Against KFR a skew is only a warning: KFR does not check ``iat``.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from conformance.auth import CLOCK_TOLERANCE_S
from conformance.preflight.lines import STEP_NETWORK, CheckLine, Status, make_line
from conformance.profile import BankEnvironment

CLOCK_WARN_S = 5.0
CLOCK_FAIL_S = CLOCK_TOLERANCE_S  # Maskinporten's window for iat (±10 s)
SOCKET_TIMEOUT_S = 3.0  # DNS and TCP probes

_NTP_ADVICE = (
    "Still maskinens klokke automatisk (NTP): på Linux «timedatectl set-ntp true», på "
    "Windows «w32tm /resync»; i en container følger klokken vertsmaskinen."
)


class _ProxyMarker(httpx.BaseTransport):
    """Stands in for a transport so the HTTP client's own mount rules say which proxy a URL
    gets (the choice ``make_http_client`` makes for real requests)."""

    def __init__(self, proxy: str | None) -> None:
        self.proxy = proxy

    def handle_request(self, request: httpx.Request) -> httpx.Response:  # pragma: no cover
        raise RuntimeError("a marker, not a transport")


def _mask_proxy(proxy: str) -> str:
    parts = urlsplit(proxy)
    if "@" not in parts.netloc:
        return proxy
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}").geturl()


def proxy_for(url: str) -> str | None:
    """The proxy (from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY) that the tool's HTTP
    client uses for ``url``, its password masked; None when it connects directly."""
    from conformance.kfr import _proxy_mounts  # the rules make_http_client mounts

    mounts = _proxy_mounts(_ProxyMarker)
    if not mounts:
        return None
    with httpx.Client(transport=_ProxyMarker(None), mounts=mounts, trust_env=False) as chooser:
        chosen = chooser._transport_for_url(httpx.URL(url))
    proxy = chosen.proxy if isinstance(chosen, _ProxyMarker) else None
    return _mask_proxy(proxy) if proxy else None


@dataclass(frozen=True)
class Endpoint:
    """A server the run talks to, and the route to it."""

    role: str          # "Maskinporten" | "KFR"
    base: str          # every request to this server starts with it
    url: str           # the harmless GET the network probe sends
    host: str
    port: int
    tls: bool
    proxy: str | None

    @classmethod
    def for_url(cls, role: str, base: str, probe_url: str) -> Endpoint:
        parts = urlsplit(base)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(role, base, probe_url, parts.hostname or "", port, tls, proxy_for(base))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def route(self) -> str:
        return f"via proxy {self.proxy}" if self.proxy else "direkte, uten proxy"

    @property
    def proxy_address(self) -> tuple[str, int] | None:
        if not self.proxy:
            return None
        parts = urlsplit(self.proxy if "://" in self.proxy else f"http://{self.proxy}")
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def endpoints(env: BankEnvironment) -> list[Endpoint]:
    issuer = env.maskinporten_issuer if env.maskinporten_issuer.endswith("/") else env.maskinporten_issuer + "/"
    kfr = env.kfr_base_url.rstrip("/") + "/"
    return [
        Endpoint.for_url("Maskinporten", issuer, issuer + ".well-known/oauth-authorization-server"),
        Endpoint.for_url("KFR", kfr, kfr),
    ]


@dataclass(frozen=True)
class NetworkProblem:
    """What went wrong on the way to a server. ``reached``: a connection was opened (the
    server or proxy then dropped it or stayed silent), so the host is not unreachable."""

    layer: str       # dns | tcp | timeout | tls | proxy | answer
    text: str
    advice: str
    reached: bool = False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_network_error(exc: BaseException, ep: Endpoint, ca: str) -> NetworkProblem:
    """Name the layer that failed, from the exception and its causes (httpx wraps the
    socket and ssl errors it meets)."""
    chain = list(_causes(exc))
    text = " ".join(str(e) for e in chain)
    proxy_target = f"proxyen {ep.proxy}" if ep.proxy else ep.address
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = next((str(e.verify_message) for e in chain if isinstance(e, ssl.SSLCertVerificationError)), "")
        return NetworkProblem(
            "tls", f"TLS-sertifikatet til {ep.host} kunne ikke verifiseres med {ca}"
            + (f" ({reason})" if reason else ""),
            "Står maskinen bak en TLS-inspiserende proxy, oppgi proxyens CA med --ca-bundle FIL.")
    ssl_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if ssl_error is not None:
        return NetworkProblem(
            "tls", f"TLS-forhandlingen med {ep.host} feilet ({ssl_error.reason or ssl_error})",
            "Kontroller at URL-en er https-adressen til tjenesten, og at proxyen slipper TLS gjennom.")
    if isinstance(exc, httpx.ProxyError):
        return NetworkProblem(
            "proxy", f"proxyen {ep.proxy} avviste forbindelsen til {ep.address} ({exc})",
            f"Be nettverksansvarlig åpne {ep.address} i proxyen, eller legg {ep.host} i NO_PROXY "
            "hvis den skal nås direkte.")
    gai = next((e for e in chain if isinstance(e, socket.gaierror)), None)
    if gai is not None:
        name = ep.proxy_address[0] if ep.proxy_address else ep.host
        return NetworkProblem(
            "dns", f"navnet {name}{' (proxyen)' if ep.proxy else ''} kan ikke slås opp i DNS "
            f"({gai.strerror or gai})",
            "Kontroller HTTPS_PROXY." if ep.proxy else
            "Kontroller vertsnavnet i URL-en og maskinens DNS; krever nettet en proxy, sett HTTPS_PROXY.")
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return NetworkProblem(
            "tcp", f"{proxy_target} tar ikke imot forbindelser (connection refused)",
            "Kontroller HTTPS_PROXY og NO_PROXY, og at proxyen kjører." if ep.proxy else
            "Ingen tjeneste lytter der: kontroller URL og port, og brannmuråpningen (A-7).")
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return NetworkProblem(
            "timeout", f"ingen svar fra {proxy_target} ved oppkobling (tidsavbrudd)",
            "Typisk en brannmur som mangler åpning mot verten (A-7), eller feil proxy.")
    if isinstance(exc, httpx.ConnectError):
        cause = next((e for e in chain if isinstance(e, OSError)), exc)
        return NetworkProblem(
            "tcp", f"kan ikke koble til {proxy_target} ({getattr(cause, 'strerror', None) or cause})",
            "Kontroller nettverket, brannmuråpningen (A-7) og HTTPS_PROXY/NO_PROXY.")
    return NetworkProblem(
        "answer", f"forbindelsen til {ep.host} ble åpnet, men ga ikke et fullstendig svar "
        f"({type(exc).__name__})",
        "Prøv igjen; skjer det hver gang, kontroller proxyen og brannmuren.", reached=True)


def clock_skew_s(date_header: str | None, sent_at: float, received_at: float) -> float | None:
    """Local clock minus the server's, from its ``Date`` header: seconds, None if absent."""
    if not date_header:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    # Date is truncated to whole seconds: the server's time was somewhere in [Date, Date+1).
    return (sent_at + received_at) / 2 - (server + 0.5)


def check_clock(ep: Endpoint, skew: float | None) -> CheckLine:
    check = f"clock.{ep.role.lower()}"
    if skew is None:
        return make_line(STEP_NETWORK, check, Status.WARN,
                         f"Svaret fra {ep.role} ({ep.host}) hadde ingen Date-header; klokkeavviket "
                         "kan ikke måles.", _NTP_ADVICE)
    direction = "foran" if skew > 0 else "bak"
    seconds = f"{abs(skew):.1f}".replace(".", ",")
    measured = f"Klokken her går {seconds} s {direction} {ep.role} ({ep.host}, Date-headeren)"
    details = {"skew_s": round(skew, 2), "host": ep.host}
    if abs(skew) <= CLOCK_WARN_S:
        return make_line(STEP_NETWORK, check, Status.OK, f"{measured}.", **details)
    if ep.role == "Maskinporten" and abs(skew) >= CLOCK_FAIL_S:
        return make_line(STEP_NETWORK, check, Status.FAIL,
                         f"{measured}; Maskinporten godtar bare ±{CLOCK_FAIL_S:.0f} s, så hver "
                         "tokenforespørsel avvises (MP-130).", _NTP_ADVICE, **details)
    return make_line(STEP_NETWORK, check, Status.WARN,
                     f"{measured}; over {CLOCK_WARN_S:.0f} s gir lite margin mot Maskinportens "
                     f"grense på ±{CLOCK_FAIL_S:.0f} s.", _NTP_ADVICE, **details)


def _resolve(host: str, port: int, timeout_s: float) -> list[str]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = future.result(timeout=timeout_s)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung resolver must not hang us
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_dns(ep: Endpoint) -> tuple[CheckLine, list[str]]:
    """The name this machine itself must resolve: the proxy's when one is used (the proxy
    resolves the target), else the target's."""
    host, port = ep.proxy_address or (ep.host, ep.port)
    who = f"proxyen {host}" if ep.proxy else host
    check = f"network.dns.{ep.role.lower()}"
    if _is_ip(host):
        return make_line(STEP_NETWORK, check, Status.OK,
                         f"{ep.role}: {who} er en IP-adresse (ikke noe DNS-oppslag); {ep.route}.",
                         host=host, proxy=ep.proxy), [host.strip("[]")]
    try:
        addresses = _resolve(host, port, SOCKET_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        return make_line(STEP_NETWORK, check, Status.FAIL,
                         f"{ep.role}: DNS svarte ikke på {SOCKET_TIMEOUT_S:.0f} s for {who}; TCP og "
                         "TLS ble ikke prøvd.",
                         "Kontroller maskinens DNS-oppsett (resolv.conf / nettverkskortet).",
                         host=host, proxy=ep.proxy), []
    except (socket.gaierror, UnicodeError, OSError) as exc:
        return make_line(STEP_NETWORK, check, Status.FAIL,
                         f"{ep.role}: navnet {who} kan ikke slås opp i DNS "
                         f"({getattr(exc, 'strerror', None) or exc}); TCP og TLS ble ikke prøvd.",
                         "Kontroller HTTPS_PROXY." if ep.proxy else
                         "Kontroller vertsnavnet i URL-en og maskinens DNS; krever nettet en proxy, "
                         "sett HTTPS_PROXY.", host=host, proxy=ep.proxy), []
    extra = f" (navnet {ep.host} slås opp av proxyen)" if ep.proxy else ""
    return make_line(STEP_NETWORK, check, Status.OK,
                     f"{ep.role}: {who} slås opp til {', '.join(addresses[:3])}{extra}.",
                     host=host, addresses=addresses, proxy=ep.proxy), addresses


def check_tcp(ep: Endpoint, addresses: list[str]) -> CheckLine:
    host, port = ep.proxy_address or (ep.host, ep.port)
    who = f"proxyen {ep.proxy}" if ep.proxy else f"{host}:{port}"
    check = f"network.tcp.{ep.role.lower()}"
    last: OSError | None = None
    for address in addresses[:4]:
        try:
            with socket.create_connection((address, port), timeout=SOCKET_TIMEOUT_S):
                return make_line(STEP_NETWORK, check, Status.OK,
                                 f"{ep.role}: TCP-forbindelse til {who} ({address}) åpnet.",
                                 host=host, port=port, proxy=ep.proxy)
        except OSError as exc:
            last = exc
    refused = isinstance(last, ConnectionRefusedError)
    timed_out = isinstance(last, TimeoutError)
    reason = ("connection refused" if refused else
              f"tidsavbrudd etter {SOCKET_TIMEOUT_S:.0f} s" if timed_out else
              (getattr(last, "strerror", None) or str(last)))
    advice = (
        "Kontroller HTTPS_PROXY/NO_PROXY og at proxyen kjører." if ep.proxy else
        "Ingen tjeneste lytter der: kontroller URL og port." if refused else
        f"Bestill brannmuråpning mot {ep.address} (A-7), eller sett HTTPS_PROXY hvis nettet krever proxy."
    )
    return make_line(STEP_NETWORK, check, Status.FAIL,
                     f"{ep.role}: TCP-forbindelse til {who} feilet ({reason}); TLS ble ikke prøvd.",
                     advice, host=host, port=port, proxy=ep.proxy)
