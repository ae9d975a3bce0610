"""Texts people read from the pack code, in Norwegian bokmål (default) and English.

Bits reads verdicts in Norwegian; ``--lang en`` serves auditors and vendors abroad. Each
text has a stable key, so tests and ``InvalidPack.code`` name the reason, not its wording.
"""

from __future__ import annotations

from conformance.errors import InvalidPack

LANGS = ("nb", "en")

_TEXTS: dict[str, tuple[str, str]] = {
    # -- unusable input (InvalidPack, exit 2) -------------------------------------------------
    "zip.input_too_large": (
        "Filen er for stor til å være en resultatpakke ({size} byte; grensen er {cap}).",
        "The file is too large to be a result pack ({size} bytes; the limit is {cap}).",
    ),
    "zip.not_zip": (
        "Filen er ikke en zip-fil, så den kan ikke være en resultatpakke.",
        "The file is not a zip file, so it cannot be a result pack.",
    ),
    "zip.corrupt": (
        "Zip-filen er skadet eller avkortet ({detail}).",
        "The zip file is damaged or truncated ({detail}).",
    ),
    "zip.too_many_entries": (
        "Zip-filen har {count} oppføringer; mer enn {cap} godtas ikke.",
        "The zip file has {count} entries; more than {cap} are refused.",
    ),
    "zip.name.empty": (
        "Zip-filen har en oppføring uten navn.",
        "The zip file has an entry without a name.",
    ),
    "zip.name.too_long": (
        "Filnavnet «{name}» er for langt.",
        "The file name «{name}» is too long.",
    ),
    "zip.name.control": (
        "Filnavnet «{name}» inneholder kontrolltegn.",
        "The file name «{name}» contains control characters.",
    ),
    "zip.name.backslash": (
        "Filnavnet «{name}» inneholder omvendt skråstrek; bare «/» er tillatt i zip.",
        "The file name «{name}» contains a backslash; only «/» is allowed in a zip.",
    ),
    "zip.name.absolute": (
        "Filnavnet «{name}» er en absolutt sti; en pakke kan bare ha relative stier.",
        "The file name «{name}» is an absolute path; a pack may only hold relative paths.",
    ),
    "zip.name.drive": (
        "Filnavnet «{name}» har en stasjonsbokstav; en pakke kan bare ha relative stier.",
        "The file name «{name}» has a drive letter; a pack may only hold relative paths.",
    ),
    "zip.name.parent": (
        "Filnavnet «{name}» peker ut av pakken med «..».",
        "The file name «{name}» points out of the pack with «..».",
    ),
    "zip.name.dot": (
        "Filnavnet «{name}» har tomme eller «.»-ledd.",
        "The file name «{name}» has empty or «.» components.",
    ),
    "zip.duplicate": (
        "Filen «{name}» finnes mer enn én gang i zip-filen.",
        "The file «{name}» appears more than once in the zip file.",
    ),
    "zip.encrypted": (
        "Filen «{name}» er kryptert; en resultatpakke er aldri kryptert.",
        "The file «{name}» is encrypted; a result pack is never encrypted.",
    ),
    "zip.symlink": (
        "«{name}» er en symbolsk lenke; en resultatpakke har bare vanlige filer.",
        "«{name}» is a symbolic link; a result pack holds only regular files.",
    ),
    "zip.special_file": (
        "«{name}» er ikke en vanlig fil.",
        "«{name}» is not a regular file.",
    ),
    "zip.compression": (
        "Filen «{name}» bruker en komprimeringsmetode som ikke godtas (bare stored/deflate).",
        "The file «{name}» uses a compression method that is not accepted (only stored/deflate).",
    ),
    "zip.too_large": (
        "Innholdet pakket ut blir større enn grensen på {cap} byte (zip-bombe?).",
        "The unpacked content exceeds the limit of {cap} bytes (zip bomb?).",
    ),
    "zip.bomb": (
        "Filen «{name}» pakkes ut til langt mer enn den fyller (zip-bombe).",
        "The file «{name}» inflates to far more than its compressed size (zip bomb).",
    ),
    "pack.no_manifest": (
        "Pakken har ingen manifest.json, så den er ikke en resultatpakke fra kfr-conformance.",
        "The pack has no manifest.json, so it is not a kfr-conformance result pack.",
    ),
    "manifest.json": (
        "manifest.json er ikke gyldig JSON ({detail}).",
        "manifest.json is not valid JSON ({detail}).",
    ),
    "manifest.too_large": (
        "manifest.json er større enn grensen på {cap} byte.",
        "manifest.json is larger than the limit of {cap} bytes.",
    ),
    "manifest.format": (
        "manifest.json er ikke et kfr-conformance-manifest.",
        "manifest.json is not a kfr-conformance manifest.",
    ),
    "manifest.version": (
        "manifest.json har versjon {version}, som denne utgaven ikke kjenner.",
        "manifest.json has version {version}, which this release does not know.",
    ),
    "manifest.field": (
        "manifest.json er ufullstendig eller feil utfylt: {detail}.",
        "manifest.json is incomplete or malformed: {detail}.",
    ),
    "signature.malformed": (
        "manifest.json.p7s er ikke en lesbar CMS-signatur ({detail}).",
        "manifest.json.p7s is not a readable CMS signature ({detail}).",
    ),
    "eml.malformed": (
        "E-posten kan ikke leses ({detail}).",
        "The e-mail cannot be read ({detail}).",
    ),
    "eml.no_pack": (
        "E-posten har ingen resultatpakke (.zip) som vedlegg.",
        "The e-mail has no result pack (.zip) attached.",
    ),
    "eml.many_packs": (
        "E-posten har {count} zip-vedlegg; det skal være nøyaktig én resultatpakke.",
        "The e-mail has {count} zip attachments; there must be exactly one result pack.",
    ),
    "path.missing": ("Finner ikke «{path}».", "«{path}» does not exist."),
    "path.unreadable": ("Kan ikke lese «{path}» ({detail}).", "Cannot read «{path}» ({detail})."),
    "path.kind": (
        "«{path}» er verken en resultatpakke (.zip), en resultatmappe eller en e-post (.eml).",
        "«{path}» is neither a result pack (.zip), a results folder nor an e-mail (.eml).",
    ),
    "folder.special": (
        "«{name}» i resultatmappen er ikke en vanlig fil (symbolsk lenke?).",
        "«{name}» in the results folder is not a regular file (symbolic link?).",
    ),
    # -- check names --------------------------------------------------------------------------
    "check.signature": ("Signatur", "Signature"),
    "check.certificate": ("Sertifikat", "Certificate"),
    "check.signing_time": ("Signeringstidspunkt", "Signing time"),
    "check.signer_orgnr": ("Signerer = bank", "Signer = bank"),
    "check.files": ("Filer", "Files"),
    "check.cases": ("Testtilfeller", "Test cases"),
    "check.sheet": ("Testark", "Test sheet"),
    "check.environment": ("Miljø", "Environment"),
    "check.correlation_ids": ("CorrelationID", "CorrelationID"),
    "check.rows": ("Rader i arket", "Sheet rows"),
    "check.verdicts": ("Resultater fra bevis", "Verdicts from evidence"),
    "check.journal": ("Journal og tider", "Journal and times"),
    "check.attested": ("Bekreftet av person", "Attested by a person"),
    "check.timestamp": ("Tidsstempel", "Timestamp"),
    "check.revocation": ("Tilbakekalling", "Revocation"),
    "check.core_system": ("Kjernesystemets rader", "Core-system rows"),
    # -- signature ------------------------------------------------------------------------------
    "sig.ok": (
        "Signaturen over manifest.json er gyldig ({digest}).",
        "The signature over manifest.json is valid ({digest}).",
    ),
    "sig.missing": (
        "Pakken har ingen signatur (manifest.json.p7s mangler).",
        "The pack has no signature (manifest.json.p7s is missing).",
    ),
    "sig.not_detached": (
        "Signaturen er ikke en løsrevet (detached) signatur over manifest.json.",
        "The signature is not a detached signature over manifest.json.",
    ),
    "sig.signer_count": (
        "Signaturen må ha nøyaktig én signerer.",
        "The signature must have exactly one signer.",
    ),
    "sig.no_certificate": (
        "Signerers sertifikat er ikke med i signaturen.",
        "The signer's certificate is not included in the signature.",
    ),
    "sig.no_attributes": (
        "Signaturen mangler signerte attributter (meldingsdigest).",
        "The signature lacks signed attributes (message digest).",
    ),
    "sig.digest_algorithm": (
        "Signaturen bruker en hash-algoritme som ikke godtas (krever SHA-256 eller sterkere).",
        "The signature uses a hash algorithm that is not accepted (SHA-256 or stronger required).",
    ),
    "sig.content_type": (
        "Signaturens innholdstype er ikke «data».",
        "The signature's content type is not «data».",
    ),
    "sig.digest_mismatch": (
        "manifest.json er endret etter signering: hashen stemmer ikke med signaturen.",
        "manifest.json was changed after signing: its hash does not match the signature.",
    ),
    "sig.signature_algorithm": (
        "Signaturen bruker en algoritme som ikke godtas.",
        "The signature uses an algorithm that is not accepted.",
    ),
    "sig.bad_signature": (
        "Signaturen er ugyldig: den er ikke laget med nøkkelen til sertifikatet i signaturen.",
        "The signature is invalid: it was not made with the key of the certificate it carries.",
    ),
    # -- certificate ------------------------------------------------------------------------------
    "cert.ok": (
        "Signert med «{subject}», utstedt av «{issuer}»; gyldig ved signering og kjedet til en klarert rot.",
        "Signed with «{subject}», issued by «{issuer}»; valid at signing time and chained to a trusted root.",
    ),
    "cert.unknown": (
        "Sertifikatet kan ikke vurderes fordi signaturen ikke kunne leses.",
        "The certificate cannot be judged because the signature could not be read.",
    ),
    "cert.no_roots": (
        "Ingen klarerte rotsertifikater er oppgitt (--trust), så signereren kan ikke godkjennes.",
        "No trusted root certificates were given (--trust), so the signer cannot be accepted.",
    ),
    "cert.no_time": (
        "Signaturen har ikke signeringstidspunkt, så sertifikatets gyldighet kan ikke vurderes.",
        "The signature has no signing time, so the certificate's validity cannot be judged.",
    ),
    "cert.not_valid_then": (
        "Sertifikatet «{subject}» var ikke gyldig ved signering {time} (gyldig {not_before} – {not_after}).",
        "The certificate «{subject}» was not valid at signing time {time} (valid {not_before} – {not_after}).",
    ),
    "cert.untrusted": (
        "Sertifikatet «{subject}», utstedt av «{issuer}», kjeder ikke til et klarert rotsertifikat ({detail}).",
        "The certificate «{subject}», issued by «{issuer}», does not chain to a trusted root ({detail}).",
    ),
    "cert.key_usage": (
        "Sertifikatet «{subject}» er ikke til signering (nøkkelbruk: {usage}).",
        "The certificate «{subject}» is not meant for signing (key usage: {usage}).",
    ),
    "cert.ok_stamped": (
        "Signert med «{subject}», utstedt av «{issuer}»; gyldig ved det tidsstemplede signeringstidspunktet {time} og kjedet til en klarert rot.",
        "Signed with «{subject}», issued by «{issuer}»; valid at the timestamped signing time {time} and chained to a trusted root.",
    ),
    "cert.not_valid_stamped": (
        "Sertifikatet «{subject}» var ikke gyldig ved signering {time} ifølge tidsstempelet (gyldig {not_before} – {not_after}).",
        "The certificate «{subject}» was not valid at signing time {time} according to the timestamp (valid {not_before} – {not_after}).",
    ),
    # -- signing time ----------------------------------------------------------------------------
    "time.ok_stamped": (
        "Signert {time} ifølge tidsstempelet, etter at kjøringen var ferdig ({finished}); bankens egen signeringstid {claimed} stemmer innenfor {tolerance}.",
        "Signed {time} according to the timestamp, after the run had finished ({finished}); the bank's own signing time {claimed} agrees within {tolerance}.",
    ),
    "time.drift": (
        "Bankens eget signeringstidspunkt {claimed} avviker fra tidsstempelet {time} med mer enn {tolerance}.",
        "The bank's own signing time {claimed} differs from the timestamp {time} by more than {tolerance}.",
    ),
    "time.ok": (
        "Signert {time}, etter at kjøringen var ferdig ({finished}).",
        "Signed {time}, after the run had finished ({finished}).",
    ),
    "time.missing": (
        "Signaturen har ikke signeringstidspunkt.",
        "The signature has no signing time.",
    ),
    "time.before_run": (
        "Signert {time}, før kjøringen var ferdig ({finished}).",
        "Signed {time}, before the run had finished ({finished}).",
    ),
    "time.future": (
        "Signeringstidspunktet {time} ligger fram i tid.",
        "The signing time {time} lies in the future.",
    ),
    # -- timestamp ---------------------------------------------------------------------------------
    "ts.ok": (
        "Tidsstempel fra «{tsa}» over signaturen: {time}; tidsstempeltjenesten kjeder til en klarert rot. Dette er det pålitelige signeringstidspunktet.",
        "Timestamp from «{tsa}» over the signature: {time}; the time-stamping authority chains to a trusted root. This is the trusted signing time.",
    ),
    "ts.none": (
        "Signaturen har ikke tidsstempel: signeringstidspunktet {time} er bankens egen opplysning og kan ikke bekreftes uavhengig.",
        "The signature has no timestamp: the signing time {time} is the bank's own statement and cannot be confirmed independently.",
    ),
    "ts.none_still_valid": (
        "Signaturen har ikke tidsstempel; godtatt fordi sertifikatet fortsatt er gyldig (til {not_after}). Etter det godtas pakken ikke med denne politikken.",
        "The signature has no timestamp; accepted because the certificate is still valid (until {not_after}). After that this policy will not accept the pack.",
    ),
    "ts.missing_expired": (
        "Signaturen har ikke tidsstempel, og sertifikatet er utløpt siden ({not_after}). Uten et pålitelig tidspunkt kan signeringen være tilbakedatert, så politikken godtar ikke pakken.",
        "The signature has no timestamp, and the certificate has expired since ({not_after}). Without a trusted time the signing may be back-dated, so the policy does not accept the pack.",
    ),
    "ts.unknown": (
        "Tidsstempelet kan ikke vurderes fordi signaturen ikke kunne leses.",
        "The timestamp cannot be judged because the signature could not be read.",
    ),
    "ts.many": (
        "Signaturen har {count} tidsstempler; det skal være ett.",
        "The signature carries {count} timestamps; there must be one.",
    ),
    "ts.malformed": (
        "Tidsstempelet kan ikke leses ({detail}).",
        "The timestamp cannot be read ({detail}).",
    ),
    "ts.algorithm": (
        "Tidsstempelet bruker en hash-algoritme som ikke godtas ({algorithm}).",
        "The timestamp uses a hash algorithm that is not accepted ({algorithm}).",
    ),
    "ts.imprint": (
        "Tidsstempelet fra «{tsa}» gjelder ikke denne signaturen: avtrykket stemmer ikke med signaturverdien.",
        "The timestamp from «{tsa}» is not for this signature: its imprint does not match the signature value.",
    ),
    "ts.no_roots": (
        "Ingen klarerte rotsertifikater for tidsstempeltjenester er oppgitt (--tsa-trust eller --trust), så tidsstempelet kan ikke godkjennes.",
        "No trusted roots for time-stamping authorities were given (--tsa-trust or --trust), so the timestamp cannot be accepted.",
    ),
    "ts.untrusted": (
        "Tidsstempelet fra «{tsa}» godtas ikke: tidsstempeltjenesten kjeder ikke til en klarert rot med formålet timeStamping, eller signaturen er ugyldig ({detail}).",
        "The timestamp from «{tsa}» is not accepted: the time-stamping authority does not chain to a trusted root with the timeStamping purpose, or its signature is invalid ({detail}).",
    ),
    # -- revocation --------------------------------------------------------------------------------
    "rev.off": (
        "Ikke kontrollert: tilbakekalling er slått av (--revocation off).",
        "Not checked: revocation checking is off (--revocation off).",
    ),
    "rev.unknown": (
        "Tilbakekalling kan ikke vurderes fordi signaturen ikke kunne leses.",
        "Revocation cannot be judged because the signature could not be read.",
    ),
    "rev.not_trusted": (
        "Ikke kontrollert: sertifikatet er ikke godkjent (se Sertifikat), og adresser i et sertifikat som ikke er godkjent, hentes ikke.",
        "Not checked: the certificate is not accepted (see Certificate), and addresses in an unaccepted certificate are not fetched.",
    ),
    "rev.good": (
        "Ikke tilbakekalt ifølge {source} ({where}, utstedt {issued}).",
        "Not revoked according to {source} ({where}, issued {issued}).",
    ),
    "rev.revoked": (
        "Sertifikatet er tilbakekalt {revoked_at} ({reason}) ifølge {source} ({where}), før det tidsstemplede signeringstidspunktet {time}.",
        "The certificate was revoked {revoked_at} ({reason}) according to {source} ({where}), before the timestamped signing time {time}.",
    ),
    "rev.revoked_untimestamped": (
        "Sertifikatet er tilbakekalt {revoked_at} ({reason}) ifølge {source} ({where}); uten tidsstempel kan det ikke vises at pakken ble signert før det.",
        "The certificate was revoked {revoked_at} ({reason}) according to {source} ({where}); without a timestamp it cannot be shown that the pack was signed before that.",
    ),
    "rev.revoked_after": (
        "Merk: sertifikatet ble tilbakekalt {revoked_at} ({reason}) ifølge {source}, etter det tidsstemplede signeringstidspunktet {time}; signaturen godtas, som i CAdES.",
        "Note: the certificate was revoked {revoked_at} ({reason}) according to {source}, after the timestamped signing time {time}; the signature is accepted, as in CAdES.",
    ),
    "rev.unavailable_soft": (
        "Tilbakekallingsstatus kunne ikke fastslås ({problems}); godtatt fordi politikken er «soft».",
        "The revocation status could not be established ({problems}); accepted because the policy is «soft».",
    ),
    "rev.unavailable_hard": (
        "Tilbakekallingsstatus kunne ikke fastslås ({problems}); politikken «hard» krever den.",
        "The revocation status could not be established ({problems}); the «hard» policy requires it.",
    ),
    "rev.no_sources": (
        "sertifikatet oppgir ingen OCSP- eller CRL-adresse",
        "the certificate names no OCSP or CRL address",
    ),
    "rev.no_issuer": (
        "utstederens sertifikat er verken i signaturen eller blant de klarerte",
        "the issuer's certificate is neither in the signature nor among the trusted ones",
    ),
    "rev.failed": ("{source} {where}: {detail}", "{source} {where}: {detail}"),
    "rev.status_unknown": (
        "{source} {where}: status ukjent",
        "{source} {where}: status unknown",
    ),
    "rev.too_old": (
        "{source} {where}: utstedt {issued}, for gammelt til å si noe om {time}",
        "{source} {where}: issued {issued}, too old to speak for {time}",
    ),
    "rev.expired_off_crl": (
        "{source} {where}: utstedt etter at sertifikatet utløp, så det kan være fjernet fra listen",
        "{source} {where}: issued after the certificate expired, so it may have been dropped from the list",
    ),
    "rev.file": ("fil", "file"),
    "rev.why.other_certificate": (
        "svaret gjelder et annet sertifikat",
        "the answer is for another certificate",
    ),
    "rev.why.not_issuer": ("ikke signert av utstederen", "not signed by the issuer"),
    "rev.why.bad_signature": ("ugyldig signatur", "invalid signature"),
    "rev.why.not_crl": ("ikke en CRL", "not a CRL"),
    "rev.why.malformed": ("kan ikke leses", "cannot be read"),
    # -- signer orgnr ----------------------------------------------------------------------------
    "orgnr.ok": (
        "Signerer, manifest og {count} KFR-kall med bankens fid gjelder org.nr. {orgnr}.",
        "Signer, manifest and {count} KFR calls with the bank's fid concern organisation number {orgnr}.",
    ),
    "orgnr.unknown": (
        "Signereren kan ikke vurderes fordi signaturen ikke kunne leses.",
        "The signer cannot be judged because the signature could not be read.",
    ),
    "orgnr.none_in_cert": (
        "Sertifikatet «{subject}» har ikke et entydig organisasjonsnummer.",
        "The certificate «{subject}» has no unambiguous organisation number.",
    ),
    "orgnr.bank": (
        "Pakken er signert av org.nr. {signer}, men gjelder banken {bank}.",
        "The pack is signed by organisation number {signer}, but concerns bank {bank}.",
    ),
    "orgnr.fid": (
        "KFR-kallet {url} i {file} gjelder fid {fid}, ikke banken {bank}, og KFR avviste det ikke (HTTP {status}).",
        "The KFR call {url} in {file} concerns fid {fid}, not bank {bank}, and KFR did not refuse it (HTTP {status}).",
    ),
    "orgnr.refused": (
        "{count} kall for en annen banks fid ble ikke godtatt (KFR avviste dem med 403, som testen av KFR-003 krever, eller miljøet slapp dem ikke fram).",
        "{count} calls for another bank's fid were not accepted (KFR refused them with 403, as the KFR-003 test requires, or the environment did not let them through).",
    ),
    # -- files -------------------------------------------------------------------------------------
    "files.ok": (
        "Alle {count} filer finnes og stemmer med SHA-256 og størrelse; ingen filer i tillegg.",
        "All {count} files are present and match their SHA-256 and size; no extra files.",
    ),
    "files.missing": ("mangler: {name}", "missing: {name}"),
    "files.changed": ("endret: {name}", "changed: {name}"),
    "files.unlisted": ("ikke i manifestet: {name}", "not in the manifest: {name}"),
    "files.evidence_unlisted": (
        "bevisfilen til {case} ({name}) er ikke i manifestet",
        "the evidence file of {case} ({name}) is not in the manifest",
    ),
    "files.evidence_too_large": (
        "bevisfilen {name} er for stor til å kontrolleres",
        "the evidence file {name} is too large to be checked",
    ),
    "files.evidence_malformed": (
        "bevisfilen {name} kan ikke leses",
        "the evidence file {name} cannot be read",
    ),
    "files.failed": ("Filene stemmer ikke: {problems}.", "The files do not match: {problems}."),
    # -- cases --------------------------------------------------------------------------------------
    "cases.ok": (
        "Alle {count} testtilfeller er bestått ({manual} manuelle, bekreftet).",
        "All {count} test cases passed ({manual} manual, confirmed).",
    ),
    "cases.none": ("Manifestet har ingen testtilfeller.", "The manifest has no test cases."),
    "cases.failed": (
        "{bad} av {count} testtilfeller er ikke bestått: {cases}.",
        "{bad} of {count} test cases did not pass: {cases}.",
    ),
    "cases.unconfirmed": ("{case} (manuell, ikke bekreftet)", "{case} (manual, not confirmed)"),
    "cases.counts": (
        "Opptellingen i manifestet stemmer ikke med testtilfellene.",
        "The counts in the manifest do not match the test cases.",
    ),
    # -- sheet --------------------------------------------------------------------------------------
    "sheet.ok": (
        "Testarket «{file}» versjon {version} (SHA-256 {sha256}) er det forventede.",
        "The test sheet «{file}» version {version} (SHA-256 {sha256}) is the expected one.",
    ),
    "sheet.unpinned": (
        "Testarket «{file}» versjon {version} (SHA-256 {sha256}); ingen forventning oppgitt.",
        "The test sheet «{file}» version {version} (SHA-256 {sha256}); no expectation given.",
    ),
    "sheet.bundled": (
        "Kjøringen brukte kfr-conformance sitt eget, rekonstruerte testark ({file}), ikke arket fra "
        "Bits; onboarding krever arket Bits sendte banken (kjør med --sheet <arket fra Bits>).",
        "The run used kfr-conformance's own reconstructed test sheet ({file}), not the sheet from "
        "Bits; onboarding needs the sheet Bits sent the bank (run with --sheet <Bits' sheet>).",
    ),
    "sheet.sha256": (
        "Testarket har SHA-256 {actual}, forventet {expected}.",
        "The test sheet has SHA-256 {actual}, expected {expected}.",
    ),
    "sheet.version": (
        "Testarket har versjon {actual}, forventet {expected}.",
        "The test sheet has version {actual}, expected {expected}.",
    ),
    "sheet.original": (
        "Kopien av testarket i pakken ({name}) har SHA-256 {actual}, ikke den manifestet oppgir.",
        "The copy of the sheet in the pack ({name}) has SHA-256 {actual}, not the one the manifest names.",
    ),
    # -- environment -------------------------------------------------------------------------------
    "env.ok": ("Kjørt mot KFRs testmiljø ({url}).", "Run against KFR's test environment ({url})."),
    "env.sandbox_allowed": (
        "Kjørt mot sandkassen ({url}); godtatt fordi sandkasse er tillatt – ikke gyldig som onboarding-bevis.",
        "Run against the sandbox ({url}); accepted because sandbox was allowed – not valid as onboarding evidence.",
    ),
    "env.sandbox": (
        "Kjørt mot sandkassen ({url}), ikke KFRs testmiljø; ikke gyldig som onboarding-bevis.",
        "Run against the sandbox ({url}), not KFR's test environment; not valid as onboarding evidence.",
    ),
    "env.name": (
        "Ukjent miljø «{name}»; bare «test» godtas.",
        "Unknown environment «{name}»; only «test» is accepted.",
    ),
    "env.url": (
        "KFR-adressen {url} er ikke KFRs offisielle testmiljø ({accepted}).",
        "The KFR URL {url} is not KFR's official test environment ({accepted}).",
    ),
    "env.evidence_url": (
        "KFR-kallet {url} i {file} gikk ikke til {base}.",
        "The KFR call {url} in {file} did not go to {base}.",
    ),
    "env.failed": ("Bevisene viser et annet miljø: {problems}.", "The evidence shows another environment: {problems}."),
    "env.issuer": (
        "Maskinporten-utstederen {issuer} er ikke testmiljøets ({accepted})",
        "The Maskinporten issuer {issuer} is not the test environment's ({accepted})",
    ),
    "env.token_url": (
        "tokenforespørselen {url} i {file} gikk ikke til {expected}",
        "the token request {url} in {file} did not go to {expected}",
    ),
    "env.token_issuer": (
        "tokenet i {file} er utstedt av {iss}, ikke {issuer}",
        "the token in {file} was issued by {iss}, not {issuer}",
    ),
    "env.token_consumer": (
        "tokenet i {file} er ikke utstedt til banken: {reason}",
        "the token in {file} was not issued to the bank: {reason}",
    ),
    "env.host_header": (
        "Host-headeren «{host}» stemmer ikke med {url} i {file}",
        "the Host header «{host}» does not match {url} in {file}",
    ),
    # -- rows of the sheet --------------------------------------------------------------------------
    "rows.ok": (
        "Alle {count} rader i testarket er med ({manual} manuelle etter arket).",
        "All {count} rows of the test sheet are present ({manual} manual according to the sheet).",
    ),
    "rows.bound_by_file": (
        "Bundet med bankens egen bindingsfil (original/bindings.*), kontroller at trinnet passer raden: {rows}.",
        "Bound by the bank's own bindings file (original/bindings.*), check that each step fits its row: {rows}.",
    ),
    "rows.sheet_missing": (
        "Pakken mangler testarket den ble kjørt med ({name}).",
        "The pack lacks the test sheet it was run with ({name}).",
    ),
    "rows.sheet_unreadable": ("Testarket {name} kan ikke leses: {detail}.", "The test sheet {name} cannot be read: {detail}."),
    "rows.sheet_changed": (
        "Testarket {name} er ikke det manifestet oppgir (SHA-256).",
        "The test sheet {name} is not the one the manifest names (SHA-256).",
    ),
    "rows.missing": ("{case} (rad {row}) mangler i pakken", "{case} (row {row}) is missing from the pack"),
    "rows.count": ("{case} (rad {row}) står feil antall ganger i pakken", "{case} (row {row}) appears the wrong number of times"),
    "rows.extra": ("{case} finnes ikke i testarket", "{case} is not in the test sheet"),
    "rows.expectation": (
        "{case}: pakken oppgir forventet {claimed}, arket sier {sheet}",
        "{case}: the pack states expected {claimed}, the sheet says {sheet}",
    ),
    "rows.manual_claimed": (
        "{case} er oppgitt som manuell, men arket gjør den automatisert (trinn {step})",
        "{case} is stated as manual, but the sheet makes it automated (step {step})",
    ),
    "rows.failed": ("Radene stemmer ikke med testarket: {problems}.", "The rows do not match the test sheet: {problems}."),
    # -- verdicts from evidence ---------------------------------------------------------------------
    "verdicts.ok": (
        "{count} automatiserte rader er avgjort på nytt fra bevisene, og alle stemmer.",
        "{count} automated rows were judged again from the evidence, and all agree.",
    ),
    "verdicts.no_sheet": (
        "Uten testarket kan radene ikke avgjøres fra bevisene.",
        "Without the test sheet the rows cannot be judged from the evidence.",
    ),
    "verdicts.no_evidence": ("{case} er oppgitt som bestått uten bevis", "{case} is stated as passed without evidence"),
    "verdicts.mismatch": (
        "{case}: pakken sier «{claimed}», bevisene gir «{derived}» ({why})",
        "{case}: the pack says «{claimed}», the evidence gives «{derived}» ({why})",
    ),
    "verdicts.failed": (
        "Resultatene følger ikke av bevisene: {problems}.",
        "The verdicts do not follow from the evidence: {problems}.",
    ),
    # -- journal and times --------------------------------------------------------------------------
    "journal.ok": (
        "Journalen ({journals} fil(er)) har de samme {count} utvekslingene som bevisene, innenfor kjøringens tid.",
        "The journal ({journals} file(s)) holds the same {count} exchanges as the evidence, within the run's time.",
    ),
    "journal.missing": ("pakken har ingen journal", "the pack has no journal"),
    "journal.untrusted": (
        "Journalen {name} stemmer ikke med manifestet, så den kan ikke sammenlignes med bevisene.",
        "The journal {name} does not match the manifest, so it cannot be compared with the evidence.",
    ),
    "journal.too_large": ("journalen {name} er for stor til å kontrolleres", "the journal {name} is too large to check"),
    "journal.differs": (
        "{case}: bevisene har {evidence} utvekslinger, journalen {journal} (eller i annen rekkefølge)",
        "{case}: the evidence has {evidence} exchanges, the journal {journal} (or in another order)",
    ),
    "journal.run_backwards": ("kjøringen slutter før den starter", "the run ends before it starts"),
    "journal.run_id": (
        "kjørings-ID-en {run_id} passer ikke med starttiden {started}",
        "the run id {run_id} does not match the start time {started}",
    ),
    "journal.bad_time": ("{case} har en utveksling uten gyldig tidspunkt", "{case} has an exchange without a valid time"),
    "journal.outside": (
        "{case} har en utveksling ({time}) utenfor kjøringens tid",
        "{case} has an exchange ({time}) outside the run's time",
    ),
    "journal.order": ("{case} har utvekslinger i feil tidsrekkefølge", "{case} has exchanges out of time order"),
    "journal.failed": ("Journal og tider stemmer ikke: {problems}.", "Journal and times do not agree: {problems}."),
    # -- attested rows ------------------------------------------------------------------------------
    "attested.automated": ("(automatisert i arket: trinn {step})", "(automated in the sheet: step {step})"),
    "attested.none": ("Ingen rader er bestått bare på en persons bekreftelse.", "No row passed on a person's word alone."),
    "attested.some": (
        "{count} rader er bekreftet av en person, ikke bevist med utvekslinger: {cases}.",
        "{count} rows are attested by a person, not proven by exchanges: {cases}.",
    ),
    "attested.http": (
        "Rader der arket forventer et HTTP-svar kan bare bestås med bevis, ikke med en bekreftelse "
        "(med mindre Bits godtar det: --accept-attested): {cases}.",
        "Rows whose sheet expects an HTTP answer can only pass on evidence, not on an attestation "
        "(unless Bits accepts it: --accept-attested): {cases}.",
    ),
    # -- rows the core system performed ----------------------------------------------------------
    "core.none": (
        "Ingen rader er oppgitt som utført av kjernesystemet.",
        "No row is stated as performed by the core system.",
    ),
    "core.ok": (
        "{count} rader utført av kjernesystemet har forespørslene fra opptaksgatewayen, med bankens eget token, "
        "og verktøyets kontroll av KFRs tilstand etterpå.",
        "{count} rows performed by the core system have its requests from the recording gateway, with the bank's "
        "own token, and the tool's check of KFR's state afterwards.",
    ),
    "core.no_sheet": (
        "Uten testarket kan det ikke avgjøres hvilke forespørsler kjernesystemet skulle sende.",
        "Without the test sheet it cannot be decided which requests the core system was to send.",
    ),
    "core.not_core_step": (
        "{case} er oppgitt som utført av kjernesystemet, men raden er ikke en kjernesystemet kan utføre",
        "{case} is stated as performed by the core system, but the core system cannot perform that row",
    ),
    "core.no_gateway": (
        "{case} er oppgitt som utført av kjernesystemet, men beviset har ingen forespørsel «{role}» fra "
        "kjernesystemet gjennom opptaksgatewayen",
        "{case} is stated as performed by the core system, but its evidence has no request «{role}» from the "
        "core system through the recording gateway",
    ),
    "core.token": (
        "{case}: kjernesystemets forespørsel «{role}» hadde ikke bankens eget token ({reason})",
        "{case}: the core system's request «{role}» did not carry the bank's own token ({reason})",
    ),
    "core.no_token": ("ingen lesbart token", "no readable token"),
    "core.no_state_check": (
        "{case}: beviset har ikke verktøyets oppslag av KFRs tilstand etter kjernesystemets forespørsler",
        "{case}: the evidence lacks the tool's lookup of KFR's state after the core system's requests",
    ),
    "core.failed": (
        "Radene oppgitt som utført av kjernesystemet er ikke bevist: {problems}.",
        "The rows stated as performed by the core system are not proven: {problems}.",
    ),
    # -- correlation ids -------------------------------------------------------------------------
    "corr.ok": (
        "{count} CorrelationID-er, alle UUID og unike.",
        "{count} CorrelationIDs, all UUIDs and unique.",
    ),
    "corr.not_uuid": ("«{value}» i {where} er ikke en UUID", "«{value}» in {where} is not a UUID"),
    "corr.duplicate": ("{value} brukes mer enn én gang", "{value} is used more than once"),
    "corr.unknown": (
        "{value} hos {case} finnes ikke i bevisene",
        "{value} of {case} is not in the evidence",
    ),
    "corr.failed": (
        "CorrelationID-ene er ikke i orden: {problems}.",
        "The CorrelationIDs are not in order: {problems}.",
    ),
    # -- verdicts -------------------------------------------------------------------------------
    "verdict.ok": ("GYLDIG: resultatpakken er i orden.", "VALID: the result pack is in order."),
    "verdict.failed": (
        "UGYLDIG: resultatpakken godtas ikke.",
        "INVALID: the result pack is not accepted.",
    ),
    "verdict.empty": ("UGYLDIG: ingen kontroller ble kjørt.", "INVALID: no checks were run."),
    "verdict.failed_checks": ("Feilet: {names}.", "Failed: {names}."),
    "unknown": ("Kan ikke vurderes.", "Cannot be judged."),
}


def text(key: str, lang: str = "nb", **values: object) -> str:
    nb, en = _TEXTS[key]
    template = en if lang == "en" else nb
    return template.format(**values)


def invalid(key: str, lang: str = "nb", **values: object) -> InvalidPack:
    """An ``InvalidPack`` whose ``code`` names the reason."""
    exc = InvalidPack(text(key, lang, **values))
    exc.code = key  # type: ignore[attr-defined]
    return exc


def join(items: list[str], limit: int = 8) -> str:
    """A readable list that stays short: the first ``limit`` items and how many more."""
    if len(items) <= limit:
        return "; ".join(items)
    return "; ".join(items[:limit]) + f"; … (+{len(items) - limit})"
