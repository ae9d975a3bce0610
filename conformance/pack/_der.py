"""A strict, bounded DER reader: just enough ASN.1 to take a CMS SignedData apart.

cryptography 48 signs CMS (``PKCS7SignatureBuilder``) but has no public API to verify it,
and no ASN.1 library (asn1crypto, pyasn1-modules) is a dependency of this project. The
structures needed are few and fixed, so this module reads DER — definite lengths only,
minimal length encodings, nothing past the end — and leaves the cryptography (signature
checks, certificate parsing, path validation) to ``cryptography``. Any deviation raises
``DerError``; callers turn it into ``InvalidPack``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Universal tags (class bits 00, primitive or constructed as DER requires).
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31

MAX_DEPTH = 32  # nothing we read nests deeper; a hostile blob cannot recurse us to death


class DerError(ValueError):
    pass


@dataclass(frozen=True)
class Element:
    """One TLV: ``tag`` is the identifier octet, ``raw`` the whole encoding, ``value`` the contents."""

    tag: int
    raw: bytes
    value: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> list[Element]:
        if not self.constructed:
            raise DerError(f"tag 0x{self.tag:02x} is not constructed")
        return read_all(self.value)

    def expect(self, tag: int) -> Element:
        if self.tag != tag:
            raise DerError(f"expected tag 0x{tag:02x}, found 0x{self.tag:02x}")
        return self


def read_one(data: bytes, offset: int = 0) -> tuple[Element, int]:
    """The element starting at ``offset`` and the offset just after it."""
    end = len(data)
    if offset + 2 > end:
        raise DerError("truncated element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in CMS")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError("indefinite length (BER) is not DER")
    else:
        count = first & 0x7F
        if count > 4 or pos + count > end:
            raise DerError("length field too long or truncated")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("length not minimally encoded")
        pos += count
    if pos + length > end:
        raise DerError("element runs past the end of the data")
    return Element(tag, data[offset : pos + length], data[pos : pos + length]), pos + length


def read_all(data: bytes) -> list[Element]:
    elements: list[Element] = []
    offset = 0
    while offset < len(data):
        element, offset = read_one(data, offset)
        elements.append(element)
    return elements


def read_single(data: bytes) -> Element:
    """``data`` must be exactly one element, with nothing after it."""
    element, offset = read_one(data)
    if offset != len(data):
        raise DerError("trailing bytes after the element")
    return element


def decode_oid(element: Element) -> str:
    element.expect(OID)
    body = element.value
    if not body or body[-1] & 0x80:
        raise DerError("malformed object identifier")
    numbers: list[int] = []
    value = 0
    for byte in body:
        if value == 0 and byte == 0x80:
            raise DerError("object identifier not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    first = min(numbers[0] // 40, 2)
    return ".".join(str(n) for n in [first, numbers[0] - 40 * first, *numbers[1:]])


def decode_integer(element: Element) -> int:
    element.expect(INTEGER)
    if not element.value:
        raise DerError("empty integer")
    return int.from_bytes(element.value, "big", signed=True)


def decode_time(element: Element) -> dt.datetime:
    """UTCTime or GeneralizedTime in the DER forms (``Z``, whole seconds)."""
    try:
        text = element.value.decode("ascii")
        if element.tag == UTC_TIME:
            moment = dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
        elif element.tag == GENERALIZED_TIME:
            moment = dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise DerError(f"tag 0x{element.tag:02x} is not a time")
    except (UnicodeDecodeError, ValueError) as exc:
        raise DerError("malformed time") from exc
    return moment.replace(tzinfo=dt.UTC)
