"""The archive for Bits and auditors: received packs, an SQLite index, re-verification and
a static site (``kfr-conformance archive …``).

    index   the SQLite index: schema version, migrations, ``PackEntry`` rows
    verdict a pack's bytes → ``PackEntry`` through the pack verifier
    store   the archive folder: crash-safe add, orphan scan, repair
    audit   verify-all: every pack against its bytes, the index and today's trust options
    site    the static HTML site
"""

from __future__ import annotations

from conformance.archive.audit import AuditReport, PackAudit, verify_all
from conformance.archive.index import (
    INDEX_FILE,
    SCHEMA_VERSION,
    ArchiveError,
    Index,
    PackEntry,
    open_index,
)
from conformance.archive.site import SiteResult, build_site
from conformance.archive.store import AddOutcome, Archive, Consistency, RepairOutcome

__all__ = [
    "INDEX_FILE",
    "SCHEMA_VERSION",
    "AddOutcome",
    "Archive",
    "ArchiveError",
    "AuditReport",
    "Consistency",
    "Index",
    "PackAudit",
    "PackEntry",
    "RepairOutcome",
    "SiteResult",
    "build_site",
    "open_index",
    "verify_all",
]
