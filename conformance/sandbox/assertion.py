"""A minimal Maskinporten client for the sandbox's own use (``sandbox token``) and its tests.

The bank-side client with token caching and evidence lives in ``conformance.auth``; this
one only builds a JWT-grant assertion and exchanges it, so the sandbox does not depend on
the code it is used to test.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.errors import AuthError, CredentialError, SandboxError
from conformance.sandbox.credentials import BankCredentials

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def load_key_and_cert(creds: BankCredentials) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    try:
        cert = x509.load_pem_x509_certificate(creds.cert_pem.read_bytes())
        key = serialization.load_pem_private_key(
            creds.key_pem.read_bytes(), password=creds.password.encode() if creds.password else None
        )
    except (OSError, ValueError, TypeError) as exc:
        raise CredentialError(f"Kan ikke lese sertifikat/nøkkel for {creds.orgnr}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialError(f"Nøkkelen for {creds.orgnr} er ikke en RSA-nøkkel.")
    return key, cert


def make_assertion(
    *,
    client_id: str,
    audience: str,
    scopes: Iterable[str],
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate | None = None,
    kid: str | None = None,
    alg: str = "RS256",
    lifetime_s: int = 60,
    now: float | None = None,
    claims: Mapping[str, Any] | None = None,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT-grant assertion. The certificate goes in ``x5c`` (leaf only, as the KFR
    FAQ asks) unless ``kid`` is given. ``claims``/``headers`` override or add fields; a value
    of None removes one (tests use this to build wrong assertions)."""
    issued = int(now if now is not None else time.time())
    body: dict[str, Any] = {
        "aud": audience,
        "iss": client_id,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + lifetime_s,
        "jti": str(uuid.uuid4()),
    }
    head: dict[str, Any] = {"alg": alg}
    if kid is not None:
        head["kid"] = kid
    elif cert is not None:
        head["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    for target, extra in ((body, claims), (head, headers)):
        for name, value in (extra or {}).items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    header_fields = {k: v for k, v in head.items() if k != "alg"}
    # PyJWT adds typ "JWT" unless given one; None drops it, as Maskinporten advises.
    header_fields.setdefault("typ", None)
    return jwt.encode(body, key, algorithm=head.get("alg", alg), headers=header_fields)


def request_token(
    token_endpoint: str, assertion: str, *, http: httpx.Client | None = None
) -> dict[str, Any]:
    """Exchange an assertion for a token; Maskinporten's refusals become AuthError."""
    client = http or httpx.Client(timeout=10)
    try:
        response = client.post(
            token_endpoint, data={"grant_type": GRANT_TYPE, "assertion": assertion}
        )
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"Får ikke kontakt med Maskinporten-simulatoren på {token_endpoint}: {exc}"
        ) from exc
    finally:
        if http is None:
            client.close()
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code != 200 or "access_token" not in data:
        uri = str(data.get("error_uri", ""))
        code = uri.rsplit("#", 1)[-1] if "#MP-" in uri else None
        raise AuthError(
            f"Maskinporten-simulatoren avviste forespørselen ({data.get('error', response.status_code)}): "
            f"{data.get('error_description', response.text[:200])}",
            mp_code=code,
            error=data.get("error"),
        )
    return data


def obtain_token(
    creds: BankCredentials,
    issuer: str,
    scopes: Iterable[str],
    *,
    http: httpx.Client | None = None,
    use_kid: bool = False,
) -> str:
    """An access token for ``creds`` through the real JWT grant against ``issuer``."""
    key, cert = load_key_and_cert(creds)
    assertion = make_assertion(
        client_id=creds.client_id,
        audience=issuer,
        scopes=scopes,
        key=key,
        cert=None if use_kid else cert,
        kid=creds.kid if use_kid else None,
    )
    return str(request_token(issuer + "token", assertion, http=http)["access_token"])
