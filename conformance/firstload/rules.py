"""The D-3 file rules that ``build``, ``check`` and ``upload`` share.

What KFR takes (KFR API 1.1.2, the KFR FAQ and the onboarding page, step D-3): a
``customers`` text of comma-separated ``ID`` or ``ID#YYYY-MM-DD``; a file of at most 10 MB;
ended relationships left out of the first load; more than 100 000 a day announced to
DSOP@bits.no; KFR reads about 250 IDs a second.

"10 MB" is read the strict way: 10 000 000 bytes for the whole request body, the multipart
envelope included, which is also under the sandbox's 10 MiB. The envelope is measured from
the body :class:`conformance.kfr.KfrClient` really sends, not guessed.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from conformance.ids import IdKind, classify_fast, is_synthetic
from conformance.kfr import DSOPBANK, KFR_INGEST_RATE, build_multipart

__all__ = [
    "ANNOUNCE_ABOVE_PER_DAY",
    "ENVELOPE_BYTES",
    "KFR_READ_RATE",
    "KIND_LABELS",
    "MAX_CUSTOMERS_BYTES",
    "MAX_REQUEST_BYTES",
    "StartDates",
    "format_count",
    "format_duration",
    "id_problem",
    "oslo_today",
    "why_invalid",
]

MAX_REQUEST_BYTES = 10_000_000
# KfrClient.batch draws a 24-digit boundary; the envelope does not depend on the content.
ENVELOPE_BYTES = len(build_multipart("0" * 24, DSOPBANK, b""))
MAX_CUSTOMERS_BYTES = MAX_REQUEST_BYTES - ENVELOPE_BYTES
ANNOUNCE_ABOVE_PER_DAY = 100_000
KFR_READ_RATE = KFR_INGEST_RATE

KIND_LABELS = {
    IdKind.FODSELSNUMMER: "fødselsnummer",
    IdKind.D_NUMMER: "D-nummer",
    IdKind.ORGNR: "organisasjonsnummer",
}

SYNTHETIC_REASON = "syntetisk test-ID (Tenor-måned + 80 eller org.nr. som ikke er tildelt)"


def oslo_today() -> dt.date:
    # KFR's dates are Norwegian calendar days.
    return dt.datetime.now(ZoneInfo("Europe/Oslo")).date()


def why_invalid(text: str) -> str:
    """Why ``text`` is not a customer ID, in words a bank's IT can act on."""
    if not text:
        return "mangler ID"
    if text.startswith(("\ufeff", "\u00ef\u00bb\u00bf")):  # a UTF-8 BOM, as text or as bytes read as latin-1
        return "starter med en byte order mark (BOM); lagre filen uten BOM"
    if not (text.isascii() and text.isdigit()):
        return "inneholder andre tegn enn sifre"
    if len(text) == 10:
        return "10 siffer: ledende null mistet (f.eks. i Excel)?"
    if len(text) not in (9, 11):
        return f"{len(text)} siffer (9 for organisasjonsnummer, 11 for fødsels-/D-nummer)"
    if len(text) == 9:
        return "ugyldig kontrollsiffer (organisasjonsnummer)"
    from conformance.ids import _check_digits_ok  # the stdnum reference, for the reason only

    if not _check_digits_ok(text):
        return "ugyldig kontrollsiffer"
    return "ugyldig fødselsdato i nummeret"


def id_problem(text: str, *, allow_synthetic: bool) -> tuple[IdKind | None, str | None]:
    """``(kind, None)`` for an ID KFR takes, ``(None, reason)`` otherwise."""
    kind = classify_fast(text)
    if kind is None:
        return None, why_invalid(text)
    if not allow_synthetic and is_synthetic(text):
        return None, SYNTHETIC_REASON + " – tillatt bare med --allow-synthetic"
    return kind, None


class StartDates:
    """Checks ``YYYY-MM-DD`` start dates, remembering each distinct text (a first load has
    few distinct dates and millions of rows)."""

    MAX_REMEMBERED = 200_000

    def __init__(self, today: dt.date) -> None:
        self.today = today
        self.known: dict[str, int | str] = {}  # read directly by hot loops: one dict lookup

    def check(self, text: str) -> int | str:
        """The date's ordinal, or the reason it is refused (a ``str``)."""
        known = self.known.get(text)
        if known is not None:
            return known
        verdict = self._judge(text)
        if len(self.known) >= self.MAX_REMEMBERED:
            self.known.clear()
        self.known[text] = verdict
        return verdict

    def _judge(self, text: str) -> int | str:
        if len(text) != 10 or text[4] != "-" or text[7] != "-" or not text.replace("-", "").isdigit() or not text.isascii():
            return f"ugyldig dato «{text[:20]}» (skal være YYYY-MM-DD)"
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            return f"dato som ikke finnes: «{text}»"
        if day > self.today:
            return (
                f"startdato {text} er etter i dag; førstegangslasten gjelder eksisterende "
                "kundeforhold (meld nye med enkeltoppdatering når de starter)"
            )
        return day.toordinal()


def format_count(n: int) -> str:
    """5 000 000 – thousands separated by a space, as in Norwegian."""
    return f"{n:,}".replace(",", " ")


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s".replace(".", ",")
    seconds = round(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} t {minutes} min"
    if hours:
        return f"{hours} t {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
