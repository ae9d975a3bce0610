"""Build ``testcases/KFR-Integrasjonstester.xlsx``, the bundled integration-test sheet.

The sheet is modelled on the published KFR API (v1.1.2) and the onboarding pages, and is
written in Norwegian like Bits' own. It is the project's source of truth for the KFR
cases; edit the rows here and run::

    python3 tools/make_bundled_sheet.py [OUT]

The output is byte-for-byte reproducible (fixed document dates and zip timestamps), so a
rebuilt sheet has the same SHA-256 as the committed one unless its content changed.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.worksheet.datavalidation import DataValidation

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "testcases" / "KFR-Integrasjonstester.xlsx"

VERSION = "1.0"
VERSION_DATE = dt.date(2026, 11, 23)
TITLE = "KFR – Integrasjonstester"
CASE_SHEET = "Testtilfeller"
STATUS_VALUES = (
    "OK",
    "Feilet",
    "Feil i miljø",
    "Ikke automatisert",
    "Ikke utført",
    "Ikke kjørt",
    "Manuell – venter på bekreftelse",
)

HEADERS = (
    ("Testcase-ID", 12),
    ("Kategori", 16),
    ("Beskrivelse", 48),
    ("Forutsetninger", 30),
    ("Testdata", 30),
    ("Forventet resultat", 40),
    ("Faktisk resultat", 36),
    ("Status", 16),
    ("Kommentar", 28),
    ("Dato", 12),
    ("Utført av", 18),
    ("CorrelationID", 40),
)
BANK_FILLS_FROM = 7  # "Faktisk resultat" and the columns after it are the bank's to fill


@dataclass(frozen=True)
class Row:
    case_id: str
    category: str
    description: str
    preconditions: str
    test_data: str
    expected: str


TOKEN_OK = "Gyldig token med scope bits:kundeforhold.write (som i KFR-01)."

SECTIONS: tuple[tuple[str, tuple[Row, ...]], ...] = (
    (
        "Enkeltregistrering",
        (
            Row(
                "KFR-01",
                "Autentisering",
                "Token fra Maskinporten. Banken lager et JWT-grant signert med "
                "virksomhetssertifikatet (x5c med bladsertifikatet, aud = utstederen med "
                "avsluttende skråstrek) og ber om scope bits:kundeforhold.write.",
                "Klienten er registrert i Maskinporten (test) med tilgang til scope "
                "bits:kundeforhold.write. Gyldig testvirksomhetssertifikat.",
                "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer\n"
                "scope=bits:kundeforhold.write",
                "HTTP 200 OK. Svaret har access_token (Bearer) med scope bits:kundeforhold.write.",
            ),
            Row(
                "KFR-02",
                "Registrering",
                "Registrer kundeforhold for fødselsnummer. POST kundeforhold av typen DSOPBANK "
                "for en person med fødselsnummer på bankens egen fid, med ny CorrelationID.",
                TOKEN_OK,
                "Syntetisk fødselsnummer (Tenor, måned + 80). fid = bankens organisasjonsnummer.",
                "HTTP 201 Created. Kundeforholdet er registrert.",
            ),
            Row(
                "KFR-03",
                "Registrering",
                "Registrer kundeforhold for D-nummer. POST kundeforhold av typen DSOPBANK for "
                "en person med D-nummer.",
                TOKEN_OK,
                "Syntetisk D-nummer (dag + 40).",
                "HTTP 201 Created. Kundeforholdet er registrert.",
            ),
            Row(
                "KFR-04",
                "Registrering",
                "Registrer kundeforhold for organisasjonsnummer. POST kundeforhold av typen "
                "DSOPBANK for et foretak med organisasjonsnummer.",
                TOKEN_OK,
                "Syntetisk organisasjonsnummer (9 siffer, gyldig kontrollsiffer).",
                "HTTP 201 Created. Kundeforholdet er registrert.",
            ),
            Row(
                "KFR-05",
                "Registrering",
                "Registrer et kundeforhold som allerede finnes. Send samme POST en gang til "
                "for en kunde-ID som allerede er registrert hos banken.",
                "Kundeforholdet er registrert på forhånd.",
                "Syntetisk fødselsnummer, registrert én gang før testen.",
                "HTTP 200 OK. Kundeforholdet finnes allerede og er uendret.",
            ),
            Row(
                "KFR-06",
                "Oppslag",
                "Oppslag på egen bank. GET kundeforhold for en kunde-ID på bankens fid, for "
                "dagens dato (standard når fromDate og toDate utelates).",
                "Kundeforholdet er registrert (som i KFR-02).",
                "Kunde-ID registrert i forkant. fid = bankens organisasjonsnummer.",
                "HTTP 200 OK. Listen banks inneholder bankens eget organisasjonsnummer.",
            ),
            Row(
                "KFR-07",
                "Avslutning",
                "Avslutt et kundeforhold. DELETE kundeforholdet for en kunde-ID som er "
                "registrert hos banken.",
                "Kundeforholdet er registrert.",
                "Syntetisk fødselsnummer.",
                "HTTP 204 No Content. Kundeforholdet er avsluttet.",
            ),
            Row(
                "KFR-08",
                "Historikk",
                "Historikk for avsluttet kundeforhold. Avslutt et kundeforhold og slå det opp "
                "med fromDate og toDate: én periode før avslutningen og én periode etter.",
                "Kundeforholdet er registrert og deretter avsluttet.",
                "Periode før: fra startdatoen til dagen før avslutningen. Periode etter: "
                "fra dagen etter avslutningen.",
                "HTTP 200 OK. Oppslaget for perioden før avslutningen gir banken i listen; "
                "oppslaget for perioden etter gir den ikke.",
            ),
            Row(
                "KFR-09",
                "Avslutning",
                "Avslutt et kundeforhold som ikke finnes. DELETE for en kunde-ID som aldri er "
                "registrert hos banken.",
                TOKEN_OK,
                "Syntetisk fødselsnummer som ikke er brukt før.",
                "HTTP 404 Not Found med feilkode KFR-008 (kundeforholdet finnes ikke).",
            ),
        ),
    ),
    (
        "Batch",
        (
            Row(
                "KFR-10",
                "Batch",
                "Batch med startdatoer. POST en batchfil (multipart/form-data, "
                "customer_type=DSOPBANK) der hver kunde-ID har egen startdato "
                "(kunde-ID#ÅÅÅÅ-MM-DD). Når KFR har lest inn batchen, slås kundeforholdene opp.",
                TOKEN_OK,
                "Tre syntetiske kunde-ID-er med startdato, f.eks. <kunde-ID>#2019-11-08.",
                "HTTP 201 Created. Forespørsel og data er gyldige; når KFR har lest inn "
                "batchen (ca. 250 per sekund), er kundeforholdene synlige ved oppslag.",
            ),
            Row(
                "KFR-11",
                "Batch",
                "Batch uten startdatoer. POST en batchfil der kunde-ID-ene står uten dato.",
                TOKEN_OK,
                "Tre syntetiske kunde-ID-er, kommaseparert, uten #dato.",
                "HTTP 201 Created. Kundeforholdene starter i dag og er synlige ved oppslag "
                "når batchen er lest inn.",
            ),
            Row(
                "KFR-12",
                "Batch",
                "Batch med ugyldig dato. POST en batchfil der én kunde-ID har en startdato i "
                "feil format.",
                TOKEN_OK,
                "<kunde-ID>#08.11.2019",
                "HTTP 400 Bad Request med feilkode KFR-010 (ugyldig datoformat).",
            ),
        ),
    ),
    (
        "Feilhåndtering",
        (
            Row(
                "KFR-13",
                "Feilhåndtering",
                "Registrer kundeforhold med ugyldig kunde-ID. Kunde-ID-en har feil kontrollsiffer.",
                TOKEN_OK,
                "Syntetisk fødselsnummer med endret siste kontrollsiffer.",
                "HTTP 400 Bad Request med feilkode KFR-005 (ugyldig kunde-ID).",
            ),
            Row(
                "KFR-14",
                "Feilhåndtering",
                "Registrer kundeforhold med ugyldig relasjonstype. Bruk en annen relasjonstype "
                "enn DSOPBANK i URL-en.",
                TOKEN_OK,
                "relationshipType = UGYLDIG",
                "HTTP 400 Bad Request med feilkode KFR-009.",
            ),
            Row(
                "KFR-15",
                "Feilhåndtering",
                "Registrer kundeforhold uten CorrelationID. Headeren CorrelationID mangler i "
                "forespørselen.",
                TOKEN_OK,
                "Syntetisk fødselsnummer.",
                "HTTP 400 Bad Request med feilkode KFR-004.",
            ),
            Row(
                "KFR-16",
                "Feilhåndtering",
                "Registrer kundeforhold på en annen banks fid. fid i URL-en er et annet "
                "foretaks organisasjonsnummer enn bankens eget.",
                TOKEN_OK,
                "fid = syntetisk organisasjonsnummer som ikke er bankens.",
                "HTTP 403 Forbidden med feilkode KFR-003.",
            ),
            Row(
                "KFR-17",
                "Feilhåndtering",
                "Registrer kundeforhold uten gyldig token. Forespørselen sendes uten "
                "Authorization-header eller med et ugyldig token.",
                "Ingen.",
                "Syntetisk fødselsnummer.",
                "HTTP 401 Unauthorized med feilkode KFR-001.",
            ),
            Row(
                "KFR-18",
                "Feilhåndtering",
                "Registrer kundeforhold med token uten skrivetilgang. Tokenet fra Maskinporten "
                "har ikke scope bits:kundeforhold.write.",
                "Klienten har et scope for oppslag, men ikke bits:kundeforhold.write.",
                "Syntetisk fødselsnummer.",
                "HTTP 403 Forbidden med feilkode KFR-002.",
            ),
            Row(
                "KFR-19",
                "Batch – feilhåndtering",
                "Batch med feil definert boundary. Boundary i Content-Type står i "
                "anførselstegn eller stemmer ikke med skillelinjene i innholdet.",
                TOKEN_OK,
                'Content-Type: multipart/form-data; boundary="..."',
                "HTTP 403 Forbidden. KFR avviser batchen.",
            ),
            Row(
                "KFR-20",
                "Batch – feilhåndtering",
                "Batch over 10 MB. POST en batchfil som er større enn 10 MB.",
                TOKEN_OK,
                "Batchfil på litt over 10 MB med syntetiske kunde-ID-er.",
                "HTTP 413 Payload Too Large. Batchen avvises.",
            ),
        ),
    ),
    (
        "Manuelle kontroller",
        (
            Row(
                "KFR-21",
                "Manuell kontroll",
                "Manuell kontroll: sletting venter til batchen er lest inn (D-3). Banken viser "
                "at kundeforhold som skal avsluttes, og som står i en batch som er lastet opp, "
                "først slettes når KFR har lest inn batchen.",
                "Banken har rutine for første fullstendige innlasting (D-3).",
                "Bankens rutinebeskrivelse.",
                "Manuell: banken bekrefter rutinen med navn og dato. Ingen sletting sendes før "
                "batchen er lest inn.",
            ),
            Row(
                "KFR-22",
                "Manuell kontroll",
                "Manuell kontroll: kjernesystemet holder KFR oppdatert (A-8). Banken viser at "
                "nye kunder registreres og at kunder som slutter, avsluttes i KFR automatisk "
                "fra kjernesystemet.",
                "Integrasjonen fra kjernesystemet er satt opp mot testmiljøet.",
                "Bankens egne testkunder i kjernesystemet.",
                "Manuell: banken bekrefter med navn og dato at kjernesystemet oppdaterer KFR "
                "løpende.",
            ),
        ),
    ),
)

RECONSTRUCTION_NOTE = (
    "Dette arket er kfr-conformance sin egen rekonstruksjon ut fra KFR API 1.1.2 og "
    "onboardingsidene. Onboarding (C-2/C-3) krever arket Bits sender banken: kjør med "
    "--sheet <arket fra Bits>. En kjøring av dette arket gir ingen C-3-e-post."
)

INSTRUCTIONS = (
    "Banken kjører alle testtilfellene på arket «Testtilfeller» mot KFRs testmiljø "
    "(https://preprod.api.bits.no/kar-ws/api/v1), aldri mot produksjon.",
    "Hver test bruker syntetiske kunde-ID-er (fødselsnummer, D-nummer, organisasjonsnummer), "
    "aldri ekte personer eller foretak.",
    "For hvert testtilfelle fyller banken ut Faktisk resultat, Status, Kommentar, Dato, "
    "Utført av og CorrelationID.",
    "Status er én av: " + ", ".join(STATUS_VALUES) + ".",
    "Manuelle kontroller bekreftes av banken med navn og dato.",
    "Når alle testtilfellene er OK, sender banken det utfylte arket til DSOP@bits.no "
    "(onboarding steg C-3) og melder at den er klar for produksjon.",
)

WHO_FILLS = (
    ("Bits", "Testcase-ID, Kategori, Beskrivelse, Forutsetninger, Testdata og Forventet resultat."),
    ("Banken", "Faktisk resultat, Status, Kommentar, Dato, Utført av og CorrelationID."),
)

DARK_BLUE = "1F3864"
LIGHT_BLUE = "D9E1F2"
SECTION_GREY = "E7E6E6"
BANK_YELLOW = "FFF9E5"
THIN = Side(style="thin", color="8EA9DB")
BORDER = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
WRAP_TOP = Alignment(wrap_text=True, vertical="top")


def _cover(wb: Workbook) -> None:
    ws = wb.active
    ws.title = "Forside"
    ws.column_dimensions["A"].width = 18
    ws.column_dimensions["B"].width = 100
    ws["A1"] = TITLE
    ws["A1"].font = Font(bold=True, size=18, color=DARK_BLUE)
    ws["A2"] = "Kundeforholdsregisteret (KFR) – integrasjonstest for finansforetak i DSOP"
    ws["A2"].font = Font(italic=True, size=11)
    ws["A4"] = f"Versjon: {VERSION}"
    ws["A5"] = f"Dato: {VERSION_DATE.isoformat()}"
    ws["A6"] = "Utgitt av: kfr-conformance – rekonstruksjon, ikke Bits' publiserte ark"
    for cell in ("A4", "A5", "A6"):
        ws[cell].font = Font(bold=True)
    ws["A7"] = RECONSTRUCTION_NOTE
    ws["A7"].font = Font(italic=True, color="C00000")
    ws["A8"] = "Slik brukes arket"
    ws["A8"].font = Font(bold=True, size=13, color=DARK_BLUE)
    row = 9
    for number, text in enumerate(INSTRUCTIONS, start=1):
        ws.cell(row=row, column=1, value=f"{number}.").alignment = Alignment(
            horizontal="right", vertical="top"
        )
        ws.cell(row=row, column=2, value=text).alignment = WRAP_TOP
        row += 1
    row += 1
    ws.cell(row=row, column=1, value="Hvem fyller ut hva").font = Font(
        bold=True, size=13, color=DARK_BLUE
    )
    row += 1
    for who, what in WHO_FILLS:
        ws.cell(row=row, column=1, value=who).font = Font(bold=True)
        ws.cell(row=row, column=2, value=what).alignment = WRAP_TOP
        row += 1


def _cases(wb: Workbook) -> None:
    ws = wb.create_sheet(CASE_SHEET)
    last_col = len(HEADERS)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=last_col)
    ws.cell(row=1, column=1, value=TITLE)
    ws.cell(row=1, column=1).font = Font(bold=True, size=16, color="FFFFFF")
    ws.cell(row=1, column=1).fill = PatternFill("solid", fgColor=DARK_BLUE)
    ws.cell(row=1, column=1).alignment = Alignment(vertical="center")
    ws.row_dimensions[1].height = 28
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=last_col)
    ws.cell(
        row=2,
        column=1,
        value=f"Versjon: {VERSION} · {VERSION_DATE.isoformat()} · "
        "Testmiljø: https://preprod.api.bits.no/kar-ws/api/v1 · "
        "Rekonstruert av kfr-conformance – ikke Bits' publiserte ark",
    ).font = Font(italic=True)
    # Row 3 stays empty on purpose: room for a banner above the header in filled copies.
    header_row = 4
    for col, (name, width) in enumerate(HEADERS, start=1):
        cell = ws.cell(row=header_row, column=col, value=name)
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor=DARK_BLUE)
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
        cell.border = BORDER
        ws.column_dimensions[cell.column_letter].width = width
    ws.row_dimensions[header_row].height = 30

    row = header_row + 1
    first_case_row = row
    for section, rows in SECTIONS:
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=last_col)
        cell = ws.cell(row=row, column=1, value=section)
        cell.font = Font(bold=True, size=12, color=DARK_BLUE)
        cell.fill = PatternFill("solid", fgColor=SECTION_GREY)
        cell.border = BORDER
        row += 1
        for case in rows:
            values = (
                case.case_id,
                case.category,
                case.description,
                case.preconditions,
                case.test_data,
                case.expected,
            )
            for col in range(1, last_col + 1):
                cell = ws.cell(
                    row=row, column=col, value=values[col - 1] if col <= len(values) else None
                )
                cell.alignment = WRAP_TOP
                cell.border = BORDER
                if col == 1:
                    cell.font = Font(bold=True)
                if col >= BANK_FILLS_FROM:
                    cell.fill = PatternFill("solid", fgColor=BANK_YELLOW)
                elif col == 6:
                    cell.fill = PatternFill("solid", fgColor=LIGHT_BLUE)
            row += 1
    last_case_row = row - 1

    status_col = [name for name, _ in HEADERS].index("Status") + 1
    status_letter = ws.cell(row=header_row, column=status_col).column_letter
    validation = DataValidation(
        type="list",
        formula1='"' + ",".join(STATUS_VALUES) + '"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="Ugyldig status",
        error="Velg en status fra listen.",
    )
    validation.add(f"{status_letter}{first_case_row}:{status_letter}{last_case_row}")
    ws.add_data_validation(validation)

    ws.freeze_panes = f"B{header_row + 1}"
    ws.print_title_rows = f"{header_row}:{header_row}"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True


def build_workbook() -> Workbook:
    wb = Workbook()
    _cover(wb)
    _cases(wb)
    moment = dt.datetime.combine(VERSION_DATE, dt.time(9, 0))
    wb.properties.title = TITLE
    wb.properties.subject = "Integrasjonstest for Kundeforholdsregisteret (DSOP onboarding C-2)"
    wb.properties.creator = "kfr-conformance"
    wb.properties.version = VERSION
    wb.properties.created = moment
    wb.properties.modified = moment
    wb.properties.language = "nb-NO"
    return wb


def _reproducible(data: bytes) -> bytes:
    """Fix what openpyxl stamps with the current time: the core 'modified' date and the zip
    entries' timestamps."""
    stamp = VERSION_DATE.isoformat() + "T09:00:00Z"
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "docProps/core.xml":
                content = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                    rb"\g<1>" + stamp.encode() + rb"\g<2>",
                    content,
                )
            info = zipfile.ZipInfo(
                item.filename,
                date_time=(VERSION_DATE.year, VERSION_DATE.month, VERSION_DATE.day, 9, 0, 0),
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, content)
    return out.getvalue()


def write_bundled_sheet(out: Path = DEFAULT_OUT) -> Path:
    buffer = io.BytesIO()
    build_workbook().save(buffer)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_reproducible(buffer.getvalue()))
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    path = write_bundled_sheet(out)
    print(f"skrev {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
