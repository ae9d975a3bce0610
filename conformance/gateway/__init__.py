"""The recording gateway: the bank's core system talks to KFR through it.

    with start_gateway(GatewaySettings(bank_orgnr="311000004",
                                       upstream_url=sandbox.kfr_base_url,
                                       maskinporten_issuer=sandbox.maskinporten_issuer,
                                       record_dir=tmp)) as gw:
        ...  # point the core system at gw.kfr_base_url
        gw.findings(), gw.inject(Injection("unavailable", operation="add")), gw.expect(...)

It forwards every request unchanged (the core system's own token included: the gateway
holds no secret of the bank), records every exchange redacted, and checks each request
against KFR's contract with the same rules the sandbox and the judge apply
(:mod:`conformance.contract`). See ``docs/architecture.md`` ("Recording gateway").
"""

from conformance.gateway.injections import INJECTION_KINDS, Injection
from conformance.gateway.recorder import JOURNAL_FILE
from conformance.gateway.server import ROBUSTNESS_FILE, RunningGateway, start_gateway
from conformance.gateway.settings import KFR_PREFIX, GatewaySettings

__all__ = [
    "INJECTION_KINDS",
    "JOURNAL_FILE",
    "KFR_PREFIX",
    "ROBUSTNESS_FILE",
    "GatewaySettings",
    "Injection",
    "RunningGateway",
    "start_gateway",
]
