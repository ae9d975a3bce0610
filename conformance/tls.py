"""The TLS settings every HTTPS client of a run shares.

httpx builds a fresh ``SSLContext`` for every client and transport it makes, loading the
whole CA bundle each time (~40 ms); a run made three of them (start-up check, the rows'
client, the TSA). The context is the same every time, so it is made once per process.
"""

from __future__ import annotations

import os
import ssl
from functools import cache


def default_ssl_context() -> ssl.SSLContext:
    """What httpx's ``verify=True`` gives (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``
    when set), made once for each value of those variables."""
    return _context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@cache
def _context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context(verify=True, trust_env=True)
