"""The batch file: raw multipart parsing, KFR's boundary quirk, the size limit, whole-file
rejection, start dates and asynchronous ingestion."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.ids import (
    invalid_check_digit,
    synthetic_d_nummer,
    synthetic_fodselsnummer,
    synthetic_orgnr,
)
from conformance.sandbox import BankCredentials, RunningSandbox
from conformance.sandbox.batch import (
    FORM_ALLOWANCE,
    BatchRejected,
    BatchStream,
    BatchTooLarge,
    boundary_from_content_type,
    parse_batch,
    parse_customers,
)
from conformance.sandbox.context import oslo_today
from conftest import multipart_body

BOUNDARY = "873380600719114776488944"


def error_code(response: Any) -> str:
    return response.json()["errorCode"]


# ---------------------------------------------------------------- parsing, without HTTP


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ('multipart/form-data; boundary="abc"', 403),
        ("multipart/form-data", 403),
        ("multipart/form-data; boundary=", 403),
        ("text/plain; boundary=abc", 400),
        ("application/json", 400),
    ],
)
def test_bad_content_types_are_refused_with_kfrs_status(value: str, status: int) -> None:
    with pytest.raises(BatchRejected) as info:
        boundary_from_content_type(value)
    assert info.value.status == status


def test_boundary_parameter_is_found_among_others() -> None:
    assert (
        boundary_from_content_type("Multipart/Form-Data; charset=utf-8; Boundary=x-1_y") == "x-1_y"
    )
    assert (
        boundary_from_content_type('multipart/form-data; boundary="abc"', accept_quoted=True)
        == "abc"
    )


def test_the_faq_example_with_blank_lines_and_lf_line_ends_parses() -> None:
    body = (
        f'--{BOUNDARY}\nContent-Disposition: form-data; name="customer_type"\n\nDSOPBANK\n\n'
        f'--{BOUNDARY}\nContent-Disposition: form-data; name="customers"; filename="k.csv"\n'
        f"Content-Type: text/plain\n\n922203687#2019-11-08,958069367#2011-11-05,917439389\n"
        f"--{BOUNDARY}--\n"
    ).encode()
    content = parse_batch(body, BOUNDARY)
    assert content.entries == [
        ("922203687", "2019-11-08"),
        ("958069367", "2011-11-05"),
        ("917439389", None),
    ]
    assert content.serialise() == "922203687#2019-11-08,958069367#2011-11-05,917439389"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customers"\r\n\r\n917439389\r\n--{BOUNDARY}--',
            "KFR-004",
        ),
        (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nDSOPBANK\r\n--{BOUNDARY}--",
            "KFR-004",
        ),
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n',
            "KFR-004",
        ),
    ],
)
def test_missing_or_nameless_parts_are_kfr_004(body: str, code: str) -> None:
    with pytest.raises(BatchRejected) as info:
        parse_batch(body.encode(), BOUNDARY)
    assert (info.value.status, info.value.code) == (400, code)


def test_customer_list_rules() -> None:
    good = synthetic_orgnr()
    assert parse_customers(f" {good} ,\n{good}#2020-02-29,\r\n") == [
        (good, None),
        (good, "2020-02-29"),
    ]
    for text, code in [
        (f"{good},,{good}", "KFR-005"),
        ("", "KFR-004"),
        (f"{good}#2020-02-30", "KFR-010"),
        (f"{good}#2020-2-3", "KFR-010"),
        (f"{good}#", "KFR-010"),
        ("12345", "KFR-005"),
    ]:
        with pytest.raises(BatchRejected) as info:
            parse_customers(text)
        assert info.value.code == code, text


# ---------------------------------------------------------------- streaming


def _outcome(parse: Callable[[], Any]) -> Any:
    try:
        return ("accepted", parse())
    except BatchRejected as exc:
        return (exc.status, exc.code, exc.message)


def _streamed(body: bytes, cuts: list[int], **options: Any) -> list[Any]:
    stream = BatchStream(BOUNDARY, collect=True, **options)
    position = 0
    for size in cuts:
        stream.feed(body[position : position + size])
        position += size
    stream.feed(body[position:])
    stream.finish()
    return stream.customers.entries or []


_good_ids = [synthetic_orgnr(), synthetic_fodselsnummer(), synthetic_d_nummer()]
_element = st.tuples(
    st.sampled_from(
        [*_good_ids, invalid_check_digit(_good_ids[0]), "", "12345", "æø", "\u00a0" + _good_ids[1]]
    ),
    st.sampled_from(["", "#2019-11-08", "#2019-13-45", "# 2019-11-08 ", "#", "##"]),
    st.sampled_from(["", " ", "\r\n", " " * 70]),
).map(lambda t: t[2] + t[0] + t[1] + t[2])
_form = st.tuples(
    st.sampled_from(["DSOPBANK", " DSOPBANK\n", "DSOPFOO"]),
    st.lists(_element, max_size=8).map(",".join),
    st.sampled_from(["", "\r\n", f"--{BOUNDARY}", "--", "\n\n", "\xff"]),
    st.integers(0, 400),
).map(
    lambda t: (
        multipart_body({"customer_type": t[0], "customers": t[1]}, BOUNDARY)[: t[3]]
        + t[2].encode("latin-1")
        + multipart_body({"customer_type": t[0], "customers": t[1]}, BOUNDARY)[t[3] :]
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_form, cuts=st.lists(st.integers(0, 40), max_size=30), lenient=st.booleans())
def test_any_split_of_the_body_gives_the_same_answer(
    body: bytes, cuts: list[int], lenient: bool
) -> None:
    whole = _outcome(lambda: parse_batch(body, BOUNDARY, lenient_boundary=lenient).entries)
    pieces = _outcome(lambda: _streamed(body, cuts, lenient_boundary=lenient))
    assert pieces == whole


def test_an_element_and_a_character_split_across_pieces() -> None:
    first, second = synthetic_fodselsnummer(), synthetic_orgnr()
    body = multipart_body(
        {"customer_type": "DSOPBANK", "customers": f"{first}#2019-11-08,{second}"}, BOUNDARY
    )
    cut = body.index(first.encode()) + 5
    assert _streamed(body, [cut, 7]) == [(first, "2019-11-08"), (second, None)]
    bad = multipart_body({"customer_type": "DSOPBANK", "customers": f"{first},æ"}, BOUNDARY)
    inside_ae = bad.index("æ".encode()) + 1  # between the two bytes of one character
    assert _outcome(lambda: _streamed(bad, [inside_ae])) == _outcome(
        lambda: parse_batch(bad, BOUNDARY).entries
    )
    assert _outcome(lambda: _streamed(bad, [inside_ae]))[1] == "KFR-005"


def test_megabytes_of_padding_around_one_element_are_read_in_pieces() -> None:
    customer = synthetic_orgnr()
    padding = " " * (3 * 1024 * 1024)
    for customers, expected in [
        (f"{padding}{customer}{padding},", [(customer, None)]),
        (f"{customer}{padding}#{padding}2019-11-08{padding}", [(customer, "2019-11-08")]),
        (f"{customer}{padding}{customer}", "KFR-005"),  # one element, two IDs: not an ID
    ]:
        body = multipart_body({"customer_type": "DSOPBANK", "customers": customers}, BOUNDARY)
        outcome = _outcome(lambda body=body: _streamed(body, [64 * 1024] * 200))
        assert outcome == ("accepted", expected) or outcome[1] == expected


def test_the_file_limit_stops_the_stream_where_it_is_passed() -> None:
    body = _multipart_with_file(150, synthetic_orgnr())
    stream = BatchStream(BOUNDARY, max_file_bytes=100)
    file_starts = body.index(b"text/plain\r\n\r\n") + len(b"text/plain\r\n\r\n")
    stream.feed(body[: file_starts + 60])  # 60 bytes of the file: under the limit
    with pytest.raises(BatchTooLarge) as info:
        stream.feed(body[file_starts + 60 : file_starts + 160])
    assert (info.value.status, info.value.code) == (413, "KFR-004")


def test_accepted_entries_go_to_the_sink_in_compact_form() -> None:
    import io

    dated, plain = synthetic_fodselsnummer(), synthetic_orgnr()
    sink = io.BytesIO()
    stream = BatchStream(BOUNDARY, sink=sink)
    body = multipart_body(
        {"customer_type": "DSOPBANK", "customers": f" {dated} # 2019-11-08 ,\r\n{plain} ,"},
        BOUNDARY,
    )
    for i in range(0, len(body), 7):
        stream.feed(body[i : i + 7])
    assert stream.finish() == 2
    assert sink.getvalue() == f"{dated}#2019-11-08,{plain}".encode()


# ---------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def shared_bank(
    sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
) -> BankCredentials:
    return sandbox.register_bank(synthetic_orgnr(), out_dir=tmp_path_factory.mktemp("batch-bank"))


@pytest.fixture(scope="module")
def api(shared_bank: BankCredentials, bank_api: Callable[..., Any]) -> Any:
    return bank_api(shared_bank)


def test_valid_batch_gets_201_and_its_start_dates(api: Any, sandbox: RunningSandbox) -> None:
    dated, plain, dnr = synthetic_fodselsnummer(), synthetic_orgnr(), synthetic_d_nummer()
    response = api.batch(
        f"{dated}#2019-11-08,{plain},{dnr}#2019-10-15",
        CorrelationID="2b6fc544-e708-4887-8425-378733eea631",
    )
    assert response.status_code == 201, response.text
    assert response.headers["CorrelationID"] == "2b6fc544-e708-4887-8425-378733eea631"
    assert sandbox.wait_for_ingestion(10)
    assert api.found(dated, from_date="2019-11-08", to_date="2019-11-08")
    assert not api.found(dated, from_date="2019-01-01", to_date="2019-11-07")
    assert api.found(dnr, from_date="2019-10-15", to_date="2019-10-15")
    yesterday = oslo_today() - dt.timedelta(days=1)
    assert not api.found(plain, from_date="2000-01-01", to_date=yesterday)
    assert api.found(plain)


def test_ingestion_is_asynchronous_and_paced(
    sandbox_factory: Callable[..., RunningSandbox], bank_api: Callable[..., Any], tmp_path: Any
) -> None:
    sb = sandbox_factory(ingest_rate=40)
    creds = sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "bank")
    api = bank_api(creds, sb=sb)
    customers = [synthetic_fodselsnummer() for _ in range(40)]
    started = time.monotonic()
    assert api.batch(",".join(customers)).status_code == 201
    answered = time.monotonic() - started
    assert not api.found(customers[-1]), (
        "a 201 means valid, not loaded: the last ID cannot be visible yet"
    )
    assert sb.relationship_count(creds.orgnr) < len(customers)
    assert sb.wait_for_ingestion(timeout=10)
    took = time.monotonic() - started
    assert answered < 0.5 < took, (answered, took)  # 40 IDs at 40/s take about a second
    assert sb.relationship_count(creds.orgnr) == len(customers)
    assert api.found(customers[-1])


def test_entries_already_active_are_not_duplicated(
    sandbox: RunningSandbox, bank: BankCredentials, bank_api: Callable[..., Any]
) -> None:
    fresh = bank_api(bank)
    existing, new = synthetic_fodselsnummer(), synthetic_orgnr()
    assert fresh.add(existing).status_code == 201
    assert fresh.batch(f"{existing}#2010-01-01,{new},{new}").status_code == 201
    assert sandbox.wait_for_ingestion(10)
    assert sandbox.relationship_count(bank.orgnr) == 2
    assert not fresh.found(existing, from_date="2010-01-01", to_date="2010-12-31"), (
        "the active one is kept as it was"
    )


@pytest.mark.parametrize(
    ("customers", "code"),
    [
        ("GOOD#2019-11-08,BAD_DATE#2019-13-45", "KFR-010"),
        ("GOOD#2019-11-08,BAD_ID", "KFR-005"),
    ],
)
def test_one_bad_entry_rejects_the_whole_file(
    customers: str,
    code: str,
    sandbox: RunningSandbox,
    bank: BankCredentials,
    bank_api: Callable[..., Any],
) -> None:
    api = bank_api(bank)
    good = synthetic_orgnr()
    text = (
        customers.replace("GOOD", good)
        .replace("BAD_DATE", synthetic_fodselsnummer())
        .replace("BAD_ID", invalid_check_digit(synthetic_fodselsnummer()))
    )
    response = api.batch(text)
    assert response.status_code == 400 and error_code(response) == code
    assert sandbox.wait_for_ingestion(10)
    assert sandbox.relationship_count(bank.orgnr) == 0
    assert not api.found(good, from_date="2019-11-08", to_date=oslo_today())


def test_other_field_errors(api: Any) -> None:
    assert error_code(api.batch(synthetic_orgnr(), customer_type="DSOPFOO")) == "KFR-009"
    no_customers = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n--{BOUNDARY}--\r\n'
    response = api.batch(body=no_customers.encode())
    assert response.status_code == 400 and error_code(response) == "KFR-004"
    response = api.batch(body=b"917439389", content_type="text/plain")
    assert response.status_code == 400 and error_code(response) == "KFR-004"
    response = api.batch(synthetic_orgnr(), CorrelationID=None)
    assert response.status_code == 400 and error_code(response) == "KFR-004"


def test_quoted_or_mismatched_boundary_is_403_like_kfr(api: Any) -> None:
    quoted = api.batch(
        synthetic_orgnr(), content_type=f'multipart/form-data; boundary="{BOUNDARY}"'
    )
    assert quoted.status_code == 403, quoted.text
    mismatched = api.batch(
        synthetic_orgnr(), content_type="multipart/form-data; boundary=somethingelse"
    )
    assert mismatched.status_code == 403, mismatched.text
    missing = api.batch(synthetic_orgnr(), content_type="multipart/form-data")
    assert missing.status_code == 403, missing.text
    assert api.batch(synthetic_orgnr()).status_code == 201, (
        "the same file with a plain boundary is fine"
    )


def _multipart_with_file(file_size: int, customer: str, *, padding: int = 0) -> bytes:
    """A valid batch body whose ``customers`` part is exactly ``file_size`` bytes: one
    customer, padded with spaces (which KFR's list format allows), so that the size is
    tested rather than the validation speed. ``padding`` adds an unrelated form field, so
    the body can be much larger than its file part."""
    extra = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="comment"\r\n\r\n{"x" * padding}\r\n'
        if padding
        else ""
    )
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_type"\r\n\r\nDSOPBANK\r\n'
        f"{extra}"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customers"\r\nContent-Type: text/plain\r\n\r\n'
    )
    tail = f"\r\n--{BOUNDARY}--\r\n"
    return (head + customer.ljust(file_size) + tail).encode()


LIMIT = 10 * 1024 * 1024


def test_the_ten_megabyte_limit_counts_the_customers_part(
    api: Any, sandbox: RunningSandbox
) -> None:
    customer = synthetic_orgnr()
    # The whole body is over 10 MB, the file part is exactly 10 MB: KFR takes it.
    body = _multipart_with_file(LIMIT, customer, padding=4096)
    assert len(body) > LIMIT + 4096
    accepted = api.batch(body=body)
    assert accepted.status_code == 201, accepted.text
    assert sandbox.wait_for_ingestion(10)
    assert api.found(customer)
    # One byte more in the file part is refused, and the connection is not kept.
    too_big = api.batch(body=_multipart_with_file(LIMIT + 1, synthetic_orgnr()))
    assert too_big.status_code == 413, too_big.text
    assert error_code(too_big) == "KFR-004"
    assert too_big.headers["connection"] == "close"


def test_the_body_may_exceed_the_file_limit_by_the_form_allowance(
    sandbox_factory: Callable[..., RunningSandbox], bank_api: Callable[..., Any], tmp_path: Any
) -> None:
    sb = sandbox_factory(max_batch_bytes=2000)
    api = bank_api(sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b"), sb=sb)
    within = api.batch(
        body=_multipart_with_file(2000, synthetic_orgnr(), padding=FORM_ALLOWANCE // 2)
    )
    assert within.status_code == 201, within.text
    beyond = api.batch(
        body=_multipart_with_file(100, synthetic_orgnr(), padding=FORM_ALLOWANCE + 2000)
    )
    assert beyond.status_code == 413 and beyond.headers["connection"] == "close"


def test_size_is_checked_on_the_stream_when_no_length_is_given(
    sandbox_factory: Callable[..., RunningSandbox], bank_api: Callable[..., Any], tmp_path: Any
) -> None:
    sb = sandbox_factory(max_batch_bytes=2000)
    api = bank_api(sb.register_bank(synthetic_orgnr(), out_dir=tmp_path / "b"), sb=sb)
    customer = synthetic_orgnr()

    def chunks(body: bytes) -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(body), 300):
            yield body[i : i + 300]

    too_big = api.http.post(
        f"/customers/financialInstitutions/{api.creds.orgnr}/batch",
        content=chunks(_multipart_with_file(2001, customer)),
        headers=api.headers(None, **{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
    )
    assert "content-length" not in too_big.request.headers
    assert too_big.status_code == 413, too_big.text
    assert too_big.headers["connection"] == "close"
    ok = api.http.post(
        f"/customers/financialInstitutions/{api.creds.orgnr}/batch",
        content=chunks(_multipart_with_file(2000, customer)),
        headers=api.headers(None, **{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
    )
    assert ok.status_code == 201, ok.text


_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.binary(max_size=400) | _ascii.map(str.encode),
    content_type=st.sampled_from(
        ["multipart/form-data; boundary=" + BOUNDARY, "multipart/form-data", "text/plain"]
    )
    | _ascii.map(lambda s: "multipart/form-data; boundary=" + s),
    prefix=st.booleans(),
)
def test_arbitrary_batch_bodies_never_get_a_500(
    api: Any, body: bytes, content_type: str, prefix: bool
) -> None:
    if (
        prefix
    ):  # start like a real multipart body so the parser gets further than the boundary check
        body = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customers"\r\n\r\n'.encode()
            + body
        )
    response = api.batch(body=body, content_type=content_type.strip() or "x")
    assert response.status_code < 500, response.text
    if response.status_code != 201:
        assert set(response.json()) == {"errorCode", "errorMessage", "timestamp"}
