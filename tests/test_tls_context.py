"""The TLS context a run's HTTPS clients share (``conformance.tls``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.tls import default_ssl_context


def test_one_context_per_process_with_httpx_s_default_trust(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    first = default_ssl_context()
    assert default_ssl_context() is first
    assert first.check_hostname and len(first.get_ca_certs()) > 50  # certifi's bundle


def test_ssl_cert_file_is_honoured_as_httpx_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from conformance.sandbox.pki import TestCA

    ca = TestCA(tmp_path / "ca")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.cert_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    only_ours = default_ssl_context()
    assert len(only_ours.get_ca_certs()) == 1
    monkeypatch.delenv("SSL_CERT_FILE")
    assert default_ssl_context() is not only_ours
