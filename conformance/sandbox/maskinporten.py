"""Maskinporten simulator: the JWT grant (RFC 7523) as Maskinporten does it, under /maskinporten/.

A client proves who it is with an assertion signed by its enterprise certificate (sent in
``x5c``) or by a key registered for it (``kid``). The checks, in order, and the MP code each
failure gets (``invalid_grant`` unless noted):

    not a form POST / missing or garbled fields      invalid_request
    grant_type other than jwt-bearer                 unsupported_grant_type
    alg not RS256/RS384/RS512, bad signature         MP-124
    iss not a registered client                      MP-100
    x5c/kid missing or malformed, not our CA         MP-120
    x5c chain out of order or through a foreign CA  MP-120
    certificate expired or not yet valid             MP-121
    certificate orgnr ≠ the client's orgnr           MP-122
    aud ≠ the issuer (trailing slash included)       MP-110
    iat/exp/nbf wrong, lifetime > 120 s, extra claim MP-130
    jti used before                                  MP-012
    scope the client does not have                   invalid_scope (MP-200)

``x5c`` may hold the leaf alone (what the KFR FAQ asks) or the full chain, leaf first and
then its issuing CA(s), as Digdir allows: each certificate must be issued by the next, and
the chain must end at (or be issued by) the sandbox CA and pass path validation against it.

Access tokens are RS256 JWTs signed by the simulator's own key (``token-signing-key.pem`` in
the data folder, so tokens survive a restart), published at ``/maskinporten/jwk``. Tokens
already issued can be revoked (``AccessTokens.revoke_all``): afterwards they are refused as
if invalid, while new ones work.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import verification as x509_verification
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.errors import SandboxError
from conformance.sandbox.context import SandboxContext
from conformance.sandbox.credentials import BANK_ALT_SCOPE, WRITE_SCOPE
from conformance.sandbox.files import create_once
from conformance.sandbox.pki import orgnr_from_certificate

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ALLOWED_ALGS = ("RS256", "RS384", "RS512")
ASSERTION_CLAIMS = frozenset(
    {"aud", "iss", "scope", "iat", "exp", "nbf", "jti", "resource", "consumer_org"}
)
MAX_ASSERTION_LIFETIME_S = 120
CLOCK_SKEW_S = 10
DEFAULT_TOKEN_LIFETIME_S = 120
MAX_FORM_BYTES = 64 * 1024
MAX_X5C_CERTIFICATES = 5
ERROR_URI = "https://docs.digdir.no/docs/Maskinporten/maskinporten_protocol_token#{code}"
SIGNING_KEY_FILE = "token-signing-key.pem"


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False).encode(),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


class GrantError(Exception):
    """A refused token request, as Maskinporten words it."""

    def __init__(self, error: str, code: str | None, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.code = code
        self.description = description

    def to_response(self) -> Response:
        trace_id = uuid.uuid4().hex
        return _json(
            {
                "error": self.error,
                "error_description": f"{self.description} (trace_id: {trace_id})",
                "error_uri": ERROR_URI.format(code=self.code or self.error),
            },
            status=400,
            headers={"Cache-Control": "no-store"},
        )


def _bad_request(description: str) -> GrantError:
    return GrantError("invalid_request", None, description)


def _invalid_grant(code: str, description: str) -> GrantError:
    return GrantError("invalid_grant", code, description)


class SigningKey:
    """The simulator's token-signing key, created once per data folder."""

    def __init__(self, data_dir: Path) -> None:
        pem = create_once(data_dir / SIGNING_KEY_FILE, self._make, private=True)
        try:
            # Made by the sandbox itself and kept private: no need for OpenSSL's ~50 ms RSA check.
            key = serialization.load_pem_private_key(
                pem, password=None, unsafe_skip_rsa_key_validation=True
            )
        except ValueError as exc:
            raise SandboxError(
                f"Sandkassens signeringsnøkkel {data_dir / SIGNING_KEY_FILE} er ødelagt.",
                hint="Slett filen; utstedte tokens blir da ugyldige.",
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SandboxError(
                f"Sandkassens signeringsnøkkel {data_dir / SIGNING_KEY_FILE} er ikke RSA."
            )
        self.private_key = key
        self.public_key = key.public_key()
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        # RFC 7638 thumbprint as kid: stable for the key, different for any other key.
        canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        self.jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @staticmethod
    def _make() -> bytes:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


class InvalidToken(Exception):
    pass


class AccessTokens:
    """Validates access tokens for the KFR side: our signature, a sandbox issuer, not expired,
    not revoked.

    The issuer is checked by shape (``…/maskinporten/``), not by port: the signing key is
    this data folder's own, so a token from an earlier run on another port (e.g. from
    ``sandbox token``) is still good, while a token signed by any other key is not.
    Validated tokens are cached (a client sends the same token many times); the expiry and
    revocation are still checked on every use.

    Revocation: the ``jti`` of every token this process issued is remembered until it
    expires; ``revoke_all`` moves them to the revoked set, and refuses tokens from other
    processes on the same data folder by their ``iat`` (issued in or before the second of
    the revocation).
    """

    _CACHE_SIZE = 4096

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._issued: dict[str, float] = {}  # jti -> exp, tokens issued here and not revoked
        self._revoked: dict[str, float] = {}  # jti -> exp
        self._revoked_through: int | None = None  # iat cut-off for tokens issued elsewhere

    def issued(self, claims: Mapping[str, Any]) -> None:
        """Remember a token this process issued (so a revocation can name it)."""
        with self._lock:
            self._prune()
            self._issued[str(claims["jti"])] = float(claims["exp"])

    def revoke_all(self) -> int:
        """Revoke every token issued so far; returns how many unexpired ones this process
        had issued."""
        with self._lock:
            self._prune()
            count = len(self._issued)
            self._revoked.update(self._issued)
            self._issued.clear()
            self._revoked_through = int(time.time())
            return count

    def _prune(self) -> None:
        now = time.time()
        for table in (self._issued, self._revoked):
            if len(table) > self._CACHE_SIZE:
                for jti in [j for j, exp in table.items() if exp <= now]:
                    del table[jti]

    def _is_revoked(self, claims: Mapping[str, Any]) -> bool:
        jti = claims.get("jti")
        with self._lock:
            if jti in self._revoked:
                return True
            if self._revoked_through is None or jti in self._issued:
                return False
        iat = claims.get("iat")
        return not _number(iat) or iat <= self._revoked_through

    def verify(self, token: str) -> dict[str, Any]:
        claims = self._cache.get(token)
        if claims is None:
            try:
                claims = jwt.decode(
                    token,
                    self._key.public_key,
                    algorithms=["RS256"],
                    options={"require": ["exp", "iat", "iss"], "verify_aud": False},
                )
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc)) from exc
            issuer = claims.get("iss")
            if not isinstance(issuer, str) or not issuer.endswith("/maskinporten/"):
                raise InvalidToken("not issued by the sandbox's Maskinporten")
            if not isinstance(claims.get("scope", ""), str):
                raise InvalidToken("scope is not a string")
            with self._lock:
                if len(self._cache) >= self._CACHE_SIZE:
                    self._cache.clear()
                self._cache[token] = claims
        if claims["exp"] <= time.time():
            raise InvalidToken("token expired")
        if self._is_revoked(claims):
            raise InvalidToken("token revoked")
        return claims


def consumer_orgnr(claims: Mapping[str, Any]) -> str | None:
    consumer = claims.get("consumer")
    if isinstance(consumer, dict):
        ident = consumer.get("ID")
        if isinstance(ident, str) and ident.startswith("0192:"):
            return ident[5:]
    return None


@dataclass
class _Assertion:
    header: dict[str, Any]
    claims: dict[str, Any]


def _parse_assertion(assertion: str) -> _Assertion:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _bad_request(
            "Invalid assertion: the assertion is not a well-formed signed JWT."
        ) from exc
    if not isinstance(claims, dict):
        raise _bad_request("Invalid assertion: the JWT payload is not a JSON object.")
    return _Assertion(header=header, claims=claims)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class JwtGrant:
    """The token endpoint's logic, apart from HTTP."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx

    def _certificates(self, header: dict[str, Any], client_id: str) -> list[x509.Certificate]:
        """The client's certificate, first, then any CA certificates ``x5c`` carried."""
        x5c = header.get("x5c")
        kid = header.get("kid")
        if x5c is not None:
            if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
                raise _invalid_grant(
                    "MP-120",
                    "Invalid assertion: x5c must be a JSON array of base64-encoded DER certificates.",
                )
            if len(x5c) > MAX_X5C_CERTIFICATES:
                raise _invalid_grant(
                    "MP-120",
                    f"Invalid assertion: x5c holds more than {MAX_X5C_CERTIFICATES} certificates.",
                )
            chain = []
            for position, encoded in enumerate(x5c):
                try:
                    der = base64.b64decode(encoded, validate=True)
                    chain.append(x509.load_der_x509_certificate(der))
                except (ValueError, binascii.Error) as exc:
                    raise _invalid_grant(
                        "MP-120",
                        f"Invalid assertion: certificate {position} in x5c cannot be read.",
                    ) from exc
            return chain
        if kid is not None:
            pem = self.ctx.store.client_key(client_id, str(kid))
            if pem is None:
                raise _invalid_grant(
                    "MP-120",
                    f"Invalid assertion: kid «{kid}» is not a key registered for the client.",
                )
            return [x509.load_pem_x509_certificate(pem.encode())]
        raise _invalid_grant("MP-120", "Invalid assertion: the header has neither x5c nor kid.")

    def _check_chain(self, chain: list[x509.Certificate]) -> None:
        """The leaf must chain to the sandbox CA: alone, issued by it directly; with CA
        certificates after it, each issued by the next, ending at (or issued by) the
        sandbox CA, and valid as a path under it (CA flags, path length, validity)."""
        ca = self.ctx.ca
        leaf, carried = chain[0], chain[1:]
        if not carried:
            if not ca.issued_by_me(leaf):
                raise _invalid_grant(
                    "MP-120",
                    "Invalid certificate: not issued by a trusted CA (the sandbox's test CA).",
                )
            return
        for position, (child, parent) in enumerate(zip(chain, carried, strict=False)):
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
                raise _invalid_grant(
                    "MP-120",
                    f"Invalid certificate chain: x5c[{position}] is not issued by x5c[{position + 1}]; "
                    "x5c must start with the client's certificate, followed by its issuing CA(s).",
                ) from exc
        top = chain[-1]
        if top != ca.cert and not ca.issued_by_me(top):
            raise _invalid_grant(
                "MP-120",
                "Invalid certificate chain: x5c leads to a CA that is not trusted "
                "(not the sandbox's test CA).",
            )
        now = dt.datetime.now(dt.UTC)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return  # MP-121 follows: an expired client certificate is named as such
        try:
            verifier = (
                x509_verification.PolicyBuilder()
                .time(now)
                .store(x509_verification.Store([ca.cert]))
                .max_chain_depth(MAX_X5C_CERTIFICATES)
                .extension_policies(
                    ca_policy=x509_verification.ExtensionPolicy.webpki_defaults_ca(),
                    ee_policy=x509_verification.ExtensionPolicy.permit_all(),
                )
                .build_client_verifier()
            )
            verifier.verify(leaf, [c for c in carried if c != ca.cert])
        except (x509_verification.VerificationError, ValueError, UnsupportedAlgorithm) as exc:
            detail = str(exc).split(" (encountered")[0][:200]
            raise _invalid_grant(
                "MP-120", f"Invalid certificate chain: the path to the trusted CA fails: {detail}."
            ) from exc

    def grant(self, assertion: str) -> dict[str, Any]:
        ctx = self.ctx
        parsed = _parse_assertion(assertion)
        header, claims = parsed.header, parsed.claims
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise _invalid_grant(
                "MP-124",
                f"Invalid assertion: alg «{alg}» is not allowed (use RS256, RS384 or RS512).",
            )
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise _invalid_grant("MP-100", "Invalid assertion: iss (the client id) is missing.")
        client = ctx.store.client(iss)
        if client is None:
            raise _invalid_grant("MP-100", f"Invalid client: client id «{iss[:80]}» is unknown.")

        chain = self._certificates(header, client.client_id)
        self._check_chain(chain)
        cert = chain[0]
        now_dt = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now_dt <= cert.not_valid_after_utc:
            raise _invalid_grant(
                "MP-121", "Invalid certificate: the certificate is expired or not yet valid."
            )
        cert_orgnr = orgnr_from_certificate(cert)
        if cert_orgnr != client.orgnr:
            raise _invalid_grant(
                "MP-122",
                f"Invalid certificate: the certificate's organisation number ({cert_orgnr or 'none'}) "
                f"is not the client's ({client.orgnr}).",
            )
        try:
            jwt.decode(
                assertion,
                cert.public_key(),
                algorithms=[str(alg)],  # type: ignore[arg-type]
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise _invalid_grant(
                "MP-124",
                "Invalid assertion: the signature does not verify with the client's certificate.",
            ) from exc

        aud = claims.get("aud")
        if aud != ctx.issuer:
            hint = (
                " The token endpoint is no longer accepted as audience."
                if aud == ctx.token_endpoint
                else ""
            )
            raise _invalid_grant("MP-110", f"Invalid assertion: aud must be «{ctx.issuer}».{hint}")
        now = ctx.now()  # shifted by Faults.clock_offset_s
        iat, exp = claims.get("iat"), claims.get("exp")
        if not _number(iat) or not _number(exp):
            raise _invalid_grant("MP-130", "Invalid assertion: iat and exp are required numbers.")
        if exp + CLOCK_SKEW_S < now:
            raise _invalid_grant("MP-130", "Invalid assertion: the assertion has expired (exp).")
        if abs(iat - now) > CLOCK_SKEW_S:
            raise _invalid_grant(
                "MP-130",
                f"Invalid assertion: iat is more than {CLOCK_SKEW_S} s from Maskinporten's clock.",
            )
        if exp <= iat or exp - iat > MAX_ASSERTION_LIFETIME_S:
            raise _invalid_grant(
                "MP-130",
                f"Invalid assertion: exp must be after iat and at most {MAX_ASSERTION_LIFETIME_S} s later.",
            )
        nbf = claims.get("nbf")
        if nbf is not None and (not _number(nbf) or nbf > now + CLOCK_SKEW_S):
            raise _invalid_grant("MP-130", "Invalid assertion: nbf is in the future.")
        extra = sorted(set(claims) - ASSERTION_CLAIMS)
        if extra:
            raise _invalid_grant(
                "MP-130", f"Invalid assertion: undocumented claims {', '.join(extra)}."
            )
        consumer_org = claims.get("consumer_org")
        if consumer_org is not None and consumer_org != client.orgnr:
            raise _invalid_grant(
                "MP-122",
                "Invalid assertion: consumer_org given, but the sandbox has no delegations.",
            )
        resource = claims.get("resource")
        if resource is not None and not (
            isinstance(resource, list) and all(isinstance(r, str) for r in resource)
        ):
            raise _bad_request("Invalid assertion: resource must be an array of strings.")

        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.split():
            raise GrantError("invalid_scope", "MP-200", "Invalid scope: no scope was requested.")
        requested = list(dict.fromkeys(scope.split()))
        missing = [s for s in requested if s not in client.scopes]
        if missing:
            raise GrantError(
                "invalid_scope",
                "MP-200",
                f"Invalid scope: the client does not have access to {' '.join(missing)}.",
            )

        jti = claims.get("jti")
        if jti is not None:
            if not isinstance(jti, str) or not jti:
                raise _invalid_grant("MP-130", "Invalid assertion: jti must be a non-empty string.")
            if not ctx.store.use_jti(client.client_id, jti, float(exp) + CLOCK_SKEW_S):
                raise _invalid_grant(
                    "MP-012", "Invalid assertion: the jti has been used before (replay)."
                )

        granted = requested
        if ctx.misbehaves("token_wrong_scope"):
            granted = [s for s in requested if s != WRITE_SCOPE] or [BANK_ALT_SCOPE]
        lifetime = ctx.faults.token_lifetime_s or DEFAULT_TOKEN_LIFETIME_S
        issued_at = int(now)
        # exp rounded up, iat down (whole seconds, as Maskinporten's): a token is valid for at
        # least the expires_in it states. Rounded down, a 1 s token issued at x.999 s was dead
        # a millisecond later — a sandbox artefact, not a client's mistake.
        expires_at = math.ceil(now) + lifetime
        token_claims: dict[str, Any] = {
            "iss": ctx.issuer,
            "client_amr": "virksomhetssertifikat",
            "token_type": "Bearer",
            "scope": " ".join(granted),
            "client_id": client.client_id,
            "consumer": {"authority": "iso6523-actorid-upis", "ID": f"0192:{client.orgnr}"},
            "iat": issued_at,
            "exp": expires_at,
            "jti": str(uuid.uuid4()),
        }
        if resource:
            token_claims["aud"] = resource[0] if len(resource) == 1 else resource
        ctx.tokens.issued(token_claims)
        return {
            "access_token": ctx.signing_key.sign(token_claims),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(granted),
        }


async def _read_form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise _bad_request("The request must be application/x-www-form-urlencoded.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _bad_request("The request body is too large.")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad_request("The request body is not valid form data.") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _bad_request(f"The parameter {name} is given more than once.")
        form[name] = value
    return form


async def token(request: Request) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    try:
        form = await _read_form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _bad_request("grant_type is missing.")
        if grant_type != GRANT_TYPE:
            raise GrantError(
                "unsupported_grant_type", None, f"Unsupported grant_type «{grant_type[:100]}»."
            )
        assertion = form.get("assertion")
        if not assertion:
            raise _bad_request("assertion is missing.")
        result = JwtGrant(ctx).grant(assertion)
    except GrantError as exc:
        return exc.to_response()
    return _json(result, headers={"Cache-Control": "no-store"})


async def metadata(request: Request) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    return _json(
        {
            "issuer": ctx.issuer,
            "token_endpoint": ctx.token_endpoint,
            "jwks_uri": ctx.issuer + "jwk",
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_signing_alg_values_supported": list(ALLOWED_ALGS),
        }
    )


async def jwks(request: Request) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    return _json({"keys": [ctx.signing_key.jwk]})


ROUTES = [
    Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
    Route("/jwk", jwks, methods=["GET"]),
    Route("/token", token, methods=["POST"]),
]
