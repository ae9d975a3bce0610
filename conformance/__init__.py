"""kfr-conformance: run Bits' KFR integration-test sheet and leave a signed result pack."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
