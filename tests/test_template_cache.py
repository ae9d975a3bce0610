"""Compiled report templates kept under the tool's home (``conformance.template_cache``):
reused by the next run, the same page either way, never a reason for a run to fail, and
never read from a cache someone else could have written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import jinja2
import pytest
from report_support import make_run  # tests/ is on sys.path (rootdir-less)

from conformance import report
from conformance.home import HOME_ENV, template_cache_dir
from conformance.template_cache import SafeBytecodeCache, bytecode_cache


class CountingEnvironment(jinja2.Environment):
    """A real environment that counts how often it compiles a template from source."""

    compiled = 0

    def compile(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        type(self).compiled += 1
        return super().compile(*args, **kwargs)


def _report_env(cache: jinja2.BytecodeCache | None) -> CountingEnvironment:
    return CountingEnvironment(
        loader=jinja2.PackageLoader("conformance", "templates"),
        bytecode_cache=cache,
        **report._OPTIONS,
    )


def _compiles(cache: jinja2.BytecodeCache | None) -> int:
    """Templates compiled from source when a fresh environment (a new run) loads the report."""
    CountingEnvironment.compiled = 0
    env = _report_env(cache)
    env.get_template(report.TEMPLATE_NAME)
    env.get_template("_report_macros.html.j2")  # imported by the page when it renders
    return CountingEnvironment.compiled


@pytest.fixture
def fresh_report_environment() -> Any:
    """``report._environment`` is made once per process; these tests need it per home."""
    report._environment.cache_clear()
    yield
    report._environment.cache_clear()


def test_the_next_run_loads_both_templates_compiled() -> None:
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 2  # page and macros
    assert len(list(template_cache_dir().iterdir())) == 2
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 0
    assert _compiles(None) == 2


def test_the_page_is_the_same_with_and_without_the_cache(tmp_path: Path) -> None:
    record = make_run(tmp_path / "run")
    pages = []
    for cache in (None, bytecode_cache("report", report._OPTIONS), bytecode_cache("report", report._OPTIONS)):
        template = _report_env(cache).get_template(report.TEMPLATE_NAME)
        pages.append(template.render(report._context(record, tmp_path / "run")))
    assert pages[0] == pages[1] == pages[2]
    assert "KFR-01" in pages[0]


def test_other_options_or_an_edited_template_are_compiled_afresh(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "t.j2").write_text("{{ x }}  \n  A", encoding="utf-8")

    def render(options: dict[str, Any]) -> str:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates),
            bytecode_cache=bytecode_cache("t", options),
            **options,
        )
        return env.get_template("t.j2").render(x="<b>")

    assert render({"autoescape": True}) == "&lt;b&gt;  \n  A"
    assert render({"autoescape": True}) == "&lt;b&gt;  \n  A"
    # The options change the generated code, not jinja2's key: the tag keeps them apart.
    assert render({"autoescape": False}) == "<b>  \n  A"
    assert render({"autoescape": True, "lstrip_blocks": True, "trim_blocks": True}) == "&lt;b&gt;  \n  A"
    (templates / "t.j2").write_text("{{ x }} B", encoding="utf-8")
    assert render({"autoescape": True}) == "&lt;b&gt; B"


def test_a_home_that_cannot_hold_a_cache_still_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_report_environment: None
) -> None:
    record = make_run(tmp_path / "run")
    not_a_folder = tmp_path / "home-is-a-file"
    not_a_folder.write_text("", encoding="utf-8")
    monkeypatch.setenv(HOME_ENV, str(not_a_folder))
    assert bytecode_cache("report", report._OPTIONS) is None
    written = report.write_report(record, tmp_path / "run")
    assert "KFR-01" in written.read_text(encoding="utf-8")


def test_a_cache_folder_that_vanishes_or_breaks_is_no_failure(tmp_path: Path) -> None:
    cache = bytecode_cache("report", report._OPTIONS)
    assert isinstance(cache, SafeBytecodeCache)
    shutil.rmtree(template_cache_dir())  # gone under the run's feet: nothing can be kept
    assert _compiles(cache) == 2
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 2  # made again, refilled
    for entry in template_cache_dir().iterdir():  # damaged files: compiled over, then reused
        entry.write_bytes(entry.read_bytes()[:30])
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 2
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 0


def test_a_cache_others_could_have_written_is_never_read() -> None:
    _compiles(bytecode_cache("report", report._OPTIONS))
    folder = template_cache_dir()
    os.chmod(folder, 0o770)  # a shared, group-writable folder: not used at all
    assert bytecode_cache("report", report._OPTIONS) is None
    os.chmod(folder, 0o700)
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 0
    files = sorted(folder.iterdir())
    os.chmod(files[0], 0o666)  # a file anyone could have replaced
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 1
    os.chmod(files[0], 0o600)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.chown(files[0], 54321, -1)  # another user's file
        assert _compiles(bytecode_cache("report", report._OPTIONS)) == 1
    target = folder / "elsewhere"
    files[0].rename(target)
    files[0].symlink_to(target)  # a link planted in place of the file is not followed
    assert _compiles(bytecode_cache("report", report._OPTIONS)) == 1
