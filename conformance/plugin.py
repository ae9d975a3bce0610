"""pytest plugin: ``pytest --bank=<orgnr>`` runs the integration-test sheet (stub; see issue 3)."""

from __future__ import annotations
