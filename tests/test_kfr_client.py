"""The KFR client: production refusal, the batch body, proxies and TLS, and (against the
sandbox over loopback HTTP) every operation, safe retries and evidence."""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import http.server
import ipaddress
import json
import random
import select
import socket
import socketserver
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conformance.auth import Credentials, MaskinportenAuth, MaskinportenClient
from conformance.errors import ProductionTargetError, TargetEnvironmentError
from conformance.evidence import EvidenceRecorder, Journal, RecordingTransport
from conformance.ids import (
    invalid_check_digit,
    synthetic_d_nummer,
    synthetic_fodselsnummer,
    synthetic_orgnr,
)
from conformance.kfr import (
    OMIT,
    KfrClient,
    batch_deadline_s,
    build_batch_text,
    build_multipart,
    make_http_client,
    refuse_production,
)
from conformance.sandbox import Faults

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
        "https://api\u3002bits\u3002no/kar-ws",  # ideographic full stops: httpx maps them to "."
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


# ---------------------------------------------------------------- against the sandbox

WRITE = "bits:kundeforhold.write"


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[EvidenceRecorder]:
    journal = Journal(tmp_path / "journal.jsonl")
    yield EvidenceRecorder(journal)
    journal.close()


def _client_for(sb, bank, recorder, *, timeout_s: float = 10, **kwargs) -> KfrClient:
    http = make_http_client(timeout_s=timeout_s, wrap=lambda t: RecordingTransport(t, recorder))
    mp = MaskinportenClient(
        issuer=sb.maskinporten_issuer,
        client_id=bank.client_id,
        credentials=Credentials.load(Path(bank.p12), password=bank.password),
        http=http,
    )
    kwargs.setdefault("backoff_s", 0.01)
    return KfrClient(
        sb.kfr_base_url, bank.orgnr, http=http, auth=MaskinportenAuth(mp, [WRITE]), **kwargs
    )


@pytest.fixture
def kfr(sandbox, bank, recorder) -> Iterator[KfrClient]:
    client = _client_for(sandbox, bank, recorder)
    yield client
    client.http.close()


def _kfr_exchanges(recorder, case=None) -> list[tuple[str, int | None]]:
    return [
        (e["operation"], e["response"]["status"] if e["response"] else None)
        for e in recorder.exchanges(case)
        if e["operation"] != "token"
    ]


def _own_bank(response, fid: str) -> bool:
    return any(b.get("organizationID") == fid for b in (response.json or {}).get("banks", []))


def test_relationship_lifecycle(kfr: KfrClient, bank) -> None:
    customer = synthetic_fodselsnummer()
    added = kfr.add(customer)
    assert (added.status, added.error_code) == (201, None)
    assert kfr.add(customer).status == 200
    found = kfr.lookup(customer)
    assert found.status == 200 and _own_bank(found, bank.orgnr)
    assert found.json["banks"][0]["activeAccount"] is False
    assert kfr.end(customer).status == 204
    missing = kfr.end(customer)
    assert (missing.status, missing.error_code) == (404, "KFR-008")
    assert missing.error_message
    yesterday = dt.date.today() - dt.timedelta(days=1)
    assert _own_bank(kfr.lookup(customer, from_date=yesterday, to_date=dt.date.today()), bank.orgnr)
    later = dt.date.today() + dt.timedelta(days=2)
    assert not _own_bank(kfr.lookup(customer, from_date=later, to_date=later), bank.orgnr)


def test_each_request_has_its_own_correlation_id_unless_given(kfr: KfrClient, recorder) -> None:
    customer = synthetic_d_nummer()
    first, second = kfr.add(customer), kfr.lookup(customer)
    ids = [
        e["request"]["headers"]["CorrelationID"]
        for e in recorder.exchanges(None)
        if e["operation"] != "token"
    ]
    assert len(set(ids)) == 2 and all(uuid.UUID(i).version == 4 for i in ids)
    assert [first.correlation_id, second.correlation_id] == ids  # echoed by KFR
    given = "0f7d3c2a-1b4e-4c5d-8e9f-a0b1c2d3e4f5"
    assert kfr.lookup(customer, correlation_id=given).correlation_id == given


def test_error_answers_are_returned_for_the_step_to_compare(
    kfr, bank, other_bank, sandbox, recorder
) -> None:
    customer = synthetic_fodselsnummer()
    cases = {
        "KFR-005": kfr.add(invalid_check_digit(customer)),
        "KFR-009": kfr.add(customer, rel_type="NOTATYPE"),
        "KFR-004": kfr.add(customer, correlation_id=OMIT),
        "KFR-003": kfr.add(customer, fid=other_bank.orgnr),
        "KFR-001": kfr.add(customer, auth=None),
        "KFR-002": kfr.add(customer, auth=MaskinportenAuth(kfr.auth.client, [bank.alt_scope])),
    }
    statuses = {code: (r.status, r.error_code) for code, r in cases.items()}
    assert statuses == {
        "KFR-005": (400, "KFR-005"),
        "KFR-009": (400, "KFR-009"),
        "KFR-004": (400, "KFR-004"),
        "KFR-003": (403, "KFR-003"),
        "KFR-001": (401, "KFR-001"),
        "KFR-002": (403, "KFR-002"),
    }
    requests = [
        e["request"]["headers"] for e in recorder.exchanges(None) if e["operation"] == "add"
    ]
    assert "CorrelationID" not in requests[2]  # OMIT leaves the header out entirely
    assert "Authorization" not in requests[4]  # auth=None sends no token
    agency = kfr.customer_relationships(customer)
    assert agency.status in (401, 403) and agency.error_code == "ERR-001"


def test_batch_then_wait_until_visible(kfr: KfrClient, bank, sandbox) -> None:
    start = dt.date(2019, 11, 8)
    with_date, without_date = synthetic_fodselsnummer(), synthetic_fodselsnummer()
    response = kfr.batch(build_batch_text([(with_date, start), (without_date, None)]))
    assert response.status == 201, response.body
    progress: list[tuple[int, int]] = []
    assert (
        kfr.wait_until_visible(
            [with_date, without_date], on_progress=lambda d, t: progress.append((d, t))
        )
        == []
    )
    assert progress[-1] == (2, 2)
    before_today = kfr.lookup(
        with_date, from_date=dt.date(2020, 1, 1), to_date=dt.date(2020, 1, 31)
    )
    assert _own_bank(before_today, bank.orgnr)  # the start date from the batch was kept


def test_batch_boundary_quirks_and_bad_dates(kfr: KfrClient) -> None:
    text = build_batch_text([(synthetic_fodselsnummer(), None)])
    assert kfr.batch(text, quote_boundary=True).status == 403
    assert kfr.batch(text, header_boundary="999999999999").status == 403
    bad = kfr.batch(f"{synthetic_fodselsnummer()}#2019-13-45")
    assert (bad.status, bad.error_code) == (400, "KFR-010")


def test_wait_until_visible_follows_a_rate_limited_ingestion(
    sandbox_factory, tmp_path, recorder
) -> None:
    sb = sandbox_factory(data_dir=tmp_path / "slow", ingest_rate=60)
    bank = sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b")
    kfr = _client_for(sb, bank, recorder)
    ids = [synthetic_fodselsnummer() for _ in range(30)]  # half a second at 60 IDs/s
    assert kfr.batch(build_batch_text((i, None) for i in ids)).status == 201
    progress: list[int] = []
    assert (
        kfr.wait_until_visible(ids, poll_s=0.05, on_progress=lambda d, t: progress.append(d)) == []
    )
    # It followed the ingestion: the first report came before all 30 were read.
    assert progress[0] < 30 and progress[-1] == 30 and progress == sorted(progress)
    lookups = sum(1 for op, _ in _kfr_exchanges(recorder) if op == "lookup")
    # A round stops at the first id not yet visible: one lookup per id plus one per round.
    assert lookups <= 30 + len(progress)
    kfr.http.close()


def test_wait_until_visible_gives_up_at_its_deadline(kfr: KfrClient, sandbox) -> None:
    sandbox.set_faults(Faults(misbehave=frozenset({"never_ingest"})))
    ids = [synthetic_fodselsnummer() for _ in range(3)]
    assert kfr.batch(build_batch_text((i, None) for i in ids)).status == 201
    started = time.monotonic()
    assert kfr.wait_until_visible(ids, timeout_s=0.3, poll_s=0.05) == ids
    assert time.monotonic() - started < 2


# ---------------------------------------------------------------- faults and retries


def test_lookup_is_retried_through_a_burst_of_500s(kfr, sandbox, recorder) -> None:
    customer = synthetic_fodselsnummer()
    kfr.add(customer)
    sandbox.set_faults(Faults(fail_next=2))
    assert kfr.lookup(customer).status == 200
    assert _kfr_exchanges(recorder)[-3:] == [("lookup", 500), ("lookup", 500), ("lookup", 200)]
    # Each attempt is a request of its own with its own CorrelationID: none is used twice,
    # so KFR's logs and verify see three requests, not one repeated ID.
    cids = [e["correlation_id"] for e in recorder.exchanges(None)[-3:]]
    assert len(set(cids)) == 3 and all(cids)


def test_add_is_never_repeated_after_a_500(kfr, sandbox, recorder, bank) -> None:
    customer = synthetic_fodselsnummer()
    sandbox.set_faults(Faults(fail_next=1))
    with pytest.raises(TargetEnvironmentError) as info:
        kfr.add(customer)
    message = info.value.diagnostics()
    assert "HTTP 500" in message and "ikke sendt på nytt" in message
    cid = recorder.exchanges(None)[-1]["correlation_id"]
    assert cid in message
    assert _kfr_exchanges(recorder) == [("add", 500)]
    assert not _own_bank(kfr.lookup(customer), bank.orgnr)


def test_end_and_batch_are_not_repeated_either(kfr, sandbox, recorder) -> None:
    customer = synthetic_fodselsnummer()
    kfr.add(customer)
    sandbox.set_faults(Faults(error_rate_504=1.0))
    with pytest.raises(TargetEnvironmentError, match="HTTP 504"):
        kfr.end(customer)
    with pytest.raises(TargetEnvironmentError, match="HTTP 504"):
        kfr.batch(build_batch_text([(synthetic_fodselsnummer(), None)]))
    assert _kfr_exchanges(recorder)[-2:] == [("end", 504), ("batch", 504)]


def test_dropped_connections_retry_lookups_but_not_adds(kfr, sandbox, recorder) -> None:
    customer = synthetic_fodselsnummer()
    sandbox.set_faults(Faults(drop_rate=1.0))
    with pytest.raises(TargetEnvironmentError, match="4 forsøk"):
        kfr.lookup(customer)
    with pytest.raises(TargetEnvironmentError, match="ikke sendt på nytt"):
        kfr.add(customer)
    ops = _kfr_exchanges(recorder)
    assert ops == [("lookup", None)] * 4 + [("add", None)]
    assert all(e["error"] for e in recorder.exchanges(None) if e["operation"] != "token")


def test_lookup_passes_after_a_dropped_connection(kfr, sandbox, recorder) -> None:
    customer = synthetic_fodselsnummer()
    kfr.add(customer)
    # A seed whose first draw drops and second does not, so the outcome is fixed.
    seed = next(
        s for s in range(1000) if (r := random.Random(s)).random() < 0.5 and r.random() >= 0.5
    )
    sandbox.set_faults(Faults(drop_rate=0.5, seed=seed))
    assert kfr.lookup(customer).status == 200
    assert _kfr_exchanges(recorder)[-2:] == [("lookup", None), ("lookup", 200)]


def test_timeouts_retry_lookups_but_not_adds(sandbox, bank, recorder) -> None:
    kfr = _client_for(sandbox, bank, recorder, timeout_s=0.15, retries=1)
    kfr.auth.client.token([WRITE])  # get the token before Maskinporten is slowed down too
    sandbox.set_faults(Faults(latency_ms=400))
    with pytest.raises(TargetEnvironmentError, match=r"2 forsøk.*Timeout"):
        kfr.lookup(synthetic_fodselsnummer())
    with pytest.raises(TargetEnvironmentError, match=r"Timeout.*ikke sendt på nytt"):
        kfr.add(synthetic_fodselsnummer())
    assert _kfr_exchanges(recorder) == [("lookup", None), ("lookup", None), ("add", None)]
    kfr.http.close()


def test_add_is_retried_when_it_never_reached_the_server(bank, recorder) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = make_http_client(wrap=lambda t: RecordingTransport(t, recorder))
    kfr = KfrClient(
        f"http://127.0.0.1:{port}/kar-ws/api/v1",
        bank.orgnr,
        http=http,
        auth=None,
        retries=2,
        backoff_s=0.01,
    )
    with pytest.raises(TargetEnvironmentError, match=r"3 forsøk.*ConnectError"):
        kfr.add(synthetic_fodselsnummer())
    assert [e["operation"] for e in recorder.exchanges(None)] == ["add"] * 3
    http.close()


def test_a_token_the_gateway_refuses_is_renewed_and_the_request_sent_anew(
    sandbox_factory, tmp_path, recorder
) -> None:
    """Behind Bits' gateway a revoked token gets the gateway's 401: the client renews the token
    once and sends the request again as a new request (new CorrelationID), both in evidence."""
    sb = sandbox_factory(realistic=True)
    bank = sb.register_bank(synthetic_orgnr(), name="Testbank AS", out_dir=tmp_path / "creds")
    client = _client_for(sb, bank, recorder)
    try:
        assert client.add(synthetic_fodselsnummer()).status == 201
        sb.revoke_tokens()
        assert client.add(synthetic_fodselsnummer()).status == 201
    finally:
        client.http.close()
    adds = [e for e in recorder.exchanges(None) if e["operation"] == "add"]
    assert [e["response"]["status"] for e in adds] == [201, 401, 201]
    refused, renewed = adds[1], adds[2]
    assert json.loads(refused["response"]["body"])["statusCode"] == 401  # the gateway's shape
    assert refused["request"]["token_sha256"] != renewed["request"]["token_sha256"]
    assert refused["correlation_id"] != renewed["correlation_id"]
