"""A-3: the enterprise certificate — readable, password, key, orgnr, a test issuer for the
environment, validity, and key usage for Maskinporten and for signing the pack."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from conformance.auth import Credentials
from conformance.errors import ConformanceError
from conformance.preflight.lines import STEP_CERTIFICATE, CheckLine, Status, make_line
from conformance.profile import BankEnvironment

EXPIRY_WARN_DAYS = 30


def _looks_like_pkcs12(data: bytes) -> bool:
    """A PFX structure (SEQUENCE { INTEGER 3, ContentInfo, … }): when such a file will not
    open, the password is what is wrong, not the file."""
    from asn1crypto import pkcs12 as asn1_pkcs12

    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        return pfx["version"].native == "v3" and pfx["auth_safe"]["content_type"].native is not None
    except (ValueError, TypeError, KeyError):
        return False


def _pkcs12_refuses_password(data: bytes, password: str | None) -> bool:
    """True when ``data`` is a PKCS#12 file that this password does not open."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    if not _looks_like_pkcs12(data):
        return False
    try:
        pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except (ValueError, TypeError):
        return True
    return False


def _certificate_failure(env: BankEnvironment, exc: ConformanceError) -> CheckLine:
    """A certificate that will not load, on the line of what is wrong: the file, the
    password or the key."""
    path = Path(env.cert_path)
    text, advice = exc.message, exc.hint
    password_advice = (
        "Sett passordet i miljøvariabelen som --cert-password-env (eller cert_password_env i "
        "profilen) peker på; verktøyet leser det bare derfra."
    )
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:
        data = b""
    if data:
        if b"-----BEGIN " in data[:4096]:
            if "passord" in text.lower():
                return make_line(STEP_CERTIFICATE, "certificate.password", Status.FAIL, text,
                                 password_advice, file=str(path))
        elif _pkcs12_refuses_password(data, env.cert_password):
            message = (
                f"{path.name} er passordbeskyttet, men passord mangler." if not env.cert_password
                else f"Passordet åpner ikke {path.name}: feil passord."
            )
            return make_line(STEP_CERTIFICATE, "certificate.password", Status.FAIL, message,
                             password_advice, file=str(path))
        if "hører ikke til sertifikatet" in text:
            return make_line(STEP_CERTIFICATE, "certificate.key_match", Status.FAIL, text, advice,
                             file=str(path))
    return make_line(STEP_CERTIFICATE, "certificate.readable", Status.FAIL, text,
                     advice or "Oppgi bankens virksomhetssertifikat med --cert (PKCS#12 eller PEM).",
                     file=str(path))


def _name_label(name: x509.Name) -> str:
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        values = name.get_attributes_for_oid(oid)
        if values:
            return str(values[0].value)
    return name.rfc4514_string()


def _load_signing(path: Path | None, password: str | None) -> Credentials | None:
    return Credentials.load(path, password=password) if path else None


def check_certificate(
    env: BankEnvironment,
    *,
    signing_cert: Path | None = None,
    signing_password: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[CheckLine], Credentials | None]:
    """A-3: the certificate's lines, and the loaded credentials (None when unusable)."""
    try:
        credentials = Credentials.load(
            Path(env.cert_path), password=env.cert_password, key_path=env.key_path
        )
    except ConformanceError as exc:
        return [_certificate_failure(env, exc)], None
    cert = credentials.certificate
    name = Path(env.cert_path).name
    lines = [
        make_line(STEP_CERTIFICATE, "certificate.readable", Status.OK,
                  f"Sertifikatet {name} kan leses: «{_name_label(cert.subject)}».", file=str(env.cert_path)),
        make_line(STEP_CERTIFICATE, "certificate.password", Status.OK,
                  "Passordet åpner sertifikatet." if env.cert_password
                  else "Sertifikatet trenger ikke passord."),
        make_line(STEP_CERTIFICATE, "certificate.key_match", Status.OK,
                  "Den private nøkkelen hører til sertifikatet."),
        check_certificate_orgnr(credentials, env.orgnr),
        check_certificate_issuer(cert, env),
        check_certificate_validity(cert, now=now),
        check_authentication_usage(cert),
    ]
    try:
        signing = _load_signing(signing_cert, signing_password)
    except ConformanceError as exc:
        lines.append(make_line(STEP_CERTIFICATE, "certificate.signing_usage", Status.FAIL,
                               f"Signeringssertifikatet (--signing-cert) kan ikke brukes: {exc.message}",
                               exc.hint))
    else:
        lines.append(check_signing_usage(credentials, signing, env.orgnr))
    return lines, credentials


def check_certificate_orgnr(credentials: Credentials, orgnr: str) -> CheckLine:
    found = credentials.orgnr
    if found == orgnr:
        return make_line(STEP_CERTIFICATE, "certificate.orgnr", Status.OK,
                         f"Sertifikatet tilhører banken ({orgnr}).", orgnr=found)
    if found is None:
        return make_line(STEP_CERTIFICATE, "certificate.orgnr", Status.FAIL,
                         "Sertifikatet oppgir ikke noe organisasjonsnummer (organizationIdentifier "
                         "NTRNO-…, serialNumber eller O=…-<orgnr>).",
                         "Bruk bankens virksomhetssertifikat fra Buypass eller Commfides.")
    return make_line(STEP_CERTIFICATE, "certificate.orgnr", Status.FAIL,
                     f"Sertifikatet tilhører organisasjonsnummer {found}, ikke banken {orgnr}; "
                     "Maskinporten ville avvist det (MP-122).",
                     f"Bruk bankens eget virksomhetssertifikat, eller kjør med --bank {found} hvis "
                     "det er den banken som skal testes.", orgnr=found)


def _sandbox_ca(env: BankEnvironment) -> x509.Certificate | None:
    from conformance.sandbox.pki import CA_CERT_FILE

    if env.sandbox_data_dir is None:
        return None
    try:  # read only: creating a CA here would be a side effect of a check
        return x509.load_pem_x509_certificate((Path(env.sandbox_data_dir) / CA_CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def check_certificate_issuer(cert: x509.Certificate, env: BankEnvironment) -> CheckLine:
    issuer = _name_label(cert.issuer)
    if env.is_sandbox:
        ca = _sandbox_ca(env)
        if ca is None:
            return make_line(STEP_CERTIFICATE, "certificate.issuer", Status.WARN,
                             f"Utstedt av «{issuer}»; sandkassens CA finnes ikke i "
                             f"{env.sandbox_data_dir}, så utstederen kan ikke kontrolleres.",
                             "Oppgi sandkassens datamappe med --sandbox-data-dir.", issuer=issuer)
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return make_line(STEP_CERTIFICATE, "certificate.issuer", Status.FAIL,
                             f"Sertifikatet er utstedt av «{issuer}», ikke av sandkassens test-CA; "
                             "sandkassens Maskinporten avviser det (MP-120).",
                             "Utelat --cert i sandkassen (verktøyet utsteder et selv), eller lag et "
                             "med «kfr-conformance sandbox issue-cert».", issuer=issuer)
        return make_line(STEP_CERTIFICATE, "certificate.issuer", Status.OK,
                         f"Utstedt av sandkassens test-CA («{issuer}»).", issuer=issuer)
    text = " ".join(str(a.value) for a in cert.issuer).lower()
    vendor = next((v for v in ("Buypass", "Commfides") if v.lower() in text), None)
    if vendor and "test" in text:
        return make_line(STEP_CERTIFICATE, "certificate.issuer", Status.OK,
                         f"Testsertifikat fra {vendor} («{issuer}»), som testmiljøet krever.",
                         issuer=issuer)
    if vendor:
        return make_line(STEP_CERTIFICATE, "certificate.issuer", Status.FAIL,
                         f"Sertifikatet er et produksjonssertifikat fra {vendor} («{issuer}»); "
                         "Maskinportens testmiljø godtar bare testsertifikater.",
                         f"Bestill et testsertifikat fra {vendor} (A-3), f.eks. utstedt under "
                         "«Buypass Class 3 Test4 CA G2 ST Business» eller «Commfides Legal Person - G3 - TEST».",
                         issuer=issuer)
    return make_line(STEP_CERTIFICATE, "certificate.issuer", Status.FAIL,
                     f"Sertifikatet er utstedt av «{issuer}», ikke av en test-CA fra Buypass eller "
                     "Commfides; Maskinportens testmiljø avviser det (MP-120).",
                     "Bruk bankens testsertifikat fra Buypass eller Commfides (A-3).", issuer=issuer)


def check_certificate_validity(cert: x509.Certificate, *, now: dt.datetime | None = None) -> CheckLine:
    now = now or dt.datetime.now(dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    details = {"not_before": start.isoformat(), "not_after": end.isoformat()}
    if now < start:
        return make_line(STEP_CERTIFICATE, "certificate.validity", Status.FAIL,
                         f"Sertifikatet er ikke gyldig før {start:%Y-%m-%d %H:%M} UTC.",
                         "Vent til gyldighetsperioden starter, eller kontroller maskinens klokke.",
                         **details)
    if end < now:
        return make_line(STEP_CERTIFICATE, "certificate.validity", Status.FAIL,
                         f"Sertifikatet utløp {end:%Y-%m-%d} ({(now - end).days} dager siden); "
                         "Maskinporten avviser det (MP-121).",
                         "Bestill et nytt testsertifikat fra Buypass eller Commfides (A-3).", **details)
    left = (end - now).days
    if left < EXPIRY_WARN_DAYS:
        return make_line(STEP_CERTIFICATE, "certificate.validity", Status.WARN,
                         f"Sertifikatet utløper {end:%Y-%m-%d}, om {left} dager.",
                         "Bestill et nytt testsertifikat nå, så testen og pakken ikke stopper.",
                         **details)
    return make_line(STEP_CERTIFICATE, "certificate.validity", Status.OK,
                     f"Sertifikatet er gyldig til {end:%Y-%m-%d} ({left} dager).", **details)


def _key_usage(cert: x509.Certificate) -> list[str] | None:
    from conformance.pack.certinfo import key_usage_names

    return key_usage_names(cert)


def check_authentication_usage(cert: x509.Certificate) -> CheckLine:
    usage = _key_usage(cert)
    if usage is None or "digital_signature" in usage:
        shown = ", ".join(usage) if usage else "ingen begrensning"
        return make_line(STEP_CERTIFICATE, "certificate.auth_usage", Status.OK,
                         f"Nøkkelbruken passer for autentisering mot Maskinporten ({shown}).",
                         key_usage=usage)
    return make_line(STEP_CERTIFICATE, "certificate.auth_usage", Status.FAIL,
                     f"Sertifikatet er ikke et autentiseringssertifikat (nøkkelbruk: "
                     f"{', '.join(usage) or 'ingen'}); Maskinporten krever digitalSignature.",
                     "Bruk autentiseringssertifikatet i sertifikatsettet fra Buypass/Commfides "
                     "med --cert.", key_usage=usage)


def check_signing_usage(auth: Credentials, signing: Credentials | None, orgnr: str) -> CheckLine:
    """Which certificate signs the pack, and whether it may: nonRepudiation is the signing
    certificate's own usage; digitalSignature alone is accepted by ``verify`` too."""
    which = "signeringssertifikatet (--signing-cert)" if signing else "autentiseringssertifikatet (--cert)"
    cert = (signing or auth).certificate
    usage = _key_usage(cert)
    if signing is not None and signing.orgnr != orgnr:
        return make_line(STEP_CERTIFICATE, "certificate.signing_usage", Status.FAIL,
                         f"Signeringssertifikatet tilhører {signing.orgnr or 'ingen virksomhet'}, ikke "
                         f"banken {orgnr}; verify ville avvist pakken.",
                         "Bruk bankens eget signeringssertifikat.", key_usage=usage)
    if usage is None or "non_repudiation" in usage:
        return make_line(STEP_CERTIFICATE, "certificate.signing_usage", Status.OK,
                         f"Resultatpakken signeres med {which}, som er ment for signering "
                         f"({'nonRepudiation' if usage else 'ingen begrensning'}).", key_usage=usage)
    if "digital_signature" in usage:
        return make_line(STEP_CERTIFICATE, "certificate.signing_usage", Status.WARN,
                         f"Resultatpakken signeres med {which} (digitalSignature). verify godtar "
                         "det, men signeringssertifikatet (nonRepudiation) er det som er ment for å "
                         "signere.",
                         "Oppgi signeringssertifikatet fra samme sertifikatsett med --signing-cert "
                         "(og --signing-cert-password-env).", key_usage=usage)
    return make_line(STEP_CERTIFICATE, "certificate.signing_usage", Status.FAIL,
                     f"{which[0].upper()}{which[1:]} kan ikke signere resultatpakken (nøkkelbruk: "
                     f"{', '.join(usage) or 'ingen'}); verify ville avvist signaturen.",
                     "Oppgi signeringssertifikatet (nonRepudiation) med --signing-cert.", key_usage=usage)
