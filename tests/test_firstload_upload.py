"""The uploader against a real sandbox: pacing, and what each way of failing leaves in the
state file — accepted, refused (safe to send again), not sent, or unknown."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conformance.auth import Credentials, MaskinportenAuth, MaskinportenClient
from conformance.errors import UsageError
from conformance.firstload.batchfile import BatchFileWriter, sha256_of
from conformance.firstload.upload import (
    BatchOutcome,
    BatchOutcomeTransport,
    Target,
    Uploader,
    UploadFile,
    UploadState,
    UploadStopped,
)
from conformance.kfr import KfrClient, make_http_client
from conformance.sandbox import Faults

WRITE_SCOPE = "bits:kundeforhold.write"
ORG_W = (3, 2, 7, 6, 5, 4, 3, 2)


def _orgnrs(count: int, first: int) -> list[str]:
    out, base = [], first
    while len(out) < count:
        digits = f"3{base:07d}"
        check = (11 - sum(w * int(d) for w, d in zip(ORG_W, digits, strict=True)) % 11) % 11
        if check != 10:
            out.append(digits + str(check))
        base += 1
    return out


def _files(folder: Path, numbers: list[str], per_file: int) -> list[UploadFile]:
    writer = BatchFileWriter(folder, max_bytes=per_file * 10 - 1)  # 9 digits + comma each
    writer.add_many(numbers)
    return [UploadFile(f.path, f.sha256, f.ids, f.bytes) for f in writer.close()]


def _client(sb, creds, *, client_id: str | None = None) -> tuple[KfrClient, BatchOutcome]:
    outcome = BatchOutcome()
    http = make_http_client(wrap=lambda transport: BatchOutcomeTransport(transport, outcome))
    credentials = Credentials.load(creds.p12, password=creds.password)
    maskinporten = MaskinportenClient(issuer=sb.maskinporten_issuer,
                                      client_id=client_id or creds.client_id,
                                      credentials=credentials, http=http)
    client = KfrClient(sb.kfr_base_url, creds.orgnr, http=http, retries=0,
                       auth=MaskinportenAuth(maskinporten, [WRITE_SCOPE]))
    return client, outcome


def _state(tmp_path: Path, sb, creds, clock=time.time) -> UploadState:
    return UploadState.open(tmp_path / "state.json", Target(creds.orgnr, "sandbox", sb.kfr_base_url),
                            clock=clock)


class FakeTime:
    """A clock that moves only when the uploader sleeps: requests take no time."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now + 0.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("max_queued", "expected_sleeps"),
    [
        (0, [1.01, 1.01]),    # each file waits until the one before is read: 100 IDs at 100/s
        (150, [0.51, 1.0]),   # room for 150: 100 queued must fall to 50, then 149 to 50
    ],
)
def test_each_file_waits_until_kfr_has_read_enough(
    sandbox, bank, tmp_path: Path, max_queued: int, expected_sleeps: list[float]
) -> None:
    files = _files(tmp_path, _orgnrs(300, 4_100_000), per_file=100)
    client, outcome = _client(sandbox, bank)
    fake = FakeTime()
    uploader = Uploader(client, outcome, _state(tmp_path, sandbox, bank, fake.clock), rate=100,
                        max_queued=max_queued, progress=lambda _: None, sleep=fake.sleep,
                        clock=fake.clock)
    result = uploader.run(files)
    assert (result.sent, result.accepted_ids) == (3, 300)
    # (the state file stamps times to the millisecond)
    assert fake.sleeps == [pytest.approx(x, abs=2e-3) for x in expected_sleeps]


def test_a_changed_file_is_refused_before_anything_is_sent(sandbox, bank, tmp_path: Path) -> None:
    files = _files(tmp_path, _orgnrs(20, 4_200_000), per_file=10)
    client, outcome = _client(sandbox, bank)
    state = _state(tmp_path, sandbox, bank)
    Uploader(client, outcome, state, rate=1e6, progress=lambda _: None).run(files[:1])
    files[0].path.write_text(_orgnrs(1, 4_300_000)[0])  # someone edits an accepted file
    edited = UploadFile(files[0].path, sha256_of(files[0].path), 1, files[0].path.stat().st_size)
    with pytest.raises(UsageError, match="endret etter at KFR godtok"):
        Uploader(client, outcome, state, rate=1e6, progress=lambda _: None).run([edited, files[1]])
    assert [e["name"] for e in state.entries] == [files[0].name]


def test_token_refused_means_not_sent(sandbox, bank, tmp_path: Path) -> None:
    files = _files(tmp_path, _orgnrs(10, 4_400_000), per_file=10)
    client, outcome = _client(sandbox, bank, client_id="ukjent-klient")
    state = _state(tmp_path, sandbox, bank)
    with pytest.raises(UploadStopped, match="ble ikke sendt"):
        Uploader(client, outcome, state, rate=1e6, progress=lambda _: None).run(files)
    assert state.entries[0]["state"] == "refused" and state.unknown() == []
    good, good_outcome = _client(sandbox, bank)
    Uploader(good, good_outcome, state, rate=1e6, progress=lambda _: None).run(files)
    assert state.entries[0]["state"] == "accepted" and state.entries[0]["attempts"] == 2


@pytest.mark.parametrize("faults", [Faults(drop_rate=1.0), Faults(error_rate_504=1.0)],
                         ids=["connection-dropped", "gateway-timeout"])
def test_no_answer_or_504_leaves_the_outcome_unknown(sandbox, bank, tmp_path: Path, faults) -> None:
    files = _files(tmp_path, _orgnrs(10, 4_500_000), per_file=10)
    client, outcome = _client(sandbox, bank)
    client.auth.client.token([WRITE_SCOPE])  # the token first: the faults hit KFR only
    state = _state(tmp_path, sandbox, bank)
    sandbox.set_faults(faults)
    with pytest.raises(UploadStopped, match="utfallet er ukjent"):
        Uploader(client, outcome, state, rate=1e6, progress=lambda _: None).run(files)
    sandbox.set_faults(Faults())
    assert [e["state"] for e in state.entries] == ["sending"]
    with pytest.raises(UploadStopped, match="--resend-unknown"):
        Uploader(client, outcome, state, rate=1e6, progress=lambda _: None).run(files)
    Uploader(client, outcome, state, rate=1e6, resend_unknown=True, progress=lambda _: None).run(files)
    assert [e["state"] for e in state.entries] == ["accepted"]


def test_state_of_another_environment_is_not_mixed_in(sandbox, bank, tmp_path: Path) -> None:
    state = _state(tmp_path, sandbox, bank)
    state.save()
    with pytest.raises(UsageError) as err:
        UploadState.open(tmp_path / "state.json",
                         Target(bank.orgnr, "test", "https://preprod.api.bits.no/kar-ws/api/v1"))
    assert f"gjelder bank {bank.orgnr} i sandkassen, ikke bank {bank.orgnr} i testmiljøet" in str(err.value)
    assert "egen statusfil" in err.value.diagnostics()
