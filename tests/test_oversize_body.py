"""KFR-20's over-10 MB batch: the body the row builds, and the sandbox refusing it by size.

The body builder is table-driven now; it must give the very text the original (one
python-stdnum checksum and ten f-strings per block) gave, which is kept here as the
reference. The sandbox holds back the file part of a body that may exceed the limit and
validates its IDs only once the part has ended within it: same answers as validating as it
streams, but a file over the limit is refused without its IDs being read.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import pytest
from stdnum.no import orgnr as stdnum_orgnr

from conformance.ids import invalid_check_digit, synthetic_orgnr
from conformance.sandbox import RunningSandbox
from conformance.sandbox.batch import BatchRejected, BatchStream, BatchTooLarge
from conftest import multipart_body
from testcases.steps import MAX_BATCH_BYTES, oversize_batch_text

BOUNDARY = "873380600719114776488944"


def reference_oversize_batch_text(start: int, min_bytes: int) -> str:
    """The builder as it was before it became table-driven (kept verbatim as the reference)."""
    parts: list[str] = []
    size = -1
    block = start - start % 10
    while size < min_bytes:
        base = block // 10 % 200_000
        prefix = f"3{8 + base // 100_000}{base % 100_000:05d}"
        base_sum = stdnum_orgnr.checksum(prefix + "00")
        for digit in range(10):
            check = -(base_sum + 2 * digit) % 11
            if check != 10:
                parts.append(f"{prefix}{digit}{check}")
                size += 10
        block += 10
    return ",".join(parts)


# ---------------------------------------------------------------- the body KFR-20 sends


@pytest.mark.parametrize(
    ("start", "min_bytes"),
    [
        (0, 0),
        (0, 1),
        (9, 9),  # inside the first block
        (10, 10),
        (1_999_990, 200),  # the last block of the range, then round to the first
        (1_999_999, 5_000),
        (2_000_000, 95),  # past the range: the same as offset 0
        (1_999_000, 30_000),  # whole groups of ten blocks up to the end of the range, and on
        (1_999_910, 2_000),  # single blocks to the end of the range, then groups from its start
        *[(1_000, n) for n in range(900, 1_000, 7)],  # the text ends inside the first group
        (1_230, 12_345),  # from mid-group: single blocks up to the next group
        (649_999, MAX_BATCH_BYTES + 1024),  # the row's size from its largest offset
    ],
)
def test_the_body_is_the_one_the_original_builder_gave(start: int, min_bytes: int) -> None:
    assert oversize_batch_text(start, min_bytes) == reference_oversize_batch_text(start, min_bytes)


def test_the_body_is_identical_for_many_random_offsets_and_sizes() -> None:
    rng = random.Random(20)
    for _ in range(300):
        start = rng.randrange(0, 2_100_000)
        min_bytes = rng.choice((rng.randrange(0, 300), rng.randrange(0, 60_000)))
        assert oversize_batch_text(start, min_bytes) == reference_oversize_batch_text(
            start, min_bytes
        ), (start, min_bytes)


def test_the_body_holds_distinct_valid_bulk_range_orgnrs_just_over_the_limit() -> None:
    text = oversize_batch_text(1_234_567, MAX_BATCH_BYTES + 1024)
    numbers = text.split(",")
    assert MAX_BATCH_BYTES + 1024 <= len(text) < MAX_BATCH_BYTES + 1024 + 100
    assert len(set(numbers)) == len(numbers)
    assert all(n[:2] in ("38", "39") and len(n) == 9 for n in numbers)
    sample = random.Random(4).sample(numbers, 2000)
    assert all(stdnum_orgnr.is_valid(n) for n in sample)


# ---------------------------------------------------------------- the sandbox's 413


def _body(customers: str, customer_type: str = "DSOPBANK") -> bytes:
    return multipart_body({"customer_type": customer_type, "customers": customers}, BOUNDARY)


def _outcome(body: bytes, piece: int, limit: int | None, *, hold: bool) -> tuple[Any, ...]:
    """What the stream answers for ``body`` fed in pieces of ``piece`` bytes: the status and
    error code, or the count and the entries written to the sink."""
    sink = io.BytesIO()
    stream = BatchStream(
        BOUNDARY, sink=sink, max_file_bytes=limit, hold=io.BytesIO() if hold else None
    )
    try:
        for i in range(0, len(body), piece):
            stream.feed(body[i : i + piece])
        count = stream.finish()
    except BatchRejected as exc:
        return ("refused", exc.status, exc.code, exc.message)
    return ("accepted", count, sink.getvalue())


def test_holding_the_file_part_gives_the_same_answer_as_validating_as_it_streams() -> None:
    good = [synthetic_orgnr() for _ in range(40)]
    bad = invalid_check_digit(good[7])
    customers = ",".join(good)
    cases = {
        "accepted": _body(customers),
        "dated": _body(f"{good[0]}#2019-11-08, {good[1]} ,"),
        "bad id": _body(",".join([*good[:7], bad, *good[8:]])),
        "bad date": _body(f"{good[0]}#2019-13-08,{good[1]}"),
        "blank in the middle": _body(f"{good[0]},,{good[1]}"),
        "empty": _body(""),
        "wrong type": _body(customers, customer_type="NOTDSOP"),
        "not utf-8": _body(customers).replace(good[3].encode(), b"\xff\xfe" + good[3][2:].encode()),
        "bad id over the limit": _body(",".join([bad, *good])),
    }
    exact = len(customers)  # the first three fit exactly at this limit; longer ones do not
    for name, body in cases.items():
        for limit in (exact, exact - 1, 10 * exact):
            for piece in (1, 7, 64, 100_000):
                streamed = _outcome(body, piece, limit, hold=False)
                held = _outcome(body, piece, limit, hold=True)
                assert held == streamed, (name, limit, piece)
    assert _outcome(cases["accepted"], 7, exact, hold=True)[0] == "accepted"
    assert _outcome(cases["accepted"], 7, exact - 1, hold=True)[1] == 413
    assert _outcome(cases["bad id"], 7, exact, hold=True)[2] == "KFR-005"


def test_a_held_file_over_the_limit_is_refused_without_reading_its_ids() -> None:
    customers = oversize_batch_text(0, 200_000)
    body = _body(customers)
    limit = 150_000
    streaming = BatchStream(BOUNDARY, max_file_bytes=limit)
    held = BatchStream(BOUNDARY, max_file_bytes=limit, hold=io.BytesIO())
    for stream in (streaming, held):
        with pytest.raises(BatchTooLarge) as info:
            for i in range(0, len(body), 65_536):
                stream.feed(body[i : i + 65_536])
        assert (info.value.status, info.value.code) == (413, "KFR-004")
    # Validating as it streams had checked and counted the IDs of the first 128 KiB;
    # holding back counted none of them.
    assert streaming.customers.count > 10_000
    assert held.customers.count == 0


def test_a_held_file_within_the_limit_is_validated_and_emptied_from_the_hold() -> None:
    good = [synthetic_orgnr() for _ in range(5)]
    hold = io.BytesIO()
    sink = io.BytesIO()
    stream = BatchStream(BOUNDARY, sink=sink, max_file_bytes=1000, hold=hold)
    stream.feed(_body(",".join(good)))
    assert stream.finish() == 5
    assert sink.getvalue() == ",".join(good).encode()
    assert hold.getvalue() == b"", "the held copy is dropped once validated"


def _multipart_with_file(file_text: str, padding: int = 0) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="pad"\r\n\r\n{"p" * padding}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customers"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    )
    return (head + file_text + f"\r\n--{BOUNDARY}--\r\n").encode()


def _post(api: Any, body: bytes) -> Any:
    return api.http.post(
        f"/customers/financialInstitutions/{api.creds.orgnr}/batch",
        content=body,
        headers=api.headers(None, **{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
    )


def test_over_http_a_body_declared_over_the_limit_is_still_judged_by_its_file_part(
    sandbox_factory: Callable[..., RunningSandbox], bank_api: Callable[..., Any], tmp_path: Any
) -> None:
    """The declared length is over the limit, so the sandbox holds the file part back; a
    file part within the limit is then validated as before: a bad ID is still KFR-005, good
    IDs are still accepted and ingested; one over the limit is 413 and the connection closed."""
    sb = sandbox_factory(max_batch_bytes=4000)
    api = bank_api(sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b"), sb=sb)
    good = [synthetic_orgnr() for _ in range(500)]  # 5000 bytes
    within = ",".join(good)[:3999].rsplit(",", 1)[0]
    accepted_ids = within.split(",")
    bad = within.replace(accepted_ids[-1], invalid_check_digit(accepted_ids[-1]))

    refused = _post(api, _multipart_with_file(bad, padding=2000))
    assert (refused.status_code, refused.json()["errorCode"]) == (400, "KFR-005")
    assert f"element {len(accepted_ids)}" in refused.json()["errorMessage"]

    accepted = _post(api, _multipart_with_file(within, padding=2000))
    assert accepted.status_code == 201, accepted.text
    assert sb.wait_for_ingestion(10)
    assert api.found(accepted_ids[0]) and api.found(accepted_ids[-1])

    too_big = _post(api, _multipart_with_file(",".join(good), padding=0))
    assert too_big.status_code == 413 and too_big.json()["errorCode"] == "KFR-004"
    assert too_big.headers["connection"] == "close"
    assert not api.found(good[-1])


def test_over_http_the_row_s_own_body_is_refused_with_413_and_closed(
    sandbox: RunningSandbox, bank_api: Callable[..., Any], tmp_path: Any
) -> None:
    api = bank_api(sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b"))
    text = oversize_batch_text(1_000, MAX_BATCH_BYTES + 1024)
    response = _post(api, _multipart_with_file(text))
    assert response.status_code == 413 and response.json()["errorCode"] == "KFR-004"
    assert response.headers["connection"] == "close"
    assert not api.found(text[:9])
