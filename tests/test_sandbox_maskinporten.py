"""The Maskinporten simulator over real HTTP: the JWT grant, its tokens, every refusal."""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.ids import synthetic_orgnr
from conformance.sandbox import BankCredentials, Faults, RunningSandbox, TestCA
from conformance.sandbox.assertion import load_key_and_cert, make_assertion
from conformance.sandbox.credentials import AGENCY_SCOPE, BANK_ALT_SCOPE, WRITE_SCOPE

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TRACE_ID = re.compile(r"\(trace_id: [0-9a-f]{32}\)$")


@pytest.fixture(scope="module")
def client(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> BankCredentials:
    """One registered bank for the whole module (certificates are slow to make)."""
    return sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path_factory.mktemp("mp-bank"))


@pytest.fixture(scope="module")
def http() -> Any:
    with httpx.Client(timeout=10) as c:
        yield c


def _assertion(sb: RunningSandbox, creds: BankCredentials, **kwargs: Any) -> str:
    key, cert = load_key_and_cert(creds)
    options: dict[str, Any] = {
        "client_id": creds.client_id,
        "audience": sb.maskinporten_issuer,
        "scopes": [WRITE_SCOPE],
        "key": key,
        "cert": cert,
    }
    options.update(kwargs)
    return make_assertion(**options)


def _post(
    http: httpx.Client, sb: RunningSandbox, assertion: str, grant_type: str = GRANT
) -> httpx.Response:
    return http.post(sb.token_endpoint, data={"grant_type": grant_type, "assertion": assertion})


def _assert_refused(response: httpx.Response, error: str, code: str | None) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "error_description", "error_uri"}
    assert body["error"] == error, body
    assert TRACE_ID.search(body["error_description"]), body["error_description"]
    if code:
        assert body["error_uri"].endswith("#" + code), body
    return body


# ---------------------------------------------------------------- metadata and success


def test_metadata_names_issuer_with_trailing_slash_and_token_endpoint(
    sandbox: RunningSandbox, http: httpx.Client
) -> None:
    meta = http.get(sandbox.maskinporten_issuer + ".well-known/oauth-authorization-server").json()
    assert meta["issuer"] == sandbox.maskinporten_issuer == sandbox.base_url + "/maskinporten/"
    assert meta["token_endpoint"] == sandbox.token_endpoint == sandbox.maskinporten_issuer + "token"
    assert meta["jwks_uri"] == sandbox.maskinporten_issuer + "jwk"
    assert GRANT in meta["grant_types_supported"]


def test_access_token_is_a_maskinporten_shaped_jwt_signed_by_the_published_key(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    response = _post(http, sandbox, _assertion(sandbox, client))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (
        body["token_type"] == "Bearer"
        and body["expires_in"] == 120
        and body["scope"] == WRITE_SCOPE
    )
    jwks = http.get(sandbox.maskinporten_issuer + "jwk").json()["keys"]
    header = jwt.get_unverified_header(body["access_token"])
    key = next(k for k in jwks if k["kid"] == header["kid"])
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        issuer=sandbox.maskinporten_issuer,
    )
    assert header["alg"] == "RS256"
    assert claims["client_id"] == client.client_id
    assert claims["client_amr"] == "virksomhetssertifikat"
    assert claims["consumer"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{client.orgnr}"}
    assert claims["scope"] == WRITE_SCOPE and claims["token_type"] == "Bearer"
    # iat whole seconds down, exp up: valid for at least the 120 s that expires_in says.
    assert claims["exp"] - claims["iat"] in (120, 121) and claims["jti"]


def test_a_key_registered_for_the_client_works_as_kid_instead_of_x5c(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    response = _post(http, sandbox, _assertion(sandbox, client, cert=None, kid=client.kid))
    assert response.status_code == 200, response.text


def test_several_scopes_and_the_faq_claims_nbf_are_accepted(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    assertion = _assertion(
        sandbox, client, scopes=[WRITE_SCOPE, BANK_ALT_SCOPE], claims={"nbf": int(time.time())}
    )
    response = _post(http, sandbox, assertion)
    assert response.status_code == 200, response.text
    assert response.json()["scope"].split() == [WRITE_SCOPE, BANK_ALT_SCOPE]


def test_agency_client_gets_only_its_own_scope(
    sandbox: RunningSandbox, http: httpx.Client, tmp_path: Path
) -> None:
    agency = sandbox.register_agency(synthetic_orgnr(), "Testetaten", tmp_path)
    assert (
        _post(http, sandbox, _assertion(sandbox, agency, scopes=[AGENCY_SCOPE])).status_code == 200
    )
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, agency, scopes=[WRITE_SCOPE])),
        "invalid_scope",
        "MP-200",
    )


# ---------------------------------------------------------------- refusals: client and certificate


def test_unknown_client_is_mp_100(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, client_id=str(uuid.uuid4()))),
        "invalid_grant",
        "MP-100",
    )


@pytest.mark.parametrize("audience", ["token_endpoint", "no_slash", "test_maskinporten"])
def test_wrong_audience_is_mp_110(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client, audience: str
) -> None:
    aud = {
        "token_endpoint": sandbox.token_endpoint,
        "no_slash": sandbox.maskinporten_issuer.rstrip("/"),
        "test_maskinporten": "https://test.maskinporten.no/",
    }[audience]
    body = _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, audience=aud)), "invalid_grant", "MP-110"
    )
    assert sandbox.maskinporten_issuer in body["error_description"]


def _x5c(*certs: Any) -> list[str]:
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certs]


def test_x5c_must_be_an_array_of_readable_certificates(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _, cert = load_key_and_cert(client)
    as_string = _assertion(sandbox, client, cert=None, headers={"x5c": _x5c(cert)[0]})
    _assert_refused(_post(http, sandbox, as_string), "invalid_grant", "MP-120")
    garbage = _assertion(sandbox, client, cert=None, headers={"x5c": ["not base64 DER!"]})
    _assert_refused(_post(http, sandbox, garbage), "invalid_grant", "MP-120")
    unreadable_ca = _assertion(
        sandbox, client, cert=None, headers={"x5c": [*_x5c(cert), "not base64 DER!"]}
    )
    _assert_refused(_post(http, sandbox, unreadable_ca), "invalid_grant", "MP-120")


def test_x5c_with_the_full_chain_is_accepted(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _, cert = load_key_and_cert(client)
    assertion = _assertion(sandbox, client, cert=None, headers={"x5c": _x5c(cert, sandbox.ca.cert)})
    response = _post(http, sandbox, assertion)
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["consumer"]["ID"] == f"0192:{client.orgnr}"


def _intermediate_ca(issuer_cert: Any, issuer_key: Any, name: str) -> tuple[Any, Any]:
    """A CA certificate signed by ``issuer``: what a chain's middle would hold."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def _leaf_under(ca_cert: Any, ca_key: Any, template: Any) -> tuple[Any, Any]:
    """A copy of the client's certificate (same subject, so the same orgnr) issued by ``ca``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    for extension in template.extensions:
        if extension.oid != x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            builder = builder.add_extension(extension.value, extension.critical)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    return builder.sign(ca_key, hashes.SHA256()), key


def test_x5c_chain_in_the_wrong_order_is_mp_120(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _, cert = load_key_and_cert(client)
    assertion = _assertion(sandbox, client, cert=None, headers={"x5c": _x5c(sandbox.ca.cert, cert)})
    body = _assert_refused(_post(http, sandbox, assertion), "invalid_grant", "MP-120")
    assert "x5c[0] is not issued by x5c[1]" in body["error_description"]


def test_x5c_chain_through_a_foreign_intermediate_is_mp_120(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client, tmp_path: Path
) -> None:
    _, cert = load_key_and_cert(client)
    foreign_ca = TestCA(tmp_path / "foreign")
    # Our leaf, with a CA after it that did not issue it.
    wrong_issuer = _assertion(
        sandbox, client, cert=None, headers={"x5c": _x5c(cert, sandbox.ca.cert, foreign_ca.cert)}
    )
    body = _assert_refused(_post(http, sandbox, wrong_issuer), "invalid_grant", "MP-120")
    assert "x5c[1] is not issued by x5c[2]" in body["error_description"]
    # A complete, well-ordered chain under another CA.
    leaf, key = _leaf_under(foreign_ca.cert, foreign_ca.key, cert)
    foreign_chain = _assertion(
        sandbox, client, key=key, cert=None, headers={"x5c": _x5c(leaf, foreign_ca.cert)}
    )
    body = _assert_refused(_post(http, sandbox, foreign_chain), "invalid_grant", "MP-120")
    assert "not trusted" in body["error_description"]
    # An intermediate signed by the sandbox CA, which may not have any (path length 0).
    middle, middle_key = _intermediate_ca(sandbox.ca.cert, sandbox.ca.key, "Uautorisert mellom-CA")
    leaf, key = _leaf_under(middle, middle_key, cert)
    for chain in (_x5c(leaf, middle), _x5c(leaf, middle, sandbox.ca.cert)):
        through_middle = _assertion(sandbox, client, key=key, cert=None, headers={"x5c": chain})
        body = _assert_refused(_post(http, sandbox, through_middle), "invalid_grant", "MP-120")
        assert "path to the trusted CA fails" in body["error_description"]
    # The same leaf without its intermediate: not directly issued by the sandbox CA.
    alone = _assertion(sandbox, client, key=key, cert=None, headers={"x5c": _x5c(leaf)})
    _assert_refused(_post(http, sandbox, alone), "invalid_grant", "MP-120")


def test_neither_x5c_nor_a_known_kid_is_mp_120(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, cert=None)), "invalid_grant", "MP-120"
    )
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, cert=None, kid="no-such-key")),
        "invalid_grant",
        "MP-120",
    )


def test_certificate_from_another_ca_is_mp_120(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client, tmp_path: Path
) -> None:
    foreign = TestCA(tmp_path).issue(client.orgnr, client.name)
    assertion = _assertion(sandbox, client, key=foreign.key, cert=foreign.cert)
    body = _assert_refused(_post(http, sandbox, assertion), "invalid_grant", "MP-120")
    assert "CA" in body["error_description"]


def test_expired_certificate_is_mp_121(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = sandbox.ca.issue(
        client.orgnr,
        client.name,
        not_before=now - dt.timedelta(days=800),
        not_after=now - dt.timedelta(days=1),
    )
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, key=expired.key, cert=expired.cert)),
        "invalid_grant",
        "MP-121",
    )


def test_certificate_for_another_orgnr_or_none_is_mp_122(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    other = sandbox.ca.issue(synthetic_orgnr(), "Annen Bank AS")
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, key=other.key, cert=other.cert)),
        "invalid_grant",
        "MP-122",
    )
    anonymous = sandbox.ca.issue(client.orgnr, client.name, include_orgnr=False)
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, key=anonymous.key, cert=anonymous.cert)),
        "invalid_grant",
        "MP-122",
    )


def test_signature_by_another_key_is_mp_124(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _, cert = load_key_and_cert(client)
    thief = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, key=thief, cert=cert)),
        "invalid_grant",
        "MP-124",
    )


def test_algorithms_other_than_rsa_are_mp_124(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _, cert = load_key_and_cert(client)
    claims = {
        "aud": sandbox.maskinporten_issuer,
        "iss": client.client_id,
        "scope": WRITE_SCOPE,
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "jti": str(uuid.uuid4()),
    }
    hs = jwt.encode(
        claims,
        "a-shared-secret-of-enough-length-32b",
        algorithm="HS256",
        headers={"x5c": _x5c(cert)},
    )
    _assert_refused(_post(http, sandbox, hs), "invalid_grant", "MP-124")
    es = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"x5c": _x5c(cert)},
    )
    _assert_refused(_post(http, sandbox, es), "invalid_grant", "MP-124")


# ---------------------------------------------------------------- refusals: the assertion's claims


@pytest.mark.parametrize(
    "case", ["expired", "too_long", "iat_future", "iat_past", "no_iat", "extra_claim", "nbf_future"]
)
def test_bad_times_and_undocumented_claims_are_mp_130(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client, case: str
) -> None:
    now = int(time.time())
    options: dict[str, Any] = {
        "expired": {"now": now - 100, "lifetime_s": 60},
        "too_long": {"lifetime_s": 300},
        "iat_future": {"now": now + 60},
        "iat_past": {"now": now - 30, "lifetime_s": 110},
        "no_iat": {"claims": {"iat": None}},
        "extra_claim": {"claims": {"sub": client.client_id}},
        "nbf_future": {"claims": {"nbf": now + 600}},
    }[case]
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, **options)), "invalid_grant", "MP-130"
    )


def test_reused_jti_is_mp_012(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    assertion = _assertion(sandbox, client)
    assert _post(http, sandbox, assertion).status_code == 200
    _assert_refused(_post(http, sandbox, assertion), "invalid_grant", "MP-012")


def test_scope_the_client_lacks_is_invalid_scope_mp_200(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, scopes=[WRITE_SCOPE, AGENCY_SCOPE])),
        "invalid_scope",
        "MP-200",
    )
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client, scopes=[])), "invalid_scope", "MP-200"
    )


# ---------------------------------------------------------------- refusals: the request itself


def test_malformed_requests_are_invalid_request(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    endpoint = sandbox.token_endpoint
    good = _assertion(sandbox, client)
    cases = [
        http.post(endpoint, json={"grant_type": GRANT, "assertion": good}),
        http.post(endpoint, data={"assertion": good}),
        http.post(endpoint, data={"grant_type": GRANT}),
        http.post(endpoint, data={"grant_type": GRANT, "assertion": "not.a.jwt"}),
        http.post(
            endpoint,
            content=f"grant_type={GRANT}&assertion={good}&assertion={good}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        http.post(
            endpoint,
            content=b"\xff\xfe",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
    ]
    for response in cases:
        _assert_refused(response, "invalid_request", None)


def test_other_grant_types_are_unsupported(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    _assert_refused(
        _post(http, sandbox, _assertion(sandbox, client), grant_type="client_credentials"),
        "unsupported_grant_type",
        None,
    )


def test_wrong_method_gets_json_not_a_traceback(
    sandbox: RunningSandbox, http: httpx.Client
) -> None:
    response = http.get(sandbox.token_endpoint)
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"


# ---------------------------------------------------------------- faults that concern Maskinporten


def test_token_lifetime_fault_makes_tokens_expire_early(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    sandbox.set_faults(Faults(token_lifetime_s=5))
    asked = time.time()
    body = _post(http, sandbox, _assertion(sandbox, client)).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert body["expires_in"] == 5 and claims["exp"] - claims["iat"] in (5, 6)
    # Valid for at least the stated lifetime, however late in its second it was issued.
    assert asked + 5 <= claims["exp"] <= time.time() + 6


def test_token_wrong_scope_misbehaviour_drops_the_write_scope(
    sandbox: RunningSandbox, client: BankCredentials, http: httpx.Client
) -> None:
    sandbox.set_faults(Faults(misbehave=frozenset({"token_wrong_scope"})))
    body = _post(http, sandbox, _assertion(sandbox, client)).json()
    assert WRITE_SCOPE not in body["scope"].split()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert WRITE_SCOPE not in claims["scope"].split()


_form_text = st.text(max_size=80)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    fields=st.dictionaries(
        st.sampled_from(["grant_type", "assertion", "scope", "client_id"]),
        _form_text | st.just(GRANT),
        max_size=4,
    ),
    jwt_like=st.lists(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
        min_size=3,
        max_size=3,
    ).map(".".join),
)
def test_arbitrary_token_requests_get_oauth_errors_never_a_500(
    sandbox: RunningSandbox, http: httpx.Client, fields: dict[str, str], jwt_like: str
) -> None:
    for data in (fields, {"grant_type": GRANT, "assertion": jwt_like}):
        response = http.post(sandbox.token_endpoint, data=data)
        assert response.status_code == 400, response.text
        assert response.json()["error"] in {
            "invalid_request",
            "invalid_grant",
            "unsupported_grant_type",
            "invalid_scope",
        }
