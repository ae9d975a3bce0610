"""One process's side of a run: HTTP client, Maskinporten and KFR clients, evidence.

Each process (the serial runner or one xdist worker) builds its own clients from the
shared ``EnvironmentInfo`` and journals its own exchanges, so workers never share a file
handle. A case's evidence file is written as soon as the case ends, so an interrupted run
keeps everything it did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.models import CaseResult, CaseSpec
from conformance.results import EVIDENCE_DIR, correlation_ids
from conformance.runner import WRITE_SCOPE, CaseContext, RunConfig, run_step, safe_file_name


class ProcessSession:
    def __init__(self, state: Any, *, journal_name: str) -> None:
        from conformance.auth import Credentials, MaskinportenAuth, MaskinportenClient
        from conformance.evidence import EvidenceRecorder, Journal, RecordingTransport
        from conformance.kfr import KfrClient, make_http_client

        env = state.env
        self.results_dir = Path(env.results_dir)
        self.recorder = EvidenceRecorder(Journal(self.results_dir / journal_name),
                                         session=getattr(env, "session", 1))
        self.config = RunConfig(
            bank_orgnr=state.bank_orgnr, bank_name=state.bank_name, env_name=env.env_name,
            kfr_base_url=env.kfr_base_url, maskinporten_issuer=env.maskinporten_issuer,
            client_id=env.client_id, cert_path=Path(env.cert_path),
            cert_password=env.cert_password,
            key_path=Path(env.key_path) if env.key_path else None,
            ca_bundle=Path(env.ca_bundle) if env.ca_bundle else None,
            alt_scope=env.alt_scope, ingest_rate=env.ingest_rate,
        )
        credentials = Credentials.load(self.config.cert_path, password=self.config.cert_password,
                                       key_path=self.config.key_path)
        # Known secrets are scrubbed from evidence even where no pattern would catch them.
        self.recorder.add_secret(self.config.cert_password)
        self.http = make_http_client(
            ca_bundle=self.config.ca_bundle,
            wrap=lambda transport: RecordingTransport(transport, self.recorder),
        )
        self.maskinporten = MaskinportenClient(
            issuer=self.config.maskinporten_issuer, client_id=self.config.client_id,
            credentials=credentials, http=self.http,
        )
        self.kfr = KfrClient(self.config.kfr_base_url, self.config.bank_orgnr, http=self.http,
                             auth=MaskinportenAuth(self.maskinporten, [WRITE_SCOPE]))
        self._allure = _allure_module(state)
        self.identities = _test_identities(state)
        self.core = _core_system_driver(state, self.recorder)

    def run(self, spec: CaseSpec, step: Any, progress: Callable[[str], None]) -> CaseResult:
        rel = f"{EVIDENCE_DIR}/{safe_file_name(spec.case_id)}.json"
        earlier = self._earlier(self.results_dir / rel)
        with self.recorder.case(spec.case_id):
            ctx = CaseContext(case=spec, config=self.config, kfr=self.kfr,
                              maskinporten=self.maskinporten, progress=progress,
                              identities=self.identities)
            if self.core is not None and getattr(step, "core", None) is not None:
                ctx.core = self.core.for_case(spec.case_id, ctx.today, progress)
            try:
                result = run_step(spec, step, ctx, self.recorder, earlier)
            finally:
                if ctx.core is not None:
                    self.core.end_case()
        exchanges = self.recorder.exchanges(spec.case_id)
        result.correlation_ids = correlation_ids([*earlier, *exchanges])
        try:
            self.recorder.write_case_file(spec.case_id, self.results_dir / rel, earlier)
            result.evidence_file = rel
        except OSError as exc:
            result.message = (result.message + f"\nBevis kunne ikke skrives: {exc}").strip()
        if self._allure is not None:
            self._attach(spec, exchanges)
        return result

    def run_robustness(self, scenario: Any, progress: Callable[[str], None]) -> dict[str, Any]:
        """One robustness row (``conformance.coresystem.robustness``): its result as data,
        for ``robustness.json``; never part of the sheet's results."""
        from conformance.coresystem.robustness import run_scenario

        if self.core is None:
            raise RuntimeError("robustness rows need a core system")
        with self.recorder.case(scenario.id):
            ctx = CaseContext(case=None, config=self.config, kfr=self.kfr,  # type: ignore[arg-type]
                              maskinporten=self.maskinporten, progress=progress,
                              identities=self.identities)
            result = run_scenario(scenario, driver=self.core, kfr=self.kfr, recorder=self.recorder,
                                  customer_id=ctx.new_fodselsnummer(), today=ctx.today,
                                  results_dir=self.results_dir)
        return result.to_dict()

    def _earlier(self, path: Path) -> list[dict[str, Any]]:
        """The row's exchanges from earlier sessions (a resumed run), kept in its evidence."""
        if self.recorder.session <= 1 or not path.is_file():
            return []
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return []
        exchanges = data.get("exchanges") if isinstance(data, dict) else None
        return [e for e in exchanges if isinstance(e, dict)] if isinstance(exchanges, list) else []

    def _attach(self, spec: CaseSpec, exchanges: list[dict[str, Any]]) -> None:
        allure = self._allure
        for ex in exchanges:
            name = f"{ex.get('seq', '')} {ex.get('operation', '')} {ex.get('request', {}).get('method', '')}"
            allure.attach(json.dumps(ex, ensure_ascii=False, indent=2), name=name.strip(),
                          attachment_type=allure.attachment_type.JSON)

    def close(self) -> None:
        self.http.close()


def _core_system_driver(state: Any, recorder: Any) -> Any:
    """The core system that performs the rows it can (``--core-system``), or None: the
    gateway the plugin started in front of the environment, and the run's adapter."""
    settings = getattr(state.env, "core_system", None)
    gateway = getattr(state, "gateway", None)
    if not settings or gateway is None:
        return None
    from conformance.coresystem import CoreSystemDriver, CoreSystemSettings, make_adapter

    core_settings = CoreSystemSettings.from_dict(settings)
    adapter = make_adapter(core_settings, display=getattr(state, "core_display", None),
                           cwd=getattr(state, "invocation_dir", None),
                           ca_bundle=Path(state.env.ca_bundle) if state.env.ca_bundle else None,
                           secrets=recorder.secrets)
    return CoreSystemDriver(core_settings, gateway, adapter, recorder, state.bank_orgnr)


def _test_identities(state: Any) -> Any:
    """The bank's own test identities (--test-ids), this worker's share; None = synthetic."""
    import os

    path = getattr(state.env, "test_ids", None)
    if not path:
        return None
    from conformance.home import conformance_home
    from conformance.testids import load_test_ids

    ledger = conformance_home() / "test-ids" / f"{state.bank_orgnr}-{state.env.env_name}.used"
    identities = load_test_ids(Path(path), ledger=ledger)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and count > 1:
        identities = identities.share(int(worker[2:]), count)
    return identities


def _allure_module(state: Any) -> Any:
    """allure-pytest's API when the run was started with --alluredir, else None."""
    try:
        import allure
        from allure_commons import plugin_manager
    except ImportError:
        return None
    return allure if plugin_manager.list_name_plugin() else None
