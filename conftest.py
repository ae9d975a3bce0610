"""Makes ``pytest --bank=<orgnr>`` work from the repository root, and keeps it lean.

The plugin is registered by the ``pytest11`` entry point when the package is installed
(``pip install -e .``). When it is not (running from a plain checkout on ``PYTHONPATH``),
register it here — but never twice: pluggy refuses one module under two names.

A bank's run loads every installed pytest plugin, including those only the project's own
tests use. The ones that cost a bank's run time without doing anything for it are set aside
as soon as the run is known to be one (see ``pytest_configure``); the project's own test
session keeps them.
"""

from importlib.metadata import entry_points

import pytest

if not any(ep.name == "kfr_conformance" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["conformance.plugin"]

# Plugin names (as pytest registers them) that a bank's run never uses.
# hypothesispytest: its terminal summary imports all of Hypothesis (~0.5–1 s) in every
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
