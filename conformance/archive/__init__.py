"""The archive for Bits and auditors: received packs, an SQLite index, re-verification and
a static site (``kfr-conformance archive …``).

    index     the SQLite index: schema version, migrations, ``PackEntry`` rows, every
              ``Verification``, the evidence fingerprints, the trust certificates
    evidence  a pack's CorrelationIDs and evidence/answer hashes, for finding replays
    replay    packs sharing evidence (``ReplayMatch``) and a pack's standing
    policy    the trust policy a verdict was reached under, as JSON and back
    verdict   a pack's bytes → ``PackEntry`` through the pack verifier
    store     the archive folder: crash-safe add, orphan scan, repair
    audit     verify-all: every pack against its bytes and the index, under its own policy
    export    every CorrelationID in the archive as CSV, for KFR's own logs
    site      the static HTML site
"""

from __future__ import annotations

from conformance.archive.audit import AuditReport, PackAudit, PolicyChoice, verify_all
from conformance.archive.export import export_correlations
from conformance.archive.index import (
    INDEX_FILE,
    SCHEMA_VERSION,
    ArchiveError,
    Index,
    PackEntry,
    Verification,
    open_index,
)
from conformance.archive.replay import ReplayMatch, standing
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
    "PolicyChoice",
    "RepairOutcome",
    "ReplayMatch",
    "SiteResult",
    "Verification",
    "build_site",
    "export_correlations",
    "open_index",
    "standing",
    "verify_all",
]
