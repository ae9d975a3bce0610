"""The runner's fail-fast start: one token request, one KFR request, before any results
folder exists. The first problem that would spoil every row — Maskinporten or KFR
unreachable (DNS, TCP, proxy, TLS), a clock outside Maskinporten's window, a refused
write-scope token — becomes one usage error naming the host and the proxy used. Problems
that concern one row (the alternative scope) or may pass (5xx, a connection dropped after
it was opened) do not stop the run: the rows report them."""

from __future__ import annotations

from pathlib import Path

import httpx

from conformance.auth import Credentials
from conformance.errors import AuthError, ConformanceError, TargetEnvironmentError
from conformance.preflight.lines import WRITE_SCOPE, PreflightFailed
from conformance.preflight.network import Endpoint, check_clock
from conformance.preflight.probe import Probe
from conformance.profile import BankEnvironment

# Each of the two requests may take this long to connect, so that an unreachable host is
# reported well within 5 s of starting.
START_UP_CONNECT_S = 2.0
START_UP_READ_S = 4.0


def _unreachable(probe: Probe, ep: Endpoint) -> str | None:
    problem = probe.problem(ep)
    if problem is None or problem.reached:
        return None
    return f"{ep.role} ({ep.address}) kan ikke nås {ep.route}: {problem.text}. {problem.advice}"


def _clock_problem(probe: Probe) -> str | None:
    ep = probe.maskinporten_ep
    line = check_clock(ep, probe.skew(ep))
    if not line.failed:
        return None
    return f"{line.message} {ep.role} nås {ep.route}. {line.advice}"


def start_up_check(env: BankEnvironment, *, connect_s: float = START_UP_CONNECT_S,
                   read_s: float = START_UP_READ_S) -> None:
    """The runner's fail-fast start: one token request, one KFR lookup. Raises
    :class:`PreflightFailed` (one line) when every row would fail for the same reason:
    Maskinporten or KFR unreachable (DNS, TCP, proxy, TLS), a clock outside Maskinporten's
    window, or the write-scope token refused. A certificate that does not load or belongs
    to another bank is left to the runner's own certificate check."""
    try:
        credentials = Credentials.load(Path(env.cert_path), password=env.cert_password,
                                       key_path=env.key_path)
    except ConformanceError:
        return
    if credentials.orgnr and credentials.orgnr != env.orgnr:
        return
    timeout = httpx.Timeout(read_s, connect=connect_s, pool=connect_s)
    with Probe(env, credentials, timeout=timeout) as probe:
        assert probe.mp is not None
        token: str | None = None
        try:
            token = probe.mp.fetch_token([WRITE_SCOPE]).value
        except AuthError as exc:
            problem = _clock_problem(probe) or (
                f"{exc.message} ({probe.maskinporten_ep.host}, {probe.maskinporten_ep.route}). "
                f"Hver rad trenger et token for {WRITE_SCOPE}, så kjøringen stopper her. "
                f"{exc.hint or ''}".strip()
            )
            raise PreflightFailed(problem) from exc
        except TargetEnvironmentError as exc:
            problem = _unreachable(probe, probe.maskinporten_ep)
            if problem:
                raise PreflightFailed(problem) from exc
            # 5xx or a dropped connection: the environment is flaky, not unreachable.
        clock = _clock_problem(probe)
        if clock:
            raise PreflightFailed(clock)
        try:
            probe.lookup(token)
        except TargetEnvironmentError as exc:
            problem = _unreachable(probe, probe.kfr_ep)
            if problem:
                raise PreflightFailed(problem) from exc
