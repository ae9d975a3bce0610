"""Makes ``pytest --bank=<orgnr>`` work from the repository root.

The plugin is registered by the ``pytest11`` entry point when the package is installed
(``pip install -e .``). When it is not (running from a plain checkout on ``PYTHONPATH``),
register it here — but never twice: pluggy refuses one module under two names.
"""

from importlib.metadata import entry_points

if not any(ep.name == "kfr_conformance" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["conformance.plugin"]
