"""The official sheet may change layout; every alternative layout must read to the same
cases (same expectations, same manual rows) and bind to the same steps by text."""

from __future__ import annotations

from pathlib import Path

import pytest
from sheet_layouts import (
    EXPECTED_BINDINGS,
    LAYOUTS,
    UNKNOWN_ROW,
    build_layout,
    bundled_cases,
    kfr_like_registry,
)

from conformance.binding import bind_cases
from conformance.models import CaseSpec
from conformance.sheet import read_sheet

BUNDLED = bundled_cases()
BY_DESCRIPTION = {case.description: case for case in BUNDLED}


@pytest.fixture(scope="module")
def layout_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("layouts")


def _read(layout_dir: Path, name: str) -> tuple[object, list[CaseSpec]]:
    path = layout_dir / f"{name}.xlsx"
    if not path.exists():
        build_layout(path, LAYOUTS[name])
    return read_sheet(path)


def _known(cases: list[CaseSpec]) -> list[CaseSpec]:
    return [c for c in cases if c.description != UNKNOWN_ROW.description]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_reads_to_the_bundled_cases(layout_dir: Path, name: str) -> None:
    _, cases = _read(layout_dir, name)
    known = _known(cases)
    assert sorted(c.description for c in known) == sorted(BY_DESCRIPTION)
    for case in known:
        original = BY_DESCRIPTION[case.description]
        assert case.expected == original.expected, case.case_id
        assert case.manual == original.manual, case.case_id
        assert case.title == original.title
        assert (case.preconditions, case.test_data) == (original.preconditions, original.test_data)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_binds_every_row_to_the_same_step_by_text(layout_dir: Path, name: str) -> None:
    _, cases = _read(layout_dir, name)
    # Without case ids in the registry, only the row's text can bind it.
    bound = bind_cases(cases, kfr_like_registry(with_ids=False))
    for case in _known(bound):
        original_id = BY_DESCRIPTION[case.description].case_id
        assert (case.binding, case.binding_source) == (EXPECTED_BINDINGS[original_id], "text"), (
            original_id
        )


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_binds_the_same_with_the_suite_ids(layout_dir: Path, name: str) -> None:
    _, cases = _read(layout_dir, name)
    layout = LAYOUTS[name]
    for case in _known(bind_cases(cases, kfr_like_registry())):
        original_id = BY_DESCRIPTION[case.description].case_id
        assert case.binding == EXPECTED_BINDINGS[original_id]
        # Original ids bind by id; other ids (1, 2, TC-101 …) fall back to the text.
        assert case.binding_source == ("id" if layout.ids == "original" else "text")


def test_unknown_row_binds_to_nothing(layout_dir: Path) -> None:
    _, cases = _read(layout_dir, "unknown_row")
    (unknown,) = [c for c in cases if c.description == UNKNOWN_ROW.description]
    for registry in (kfr_like_registry(), kfr_like_registry(with_ids=False)):
        (bound,) = [c for c in bind_cases(cases, registry) if c.case_id == unknown.case_id]
        assert (bound.binding, bound.binding_source) == (None, None)
        assert not bound.manual


def test_integer_and_float_ids_read_as_plain_numbers(layout_dir: Path) -> None:
    for name in ("integer_ids", "float_ids"):
        _, cases = _read(layout_dir, name)
        assert [c.case_id for c in cases] == [str(n) for n in range(1, 23)]


def test_other_order_keeps_each_row_with_its_own_expectation(layout_dir: Path) -> None:
    _, cases = _read(layout_dir, "shuffled")
    assert [c.description for c in cases] != [c.description for c in BUNDLED]
    assert {c.case_id for c in cases} == {f"TC-{100 + n}" for n in range(1, 23)}


def test_cover_sheet_title_block_and_hidden_columns_are_found(layout_dir: Path) -> None:
    info, _ = _read(layout_dir, "cover_and_title_block")
    assert (info.worksheet, info.header_row, info.version) == ("Testtilfeller", 5, "2.1")
    info, _ = _read(layout_dir, "hidden_columns")
    # The hidden, out-of-date "Forventet resultat" in column B loses to the visible one.
    assert info.columns["expected"] == 7 and info.columns["category"] == 3
    info, _ = _read(layout_dir, "hidden_case_sheet")
    assert info.worksheet == "Testtilfeller"
    info, _ = _read(layout_dir, "english_headers")
    assert {"title", "description", "expected", "actual", "correlation_id"} <= set(info.columns)


def test_the_real_suite_binds_every_layout_like_the_reference_registry(layout_dir: Path) -> None:
    from conformance.suite import default_suite_dir, load_suite

    steps = default_suite_dir() / "steps.py"
    if not steps.exists():
        pytest.skip("testcases/steps.py is not there yet")
    registry = load_suite(default_suite_dir()).registry
    for name in sorted(LAYOUTS):
        _, cases = _read(layout_dir, name)
        for case in bind_cases(cases, registry):
            if case.description == UNKNOWN_ROW.description:
                assert case.binding is None, name
            else:
                original_id = BY_DESCRIPTION[case.description].case_id
                assert case.binding == EXPECTED_BINDINGS[original_id], (name, case.case_id)
