"""The public surface of ``conformance.pack``: a short list, every name importable."""

from __future__ import annotations

import conformance.pack as pack


def test_exported_names_are_pinned():
    assert pack.__all__ == [
        "CheckResult",
        "MANIFEST_FORMAT",
        "MANIFEST_VERSION",
        "Manifest",
        "PackResult",
        "VerificationFailed",
        "VerificationPolicy",
        "VerificationReport",
        "ZipLimits",
        "build_manifest",
        "build_pack",
        "email_blockers",
        "export_correlations",
        "send_email",
        "sign_manifest",
        "verify_pack_bytes",
        "verify_path",
        "write_email",
    ]
    for name in pack.__all__:
        assert getattr(pack, name) is not None
    assert pack.MANIFEST_FORMAT == "kfr-conformance-manifest" and pack.MANIFEST_VERSION == 1


def test_unknown_names_raise_attribute_error():
    try:
        pack.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
