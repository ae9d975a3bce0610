"""The bank's side of Maskinporten: its enterprise certificate and the JWT grant.

``Credentials`` loads the virksomhetssertifikat (PKCS#12, or PEM certificate + key) and
reads the organisation number out of it. ``MaskinportenClient`` signs a JWT assertion with
it (RFC 7523), exchanges it for an access token, caches tokens per scope set and turns
Maskinporten's MP error codes into advice a bank's IT can act on. ``MaskinportenAuth``
plugs the token into httpx and renews it when KFR answers 401.

The token request goes through the same ``httpx.Client`` as the KFR calls, so the
evidence recorder (a transport under the client) records it too, redacted.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from conformance.errors import AuthError, CredentialError, TargetEnvironmentError
from conformance.kfr import describe_transport_error, refuse_production

__all__ = [
    "AccessToken",
    "Credentials",
    "MaskinportenAuth",
    "MaskinportenClient",
    "orgnr_from_certificate",
]

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ORGNR = re.compile(r"(?<!\d)(\d{9})(?!\d)")
_MP_CODE = re.compile(r"MP-\d{3}")
# Maskinporten refuses assertions whose iat is more than about 10 s off its own clock.
CLOCK_TOLERANCE_S = 10.0


# ---------------------------------------------------------------- credentials


def orgnr_from_certificate(cert: x509.Certificate) -> str | None:
    """The organisation number in a Norwegian enterprise certificate's subject.

    SEID 2 certificates carry ``organizationIdentifier=NTRNO-<orgnr>``; older (SEID 1) ones
    ``serialNumber=<orgnr>``; some validators also accept ``O=<name>-<orgnr>``.
    """
    subject = cert.subject
    for attr in subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        value = str(attr.value).strip()
        if value.upper().startswith("NTRNO-") and re.fullmatch(r"\d{9}", value[6:]):
            return value[6:]
    for attr in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = str(attr.value).strip()
        if re.fullmatch(r"\d{9}", value):
            return value
    for attr in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        match = re.search(r"-\s*(\d{9})\s*$", str(attr.value))
        if match:
            return match.group(1)
    return None


def _first_attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def _password_bytes(password: str | bytes | None) -> bytes | None:
    if password is None or password in ("", b""):
        return None
    return password.encode("utf-8") if isinstance(password, str) else password


_LOADED: dict[str, Credentials] = {}
_LOADED_LOCK = threading.Lock()


def _cache_key(data: bytes, password: str | bytes | None, key_path: Path | None) -> str:
    digest = hashlib.sha256(data)
    digest.update(b"\0" + (_password_bytes(password) or b""))
    if key_path is not None:
        try:
            digest.update(b"\0" + Path(key_path).read_bytes())
        except OSError:
            digest.update(b"\0" + str(key_path).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Credentials:
    """An enterprise certificate with its RSA private key (and any intermediate certificates)."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, rsa.RSAPrivateKey):
            raise CredentialError(
                "Nøkkelen er ikke en RSA-nøkkel. Maskinporten godtar bare RS256/RS384/RS512 "
                "(The key is not RSA; Maskinporten accepts RSA signatures only).",
                hint="Bruk autentiseringssertifikatet fra Buypass eller Commfides (RSA).",
            )
        if not isinstance(self.certificate.public_key(), rsa.RSAPublicKey):
            raise CredentialError(
                "Sertifikatet har ikke en RSA-nøkkel (the certificate's key is not RSA)."
            )
        if _public_der(self.certificate.public_key()) != _public_der(self.private_key.public_key()):
            raise CredentialError(
                "Den private nøkkelen hører ikke til sertifikatet "
                "(the private key does not match the certificate).",
                hint="Kontroller at nøkkelfilen og sertifikatet kommer fra samme bestilling.",
            )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        password: str | bytes | None = None,
        key_path: Path | None = None,
    ) -> Credentials:
        """Load a PKCS#12 file (``.p12``/``.pfx``) or a PEM certificate, with the key in the
        same PEM file or in ``key_path``. Raises :class:`CredentialError` with a plain message."""
        path = Path(path)
        data = _read(path, "Sertifikatfilen")
        # The run, each worker and the pack step all load the same file: decrypting a
        # PKCS#12 costs tens of milliseconds, so one process does it once per content.
        key = _cache_key(data, password, key_path)
        with _LOADED_LOCK:
            cached = _LOADED.get(key)
        if cached is not None:
            return cached
        if _looks_like_pem(data):
            loaded = cls._from_pem(path, data, password=password, key_path=key_path)
        elif key_path is not None:
            raise CredentialError(
                f"{path} er ikke en PEM-fil, men en nøkkelfil ble oppgitt "
                f"({path} is not PEM; a separate key file only goes with a PEM certificate)."
            )
        else:
            loaded = cls._from_pkcs12(path, data, password)
        with _LOADED_LOCK:
            _LOADED[key] = loaded
        return loaded

    @classmethod
    def _from_pkcs12(cls, path: Path, data: bytes, password: str | bytes | None) -> Credentials:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, _password_bytes(password))
        except ValueError as exc:
            if not data.startswith(b"\x30"):  # not even a DER SEQUENCE: not a PKCS#12 file
                raise CredentialError(
                    f"{path} er verken en PKCS#12-fil (.p12/.pfx) eller en PEM-fil "
                    f"({path} is neither PKCS#12 nor PEM)."
                ) from exc
            raise CredentialError(
                f"{path} kan ikke åpnes: feil passord, eller filen er skadet "
                f"(wrong password or damaged PKCS#12 file).",
                hint="Oppgi passordet med --cert-password-env VARIABEL.",
            ) from exc
        except TypeError as exc:
            raise CredentialError(
                f"{path} er passordbeskyttet, men passord mangler (password required).",
                hint="Oppgi passordet med --cert-password-env VARIABEL.",
            ) from exc
        extra = list(extra or ())
        if key is None:
            raise CredentialError(
                f"{path} inneholder ikke den private nøkkelen (no private key in the file).",
                hint="Eksporter sertifikatet med privat nøkkel (PKCS#12 med nøkkel).",
            )
        if cert is None:  # some tools store the leaf among the "additional" certificates
            if not extra:
                raise CredentialError(f"{path} inneholder ikke noe sertifikat (no certificate).")
            cert = _matching_certificate(extra, key)
            extra = [c for c in extra if c is not cert]
        return cls(certificate=cert, private_key=key, chain=tuple(extra))  # type: ignore[arg-type]

    @classmethod
    def _from_pem(
        cls, path: Path, data: bytes, *, password: str | bytes | None, key_path: Path | None
    ) -> Credentials:
        try:
            certs = x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
        except ValueError as exc:
            raise CredentialError(
                f"Sertifikatet i {path} kan ikke leses (the PEM certificate is damaged)."
            ) from exc
        if not certs:
            raise CredentialError(f"{path} inneholder ikke noe sertifikat (no certificate).")
        key_source, key_data = path, data
        if key_path is not None:
            key_source, key_data = Path(key_path), _read(Path(key_path), "Nøkkelfilen")
        if b"PRIVATE KEY-----" not in key_data:
            raise CredentialError(
                f"Fant ingen privat nøkkel i {key_source} (no private key found).",
                hint="Oppgi nøkkelfilen med --key, eller bruk en PKCS#12-fil.",
            )
        try:
            key = serialization.load_pem_private_key(key_data, _password_bytes(password))
        except TypeError as exc:
            message = (
                f"Nøkkelen i {key_source} er passordbeskyttet, men passord mangler "
                "(the key is encrypted; password required)."
                if password in (None, "", b"")
                else f"Nøkkelen i {key_source} er ikke passordbeskyttet, men et passord ble oppgitt "
                "(the key is not encrypted; no password needed)."
            )
            raise CredentialError(message) from exc
        except ValueError as exc:
            raise CredentialError(
                f"Nøkkelen i {key_source} kan ikke åpnes: feil passord, eller filen er skadet "
                "(wrong password or damaged key)."
            ) from exc
        except Exception as exc:  # cryptography raises UnsupportedAlgorithm for odd key types
            raise CredentialError(
                f"Nøkkelen i {key_source} kan ikke brukes ({type(exc).__name__})."
            ) from exc
        leaf = _matching_certificate(certs, key)
        chain = tuple(c for c in certs if c is not leaf)
        return cls(certificate=leaf, private_key=key, chain=chain)  # type: ignore[arg-type]

    @property
    def orgnr(self) -> str | None:
        return orgnr_from_certificate(self.certificate)

    @property
    def subject_name(self) -> str:
        return (
            _first_attribute(self.certificate, NameOID.ORGANIZATION_NAME)
            or _first_attribute(self.certificate, NameOID.COMMON_NAME)
            or ""
        )

    def certificate_der_b64(self) -> str:
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()

    def __repr__(self) -> str:
        return (
            f"Credentials(subject={self.subject_name!r}, orgnr={self.orgnr!r}, "
            f"serial={self.certificate.serial_number:x}, chain={len(self.chain)}, key=<hidden>)"
        )

    __str__ = __repr__


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CredentialError(f"{what} {path} finnes ikke (file not found).") from exc
    except IsADirectoryError as exc:
        raise CredentialError(f"{what} {path} er en mappe, ikke en fil (is a directory).") from exc
    except OSError as exc:
        raise CredentialError(f"{what} {path} kan ikke leses: {exc.strerror}.") from exc


def _looks_like_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data[:4096] or data.lstrip()[:11] == b"-----BEGIN "


def _public_der(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _matching_certificate(certs: list[x509.Certificate], key: Any) -> x509.Certificate:
    """The certificate whose public key is the key's; else the first (checked later)."""
    if not hasattr(key, "public_key"):
        return certs[0]
    wanted = _public_der(key.public_key())
    for cert in certs:
        try:
            if _public_der(cert.public_key()) == wanted:
                return cert
        except Exception:  # certificates with unsupported key types cannot match
            continue
    return certs[0]


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float
    scope: str

    def __repr__(self) -> str:
        return (
            f"AccessToken(value=[REDACTED], expires_at={self.expires_at:.0f}, scope={self.scope!r})"
        )

    __str__ = __repr__


# Advice per Maskinporten error code, in Norwegian (the bank's IT reads it).
_MP_ADVICE: dict[str, str] = {
    "MP-012": "JWT-ID (jti) i assertion er brukt før. Lag en ny assertion med ny jti for hver tokenforespørsel.",
    "MP-100": "Maskinporten kjenner ikke klient-ID-en. Kontroller --client-id mot integrasjonen i Samarbeidsportalen (testmiljøet har egne klienter).",
    "MP-110": "Feil «aud» i assertion. Den skal være utstederen nøyaktig, med avsluttende skråstrek (f.eks. https://test.maskinporten.no/), ikke token-endepunktet.",
    "MP-120": "Maskinporten godtar ikke sertifikatet eller signaturen. Bruk et gyldig testsertifikat (autentiseringssertifikat) fra Buypass eller Commfides, og signer med nøkkelen som hører til.",
    "MP-121": "Sertifikatet eller nøkkelen er utløpt eller tilbakekalt. Bestill et nytt testsertifikat.",
    "MP-122": "Organisasjonsnummeret i sertifikatet er ikke det klienten er registrert på. Bruk sertifikatet til virksomheten som eier klienten, eller en klient som tilhører sertifikatets virksomhet.",
    "MP-124": "Signaturen på assertion kan ikke verifiseres med sertifikatet. Kontroller at x5c inneholder virksomhetssertifikatet og at nøkkelen hører til det.",
    "MP-130": "Assertion er utløpt eller ikke gyldig ennå. Kontroller maskinens klokke (NTP): iat må ligge innenfor noen sekunder av Maskinportens klokke.",
    "MP-200": "Klienten har ikke tilgang til scopet den ba om. Be bare om scope klienten allerede har i Samarbeidsportalen (for skrivetilgang: bits:kundeforhold.write, som Bits gir ved onboarding); for KFR-18 holder det at klienten har ett annet scope enn skrivescopet, eller at testen kjøres uten --alt-scope.",
}
_ERROR_ADVICE: dict[str, str] = {
    "invalid_scope": _MP_ADVICE["MP-200"],
    "invalid_request": "Forespørselen til Maskinporten var ugyldig (invalid_request).",
    "invalid_client": _MP_ADVICE["MP-100"],
}


def mp_advice(mp_code: str | None, error: str | None = None) -> str:
    """What the bank's IT should do about a Maskinporten refusal (Norwegian)."""
    return (
        _MP_ADVICE.get(mp_code or "")
        or _ERROR_ADVICE.get(error or "")
        or "Se Maskinportens feilsøkingsside for koden, og kontroller klient-ID, sertifikat og scope."
    )


class MaskinportenClient:
    """Gets access tokens from Maskinporten with the JWT grant, and caches them."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        credentials: Credentials,
        http: httpx.Client,
        token_endpoint: str | None = None,
        kid: str | None = None,
        assertion_lifetime_s: int = 60,
        renew_margin_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        retries: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        refuse_production(issuer)
        if token_endpoint:
            refuse_production(token_endpoint)
        # aud is the issuer exactly, with its trailing slash (Maskinporten refuses others).
        self.issuer = issuer if issuer.endswith("/") else issuer + "/"
        self.token_endpoint = token_endpoint or self.issuer + "token"
        self.client_id = client_id
        self.credentials = credentials
        self.http = http
        self.kid = kid
        self.assertion_lifetime_s = assertion_lifetime_s
        self.renew_margin_s = renew_margin_s
        self.clock = clock
        self.retries = retries
        self.backoff_s = backoff_s
        self._cache: dict[frozenset[str], AccessToken] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MaskinportenClient(issuer={self.issuer!r}, client_id={self.client_id!r})"

    # ---- the assertion

    def build_assertion(self, scopes: Sequence[str]) -> str:
        now = int(self.clock())
        claims = {
            "aud": self.issuer,
            "iss": self.client_id,
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + self.assertion_lifetime_s,
            "jti": str(uuid.uuid4()),
        }
        # No "typ": Maskinporten's guidance says leaving it out is safest.
        headers: dict[str, Any] = {"typ": None}
        if self.kid:
            headers["kid"] = self.kid
        else:
            headers["x5c"] = [self.credentials.certificate_der_b64()]
        return jwt.encode(claims, self.credentials.private_key, algorithm="RS256", headers=headers)

    # ---- the token request

    def fetch_token(self, scopes: Sequence[str], *, role: str = "token") -> AccessToken:
        """Ask Maskinporten for a token now (no cache). Raises AuthError when refused,
        TargetEnvironmentError when Maskinporten cannot be reached or fails (after retries)."""
        scopes = list(scopes)
        attempts = self.retries + 1
        last_problem, hint = "", "Kontroller nettverk, proxy (HTTPS_PROXY) og --maskinporten-url."
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            # A fresh assertion (new jti, new iat) makes each attempt safe to repeat.
            form = {"grant_type": JWT_BEARER_GRANT, "assertion": self.build_assertion(scopes)}
            sent_at = self.clock()
            try:
                response = self.http.post(
                    self.token_endpoint, data=form, headers={"Accept": "application/json"},
                    extensions={"kfr_role": role},
                )
            except httpx.TransportError as exc:
                last_problem, advice, worth_retrying = describe_transport_error(exc)
                hint = advice or hint
                if not worth_retrying:
                    break
                continue
            if response.status_code >= 500 or response.status_code == 429:
                last_problem = f"HTTP {response.status_code}"  # busy or broken, not a refusal
                continue
            if response.status_code == 200:
                return self._parse_token(response, scopes, sent_at)
            raise self.error_from_response(response)
        raise TargetEnvironmentError(
            f"Maskinporten ({self.token_endpoint}) svarte ikke etter {attempt + 1} forsøk: "
            f"{last_problem}.",
            hint=hint,
        )

    def _parse_token(
        self, response: httpx.Response, scopes: list[str], sent_at: float
    ) -> AccessToken:
        try:
            body = response.json()
            value = body["access_token"]
            expires_in = float(body.get("expires_in", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetEnvironmentError(
                f"Maskinporten svarte 200, men uten gyldig token i svaret ({self.token_endpoint})."
            ) from exc
        if not isinstance(value, str) or not value:
            raise TargetEnvironmentError("Maskinporten svarte 200, men access_token er tom.")
        granted = body.get("scope") if isinstance(body.get("scope"), str) else " ".join(scopes)
        # Count the lifetime from when we asked: the token cannot outlive that.
        return AccessToken(value=value, expires_at=sent_at + expires_in, scope=granted)

    def error_from_response(self, response: httpx.Response) -> AuthError:
        """Maskinporten's refusal as an AuthError: the MP code and advice for the bank's IT."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = str(body.get("error") or "") or None
        description = str(body.get("error_description") or "")
        text = " ".join(str(body.get(k) or "") for k in ("error_uri", "error_description", "error"))
        match = _MP_CODE.search(text)
        mp_code = match.group(0) if match else ("MP-200" if error == "invalid_scope" else None)
        advice = mp_advice(mp_code, error)
        if mp_code == "MP-130" or "expired" in description.lower() or "iat" in description:
            skew = self._clock_skew(response)
            if skew is not None and abs(skew) > CLOCK_TOLERANCE_S / 2:
                direction = "foran" if skew > 0 else "bak"
                advice += f" Din klokke går {abs(skew):.0f} s {direction} Maskinportens (Date-headeren i svaret)."
            elif skew is not None:
                advice += f" Klokkeavviket mot Maskinporten er {skew:+.0f} s."
        label = mp_code or error or f"HTTP {response.status_code}"
        message = f"Maskinporten avviste tokenforespørselen ({label})"
        if description:
            message += f": {description}"
        return AuthError(message, hint=advice, mp_code=mp_code, error=error)

    def _clock_skew(self, response: httpx.Response) -> float | None:
        """Local clock minus the server's Date header, in seconds (None when absent)."""
        date = response.headers.get("Date")
        if not date:
            return None
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return None
        return self.clock() - server

    # ---- the cache

    def token(self, scopes: Sequence[str]) -> AccessToken:
        """A cached token for this scope set, renewed ``renew_margin_s`` before it expires."""
        key = frozenset(scopes)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self.clock() < cached.expires_at - self.renew_margin_s:
                return cached
            fresh = self.fetch_token(list(scopes))
            self._cache[key] = fresh
            return fresh

    def invalidate(self, scopes: Sequence[str] | None = None) -> None:
        with self._lock:
            if scopes is None:
                self._cache.clear()
            else:
                self._cache.pop(frozenset(scopes), None)


class MaskinportenAuth(httpx.Auth):
    """Bearer token from Maskinporten; on a 401 from KFR, renews the token and retries once."""

    requires_response_body = True  # read the 401 so its connection is free for the retry

    def __init__(self, client: MaskinportenClient, scopes: Sequence[str]) -> None:
        self.client = client
        self.scopes = tuple(scopes)

    def __repr__(self) -> str:
        return f"MaskinportenAuth(scopes={list(self.scopes)!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.client.token(self.scopes)
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code == 401:
            # The token may have expired mid-run or been revoked: renew it once. The repeat
            # is a new request to KFR, so it gets its own CorrelationID (never one used twice).
            self.client.invalidate(self.scopes)
            token = self.client.token(self.scopes)
            request.headers["Authorization"] = f"Bearer {token.value}"
            if "CorrelationID" in request.headers:
                request.headers["CorrelationID"] = str(uuid.uuid4())
            yield request
