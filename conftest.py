"""Makes ``pytest --bank=<orgnr>`` work from the repository root, and keeps it lean.

The plugin is registered by the ``pytest11`` entry point when the package is installed
(``pip install -e .``). When it is not (running from a plain checkout on ``PYTHONPATH``),
register it here — but never twice: pluggy refuses one module under two names.

A bank's run loads what pytest loads for any session, including what only the project's
own tests use. What costs a bank's run time without doing anything for it is set aside as
soon as the run is known to be one (``pytest_configure`` below, before the plugin's own
configure imports the engine); the project's own test session keeps everything.
"""

import gc
import sys
from importlib.metadata import entry_points

import pytest

if not any(ep.name == "kfr_conformance" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["conformance.plugin"]

# Plugin names (as pytest registers them) that a bank's run never uses.
# hypothesispytest: its terminal summary imports all of Hypothesis (~0.25 s) in every
# session, whether a test used Hypothesis or not; a bank's rows never do.
TEST_ONLY_PLUGINS = ("hypothesispytest",)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("bank", None) is None:  # the project's own tests: keep everything
        return
    for name in TEST_ONLY_PLUGINS:
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)
    _stop_assertion_rewriting(config)
    # Setting up (the engine's imports, the sheet, the sandbox) makes ~75 000 objects that
    # live as long as the run; the collector's passes over them cost 0.15-0.2 s of CPU and
    # find almost nothing (~2 400 objects of cyclic garbage). Off until pytest_sessionstart.
    gc.disable()


def _stop_assertion_rewriting(config: pytest.Config) -> None:
    """pytest rewrites the ``assert`` statements of every module of every installed package
    that has a pytest plugin — this tool's whole engine, and anyio under Starlette — by
    parsing and compiling each one again, on every run where its bytecode cache cannot be
    written (``PYTHONDONTWRITEBYTECODE``, a read-only install): up to a second of a bank's
    run. A bank's run asserts nothing in Python (its rows are judged from the recorded
    exchanges), so this session's import hook is taken out from here on. pytest has no
    public switch once started (``--assert=plain`` in addopts would also take it from the
    project's tests); its own clean-up removes the hook only if it is still there."""
    sys.meta_path[:] = [
        finder for finder in sys.meta_path
        if not (type(finder).__name__ == "AssertionRewritingHook"
                and getattr(finder, "config", None) is config)
    ]


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Once a bank's run is set up (engine imported, sheet read, sandbox started), what exists
    stays: ``gc.freeze`` keeps the garbage collector from walking those objects again, in
    its own passes during the rows and in the two full passes pytest makes at the end (some
    0.1 s on a run's heap of ~80 000 objects). A short-lived process loses nothing by it.
    The collector, off while the run was set up (``pytest_configure``), is back on for the
    rows."""
    if session.config.getoption("bank", None) is not None:
        gc.freeze()
        gc.enable()
