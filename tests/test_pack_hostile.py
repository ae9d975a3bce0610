"""Packs are hostile input: every malformed or malicious zip is refused with its own reason,
quickly, in bounded memory, and never with an unexpected exception."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pack_support import (
    build_signed_pack,
    make_results_dir,
    make_zip_bomb,
    read_zip,
    shared_pki,
    write_zip,
)

from conformance.errors import InvalidPack
from conformance.pack.safezip import SafeZip, ZipLimits, name_problem
from conformance.pack.verify import (
    VerificationPolicy,
    VerificationReport,
    pack_from_email,
    verify_pack_bytes,
    verify_path,
)


@pytest.fixture(scope="module")
def good_pack(tmp_path_factory) -> bytes:
    folder = make_results_dir(tmp_path_factory.mktemp("hostile"))
    return build_signed_pack(folder).zip_path.read_bytes()


@pytest.fixture(scope="module")
def policy() -> VerificationPolicy:
    return VerificationPolicy(trust_roots=(shared_pki().root.certificate,))


def refused(data: bytes, policy: VerificationPolicy, code: str) -> InvalidPack:
    with pytest.raises(InvalidPack) as caught:
        verify_pack_bytes(data, policy)
    assert caught.value.code == code, caught.value.message
    assert caught.value.message  # a plain-language reason, not a traceback
    return caught.value


def with_entry(pack: bytes, name: str, data: bytes = b"x") -> bytes:
    return write_zip([*sorted(read_zip(pack).items()), (name, data)])


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("/etc/passwd", "zip.name.absolute"),
        ("../../outside.txt", "zip.name.parent"),
        ("evidence/../../outside.txt", "zip.name.parent"),
        ("evidence\\..\\outside.txt", "zip.name.backslash"),
        ("C:/Windows/evil.dll", "zip.name.drive"),
        ("c:evil.txt", "zip.name.drive"),
        ("evidence//double.json", "zip.name.dot"),
        ("./hidden.json", "zip.name.dot"),
        ("bell\x07.txt", "zip.name.control"),
        ("x" * 500, "zip.name.too_long"),
    ],
)
def test_unsafe_names_are_refused(good_pack, policy, name, code):
    error = refused(with_entry(good_pack, name), policy, code)
    assert "«" in error.message


def test_name_rules_accept_ordinary_paths():
    for name in ("manifest.json", "evidence/KFR-01.json", "original/KFR ark (v1.3).xlsx", "d/"):
        assert name_problem(name) is None


def test_duplicate_names_are_refused(good_pack, policy):
    entries = sorted(read_zip(good_pack).items())
    refused(write_zip([*entries, entries[0]]), policy, "zip.duplicate")
    # …also when only the case differs: it would overwrite on Windows and macOS.
    refused(write_zip([*entries, ("REPORT.HTML", b"x")]), policy, "zip.duplicate")


def _zip_with_info(pack: bytes, info: zipfile.ZipInfo, data: bytes = b"x") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in sorted(read_zip(pack).items()):
            archive.writestr(name, content)
        archive.writestr(info, data)
    return out.getvalue()


def test_symlinks_are_refused(good_pack, policy):
    info = zipfile.ZipInfo("evidence/link.json")
    info.create_system = 3
    info.external_attr = 0o120777 << 16  # a symlink to /etc/passwd
    refused(_zip_with_info(good_pack, info, b"/etc/passwd"), policy, "zip.symlink")


def test_device_files_are_refused(good_pack, policy):
    info = zipfile.ZipInfo("evidence/dev")
    info.create_system = 3
    info.external_attr = 0o020644 << 16  # character device
    refused(_zip_with_info(good_pack, info), policy, "zip.special_file")


def test_encrypted_entries_are_refused(good_pack, policy):
    # zipfile will not write an encrypted entry, so set the "encrypted" flag in the headers.
    data = bytearray(with_entry(good_pack, "evidence/secret.json"))
    name = b"evidence/secret.json"
    central = data.rindex(b"PK\x01\x02", 0, data.rindex(name))
    local = data.rindex(b"PK\x03\x04", 0, data.index(name))
    data[central + 8] |= 0x01
    data[local + 6] |= 0x01
    refused(bytes(data), policy, "zip.encrypted")


def test_unknown_compression_is_refused(good_pack, policy):
    info = zipfile.ZipInfo("evidence/odd.json")
    info.compress_type = zipfile.ZIP_BZIP2
    refused(_zip_with_info(good_pack, info), policy, "zip.compression")


def test_too_many_entries(good_pack):
    strict = VerificationPolicy(limits=ZipLimits(max_entries=5))
    refused(good_pack, strict, "zip.too_many_entries")
    many = write_zip([(f"evidence/{i}.json", b"{}") for i in range(10_001)])
    refused(many, VerificationPolicy(), "zip.too_many_entries")


def test_total_size_cap(good_pack):
    strict = VerificationPolicy(limits=ZipLimits(max_total_uncompressed=10_000))
    refused(good_pack, strict, "zip.too_large")


def test_input_size_cap(good_pack):
    strict = VerificationPolicy(limits=ZipLimits(max_input_bytes=1000))
    refused(good_pack, strict, "zip.input_too_large")


def test_parsed_json_is_capped(good_pack, tmp_path):
    # JSON costs many times its size in memory once parsed, so what is parsed is capped.
    manifest_size = len(read_zip(good_pack)["manifest.json"])
    tight = VerificationPolicy(limits=ZipLimits(max_json_bytes=manifest_size - 1))
    refused(good_pack, tight, "manifest.too_large")
    folder = make_results_dir(tmp_path, evidence_padding=400_000)
    padded = build_signed_pack(folder).zip_path.read_bytes()
    roomy = VerificationPolicy(
        trust_roots=(shared_pki().root.certificate,),
        limits=ZipLimits(max_json_bytes=200_000),  # the manifest fits, KFR-01's evidence not
    )
    report = verify_pack_bytes(padded, roomy)
    assert {c.name for c in report.failed} == {"files"}
    assert "evidence/KFR-01.json er for stor til å kontrolleres" in report.failed[0].reason


def test_oversized_signature(good_pack, policy):
    entries = read_zip(good_pack)
    entries["manifest.json.p7s"] = b"\x30" * (2 << 20)
    refused(write_zip(sorted(entries.items())), policy, "signature.malformed")


def test_gigabyte_zip_bomb_is_refused_quickly_in_bounded_memory(policy):
    bomb = make_zip_bomb(1 << 30)
    assert len(bomb) < 2 * 1024 * 1024  # 1 GiB of zeros in about a megabyte
    tracemalloc.start()
    started = time.perf_counter()
    try:
        refused(bomb, policy, "zip.too_large")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 16 * 1024 * 1024


def test_bomb_under_the_total_cap_is_refused_by_its_ratio(policy):
    refused(make_zip_bomb(64 << 20), policy, "zip.bomb")


def test_bomb_with_lying_headers_is_refused_while_inflating(policy):
    # The headers claim 1 000 bytes; the stream holds 64 MiB. Reading stops at what was
    # declared, the CRC then disagrees: never more than the declared bytes are produced.
    bomb = make_zip_bomb(64 << 20, declared_size=1000, name="manifest.json")
    tracemalloc.start()
    try:
        refused(bomb, policy, "zip.corrupt")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_streaming_ratio_check_does_not_trust_headers():
    # A header that understates the compressed size still cannot inflate past the ratio:
    # the bytes produced are counted as they come.
    bomb = make_zip_bomb(8 << 20, name="manifest.json")
    limits = ZipLimits(max_entry_ratio=2, ratio_floor=1 << 20)
    with SafeZip.__new__(SafeZip) as archive:  # bypass the header check to test the stream
        archive.limits, archive.lang, archive._inflated = limits, "nb", 0
        archive._zip = zipfile.ZipFile(io.BytesIO(bomb))
        archive._infos = {"manifest.json": archive._zip.getinfo("manifest.json")}
        with pytest.raises(InvalidPack) as caught:
            archive.read("manifest.json")
    assert caught.value.code == "zip.bomb"


def test_truncated_zip(good_pack, policy):
    for cut in (10, len(good_pack) // 2, len(good_pack) - 10):
        with pytest.raises(InvalidPack) as caught:
            verify_pack_bytes(good_pack[:cut], policy)
        assert caught.value.code in {"zip.corrupt", "zip.not_zip"}


def test_not_a_zip(policy):
    refused(b"%PDF-1.7\n...", policy, "zip.not_zip")
    refused(b"", policy, "zip.not_zip")


def test_empty_zip_has_no_manifest(policy):
    refused(write_zip({}), policy, "pack.no_manifest")


def test_damaged_entry_data(good_pack, policy):
    data = bytearray(good_pack)
    offset = data.index(b"manifest.json") + len("manifest.json") + 20
    data[offset] ^= 0xFF  # inside the deflated manifest
    with pytest.raises(InvalidPack) as caught:
        verify_pack_bytes(bytes(data), policy)
    assert caught.value.code in {"zip.corrupt", "manifest.json", "manifest.field"}


@pytest.mark.parametrize(
    ("manifest", "code"),
    [
        (b"{not json", "manifest.json"),
        (b"\xff\xfe", "manifest.json"),
        (b"[" * 100_000, "manifest.json"),
        (b'{"format": "kfr-conformance-manifest", "format": "x"}', "manifest.json"),
        (b'{"format": "something-else"}', "manifest.format"),
        (b'{"format": "kfr-conformance-manifest", "version": 99}', "manifest.version"),
        (b'{"format": "kfr-conformance-manifest", "version": 1}', "manifest.field"),
        (b'{"format": "kfr-conformance-manifest", "version": NaN}', "manifest.json"),
    ],
)
def test_malformed_manifest(good_pack, policy, manifest, code):
    entries = read_zip(good_pack)
    entries["manifest.json"] = manifest
    refused(write_zip(sorted(entries.items())), policy, code)


def test_manifest_with_unsafe_file_path(good_pack, policy):
    import json

    entries = read_zip(good_pack)
    data = json.loads(entries["manifest.json"])
    data["files"][0]["path"] = "../../etc/passwd"
    entries["manifest.json"] = json.dumps(data).encode()
    error = refused(write_zip(sorted(entries.items())), policy, "manifest.field")
    assert "files[0].path" in error.message


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        b"not DER at all",
        b"\x30\x80\x00\x00",
        b"\x30\x03\x02\x01\x01",
        b"\x30\x84\xff\xff\xff\xff",
    ],
)
def test_malformed_signature(good_pack, policy, signature):
    entries = read_zip(good_pack)
    entries["manifest.json.p7s"] = signature
    refused(write_zip(sorted(entries.items())), policy, "signature.malformed")


def _signed_data_with(signature: bytes, **changes) -> bytes:
    """The pack's own signature with SignedData fields replaced (asn1crypto re-encodes)."""
    from asn1crypto import cms as asn1_cms

    from conformance.pack.cms import present_fields

    info = asn1_cms.ContentInfo.load(signature)
    fields = {**present_fields(info["content"]), **changes}
    return asn1_cms.ContentInfo(
        {"content_type": "signed_data", "content": asn1_cms.SignedData(fields)}
    ).dump()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p7s: p7s + b"\x00", id="trailing-byte"),
        pytest.param(lambda p7s: b"\x30\x80" * 5000, id="deep-indefinite-nesting"),
        pytest.param(lambda p7s: _data_content_info(), id="not-signed-data"),
        pytest.param(
            lambda p7s: _signed_data_with(p7s, certificates=[_certs(p7s)[0]] * 17),
            id="too-many-certificates",
        ),
        pytest.param(
            lambda p7s: _signed_data_with(p7s, signer_infos=[_signer(p7s)] * 5),
            id="too-many-signers",
        ),
    ],
)
def test_hostile_cms_structures_are_refused(good_pack, policy, make):
    entries = read_zip(good_pack)
    entries["manifest.json.p7s"] = make(entries["manifest.json.p7s"])
    refused(write_zip(sorted(entries.items())), policy, "signature.malformed")


def _data_content_info() -> bytes:
    from asn1crypto import cms as asn1_cms

    return asn1_cms.ContentInfo({"content_type": "data", "content": b"manifest"}).dump()


def _certs(p7s: bytes):
    from asn1crypto import cms as asn1_cms

    return asn1_cms.ContentInfo.load(p7s)["content"]["certificates"]


def _signer(p7s: bytes):
    from asn1crypto import cms as asn1_cms

    return asn1_cms.ContentInfo.load(p7s)["content"]["signer_infos"][0]


def test_truncated_signature(good_pack, policy):
    entries = read_zip(good_pack)
    entries["manifest.json.p7s"] = entries["manifest.json.p7s"][:-7]
    refused(write_zip(sorted(entries.items())), policy, "signature.malformed")


def test_email_without_a_pack():
    raw = b"From: a@b.example\r\nTo: DSOP@bits.no\r\nSubject: hei\r\n\r\nIngen vedlegg.\r\n"
    with pytest.raises(InvalidPack) as caught:
        pack_from_email(raw)
    assert caught.value.code == "eml.no_pack"


def test_email_with_garbage_attachment(tmp_path, policy):
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@b.example", "DSOP@bits.no", "x"
    message.set_content("hei")
    message.add_attachment(b"garbage", maintype="application", subtype="zip", filename="p.zip")
    path = tmp_path / "in.eml"
    path.write_bytes(message.as_bytes())
    with pytest.raises(InvalidPack) as caught:
        verify_path(path, policy)
    assert caught.value.code == "zip.not_zip"


# --- fuzzing ---------------------------------------------------------------------------------


def _mutate(pack: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(
        st.sampled_from(["flip", "truncate", "duplicate", "splice", "header", "content"])
    )
    if kind == "content":
        # Change the bytes inside one entry and zip again: this reaches the JSON and DER
        # parsers, which flipped compressed bytes rarely do.
        entries = read_zip(pack)
        name = data.draw(st.sampled_from(["manifest.json", "manifest.json.p7s", *sorted(entries)]))
        content = bytearray(entries[name])
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(content) - 1))
            content[position] ^= data.draw(st.integers(1, 255))
        entries[name] = bytes(content)
        return write_zip(sorted(entries.items()))
    if kind == "flip":
        mutated = bytearray(pack)
        for _ in range(data.draw(st.integers(1, 8))):
            position = data.draw(st.integers(0, len(pack) - 1))
            mutated[position] ^= data.draw(st.integers(1, 255))
        return bytes(mutated)
    if kind == "truncate":
        return pack[: data.draw(st.integers(0, len(pack) - 1))]
    if kind == "duplicate":
        entries = sorted(read_zip(pack).items())
        copied = data.draw(st.sampled_from(entries))
        return write_zip([*entries, copied])
    if kind == "splice":
        position = data.draw(st.integers(0, len(pack)))
        return pack[:position] + data.draw(st.binary(max_size=64)) + pack[position:]
    # Rewrite one 32-bit field in the central directory (sizes, offsets, counts).
    start = pack.rindex(b"PK\x01\x02")
    position = data.draw(st.integers(start, len(pack) - 4))
    value = data.draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(pack)]))
    return pack[:position] + struct.pack("<I", value) + pack[position + 4 :]


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_packs_give_a_report_or_invalid_pack(good_pack, policy, data):
    mutated = _mutate(good_pack, data)
    try:
        report = verify_pack_bytes(mutated, policy)
    except InvalidPack as exc:
        assert exc.code and exc.message
        return
    assert isinstance(report, VerificationReport) and report.checks
    if mutated != good_pack and not report.ok:
        assert report.failed[0].reason
