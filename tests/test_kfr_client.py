"""The KFR client: production refusal, the batch body, proxies and TLS, and (against the
sandbox over loopback HTTP) every operation, safe retries and evidence."""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import http.server
import ipaddress
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conformance.errors import ProductionTargetError, TargetEnvironmentError
from conformance.kfr import (
    KfrClient,
    batch_deadline_s,
    build_batch_text,
    build_multipart,
    make_http_client,
    refuse_production,
)

FID = "910000004"


# ---------------------------------------------------------------- production refusal


@pytest.mark.parametrize(
    "url",
    [
        "https://api.bits.no/kar-ws/api/v1",
        "HTTPS://API.BITS.NO/kar-ws/api/v1",
        "https://api.bits.no./kar-ws/api/v1",
        "http://api.bits.no:8443/kar-ws",
        "https://user@api.bits.no/kar-ws",
        "api.bits.no/kar-ws/api/v1",
        "  https://api.bits.no  ",
        "https://maskinporten.no/",
        "https://maskinporten.no/token",
    ],
)
def test_production_urls_are_refused(url: str) -> None:
    with pytest.raises(ProductionTargetError) as info:
        refuse_production(url)
    assert "produksjon" in info.value.diagnostics()


@pytest.mark.parametrize(
    "url",
    [
        "https://preprod.api.bits.no/kar-ws/api/v1",
        "https://test.maskinporten.no/",
        "http://127.0.0.1:5000/kar-ws/api/v1",
        "https://api.bits.no.example.org/",
        "https://notapi.bits.no/",
    ],
)
def test_test_hosts_are_fine(url: str) -> None:
    refuse_production(url)


def test_client_refuses_production_before_any_request() -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(201))
    )
    with pytest.raises(ProductionTargetError):
        KfrClient("https://api.bits.no/kar-ws/api/v1", FID, http=http, auth=None)
    assert sent == []


# ---------------------------------------------------------------- batch helpers


def test_build_batch_text_matches_the_documented_format() -> None:
    text = build_batch_text(
        [
            ("922203687", dt.date(2019, 11, 8)),
            ("958069367", dt.date(2011, 11, 5)),
            ("917439389", None),
        ]
    )
    assert text == "922203687#2019-11-08,958069367#2011-11-05,917439389"


def test_batch_deadline_grows_with_the_batch_at_250_ids_per_second() -> None:
    assert batch_deadline_s(0) >= 5
    assert batch_deadline_s(25_000) - batch_deadline_s(0) >= 100  # 25 000 IDs take 100 s at 250/s
    assert batch_deadline_s(1000, rate=1000) < batch_deadline_s(1000)


def test_multipart_body_parses_as_the_two_documented_fields() -> None:
    body = build_multipart("873380600719114776488944", "DSOPBANK", "922203687#2019-11-08,917439389")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: multipart/form-data; boundary=873380600719114776488944\r\n\r\n" + body
    )
    parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
    assert parts["customer_type"].get_content().strip() == "DSOPBANK"
    assert parts["customers"].get_content_type() == "text/plain"
    assert parts["customers"].get_content().strip() == "922203687#2019-11-08,917439389"
    assert body.endswith(b"--873380600719114776488944--\r\n")


# ---------------------------------------------------------------- proxy and CA bundle


def _tls_material(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for kfr.test and 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Inspecting proxy test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kfr.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("kfr.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "srv.pem", tmp_path / "srv.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


class _LookupHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"banks":[{"organizationID":"910000004","bankName":"Testbank AS","activeAccount":false}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("CorrelationID", self.headers.get("CorrelationID", ""))
        self.end_headers()
        self.wfile.write(body)


class _ConnectProxy(socketserver.ThreadingTCPServer):
    """A forward proxy that tunnels every CONNECT to one local port and notes the target."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connects: list[str] = []
        super().__init__(("127.0.0.1", 0), _TunnelHandler)


class _TunnelHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(1024).decode("latin-1")
        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass
        method, target, _ = [*line.split(), "", "", ""][:3]
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.connects.append(target)  # type: ignore[attr-defined]
        upstream = socket.create_connection(("127.0.0.1", self.server.upstream_port), timeout=5)  # type: ignore[attr-defined]
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        sockets = [self.connection, upstream]
        try:
            for _ in range(1000):  # bounded: a test exchange needs a handful of rounds
                readable, _, _ = select.select(sockets, [], [], 5)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)
        except OSError:  # either side hung up (e.g. the client refused the certificate)
            return
        finally:
            upstream.close()


@pytest.fixture
def tls_behind_proxy(tmp_path: Path) -> Iterator[tuple[Path, _ConnectProxy, int]]:
    ca_file, cert_file, key_file = _tls_material(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LookupHandler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    proxy = _ConnectProxy(server.server_address[1])
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        for s in (server, proxy)
    ]
    for t in threads:
        t.start()
    yield ca_file, proxy, server.server_address[1]
    for s in (server, proxy):
        s.shutdown()
        s.server_close()


def _use_proxy(monkeypatch: pytest.MonkeyPatch, proxy: _ConnectProxy) -> None:
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")


def test_https_proxy_and_ca_bundle_are_honoured(tls_behind_proxy, monkeypatch) -> None:
    ca_file, proxy, _ = tls_behind_proxy
    _use_proxy(monkeypatch, proxy)
    with make_http_client(ca_bundle=ca_file, timeout_s=5) as http:
        kfr = KfrClient("https://kfr.test/kar-ws/api/v1", FID, http=http, auth=None)
        response = kfr.lookup("05909803219")
    assert response.status == 200
    assert response.json["banks"][0]["organizationID"] == FID
    assert proxy.connects == ["kfr.test:443"]


def test_untrusted_tls_gives_advice_and_is_not_retried(tls_behind_proxy, monkeypatch) -> None:
    _, proxy, _ = tls_behind_proxy
    _use_proxy(monkeypatch, proxy)
    with make_http_client(timeout_s=5) as http:
        kfr = KfrClient("https://kfr.test/kar-ws/api/v1", FID, http=http, auth=None, backoff_s=0)
        with pytest.raises(TargetEnvironmentError) as info:
            kfr.lookup("05909803219")
    assert "--ca-bundle" in info.value.diagnostics()
    assert proxy.connects == ["kfr.test:443"]  # one attempt: retrying cannot fix trust


def test_loopback_and_no_proxy_hosts_bypass_the_proxy(tls_behind_proxy, monkeypatch) -> None:
    ca_file, proxy, port = tls_behind_proxy
    _use_proxy(monkeypatch, proxy)
    with make_http_client(ca_bundle=ca_file, timeout_s=5) as http:
        kfr = KfrClient(f"https://127.0.0.1:{port}/kar-ws/api/v1", FID, http=http, auth=None)
        assert kfr.lookup("05909803219").status == 200
    assert proxy.connects == []  # the embedded sandbox on loopback is reached directly


def test_missing_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    from conformance.errors import CredentialError

    with pytest.raises(CredentialError, match="finnes ikke"):
        make_http_client(ca_bundle=tmp_path / "nope.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CredentialError, match="kan ikke leses"):
        make_http_client(ca_bundle=garbage)
