"""Core-system rows: the bank's own core system performs sheet rows through the recording gateway.

    settings = core_system_settings(["python core.py --kfr-url {kfr_base_url}"], None)
    adapter = make_adapter(settings)                    # command, hook or guided
    driver = CoreSystemDriver(settings, gateway, adapter, recorder, bank)
    ctx.core = driver.for_case("KFR-02", today)         # a step's core act then calls
    ctx.core.open(customer_id, role="main")             # … and the tool checks KFR's state

See ``docs/architecture.md`` ("Core-system rows") and the README ("Testing your core system").
"""

from conformance.coresystem.actions import CoreAction
from conformance.coresystem.adapters import (
    AdapterResult,
    CommandAdapter,
    CoreSystemAdapter,
    Display,
    GuidedAdapter,
    HookAdapter,
    StreamDisplay,
    make_adapter,
)
from conformance.coresystem.driver import CaseCoreSystem, CoreSystemDriver
from conformance.coresystem.settings import (
    ACTIONS,
    PLACEHOLDERS,
    CoreSystemSettings,
    core_system_settings,
)

__all__ = [
    "ACTIONS",
    "PLACEHOLDERS",
    "AdapterResult",
    "CaseCoreSystem",
    "CommandAdapter",
    "CoreAction",
    "CoreSystemAdapter",
    "CoreSystemDriver",
    "CoreSystemSettings",
    "Display",
    "GuidedAdapter",
    "HookAdapter",
    "StreamDisplay",
    "core_system_settings",
    "make_adapter",
]
