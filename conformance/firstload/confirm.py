"""``batch confirm``: are the uploaded IDs visible in KFR? Own-bank lookups, paced.

A 201 for a batch means "valid", not "loaded": KFR reads about 250 IDs a second in the
background. Confirming looks each ID up (``GET /customers/financialInstitutions/{fid}/``)
and counts it visible when the answer lists the bank. ``--sample N`` checks N IDs drawn at
random (the seed is kept, so a resumed run checks the same ones); without it every ID is
checked. Lookups are spaced to ``--rate`` per second so the check does not load KFR's
test environment. Progress is saved at least every second; a restart goes on from there.
When every planned ID has been looked up, a new run looks only at those still missing —
usually IDs KFR had not read yet.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.errors import ConformanceError, UsageError
from conformance.firstload.batchfile import iter_elements
from conformance.firstload.rules import format_count, format_duration
from conformance.firstload.state import load_state, save_state, utc_now
from conformance.firstload.upload import Target, UploadFile

__all__ = ["CONFIRM_FORMAT", "ConfirmResult", "Confirmer"]

CONFIRM_FORMAT = "kfr-conformance/batch-confirm/1"
CHECKPOINT_EVERY_S = 1.0
PROGRESS_EVERY_S = 2.0


class LookupRefused(ConformanceError):
    exit_code = 1


@dataclass
class ConfirmResult:
    planned: int
    checked: int
    visible: int
    missing: list[tuple[str, str]]   # (customer id, file name)
    rechecked: int = 0

    @property
    def complete(self) -> bool:
        return self.checked >= self.planned


class Confirmer:
    def __init__(
        self,
        client: Any,                      # conformance.kfr.KfrClient
        state_path: Path,
        target: Target,
        *,
        rate: float = 20.0,
        sample: int | None = None,
        seed: int | None = None,
        restart: bool = False,
        progress: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise UsageError("--rate må være større enn 0.")
        if sample is not None and sample < 1:
            raise UsageError("--sample må være minst 1.")
        self.client, self.state_path, self.target = client, state_path, target
        self.rate, self.sample, self.seed, self.restart = rate, sample, seed, restart
        self.progress, self.sleep, self.clock = progress, sleep, clock
        self._next_at = 0.0

    # ---- state

    def _plan(self, files: Sequence[UploadFile]) -> dict[str, Any]:
        return {
            "target": self.target.identity(),
            "files": [{"name": f.name, "sha256": f.sha256, "ids": f.ids} for f in files],
            "sample": self.sample,
        }

    def _open_state(self, files: Sequence[UploadFile]) -> dict[str, Any]:
        plan = self._plan(files)
        data = None if self.restart else load_state(self.state_path, CONFIRM_FORMAT)
        if data is not None:
            earlier = {k: data.get(k) for k in plan}
            if earlier != plan:
                raise UsageError(
                    f"{self.state_path} hører til en annen bekreftelse (andre filer, miljø eller --sample).",
                    hint="Fortsett med de samme valgene, eller begynn på nytt med --restart.",
                )
            return data
        total = sum(f.ids for f in files)
        planned = total if self.sample is None else min(self.sample, total)
        return {"format": CONFIRM_FORMAT, **plan, "seed": self.seed if self.seed is not None else secrets.randbits(32),
                "planned": planned, "checked": 0, "visible": 0, "missing": [],
                "created_at": utc_now()}

    # ---- which IDs

    @staticmethod
    def _ids(files: Sequence[UploadFile]) -> Iterator[tuple[str, str]]:
        for file in files:
            for element in iter_elements(file.path):
                customer = element.partition("#")[0].strip()
                if customer:
                    yield customer, file.name

    def _planned_ids(self, files: Sequence[UploadFile], data: dict[str, Any]) -> Iterator[tuple[str, str]]:
        total = sum(f.ids for f in files)
        if data["sample"] is None:
            yield from self._ids(files)
            return
        chosen = sorted(random.Random(data["seed"]).sample(range(total), data["planned"]))
        wanted = iter(chosen)
        next_index = next(wanted, None)
        for index, item in enumerate(self._ids(files)):
            if index == next_index:
                yield item
                next_index = next(wanted, None)
                if next_index is None:
                    return

    # ---- the run

    def run(self, files: Sequence[UploadFile]) -> ConfirmResult:
        data = self._open_state(files)
        if data["checked"] >= data["planned"]:
            return self._recheck(data)
        if data["checked"]:
            self.progress(f"Fortsetter etter {format_count(data['checked'])} av "
                          f"{format_count(data['planned'])} oppslag.")
        else:
            what = "alle" if data["sample"] is None else f"et tilfeldig utvalg på {format_count(data['planned'])} av"
            self.progress(
                f"Slår opp {what} {format_count(sum(f.ids for f in files))} ID-er, "
                f"{self.rate:g} per sekund (ca. {format_duration(data['planned'] / self.rate)})."
            )
        started, done_before = self.clock(), data["checked"]
        last_save = last_report = self.clock()
        try:
            for index, (customer, file_name) in enumerate(self._planned_ids(files, data)):
                if index < data["checked"]:
                    continue
                if self._visible(customer):
                    data["visible"] += 1
                else:
                    data["missing"].append([customer, file_name])
                data["checked"] += 1
                now = self.clock()
                if now - last_save >= CHECKPOINT_EVERY_S:
                    save_state(self.state_path, data)
                    last_save = now
                if now - last_report >= PROGRESS_EVERY_S:
                    self._report(data, (data["checked"] - done_before) / max(now - started, 1e-9))
                    last_report = now
        finally:
            save_state(self.state_path, data)
        return ConfirmResult(data["planned"], data["checked"], data["visible"],
                             [tuple(m) for m in data["missing"]])

    def _recheck(self, data: dict[str, Any]) -> ConfirmResult:
        missing = data["missing"]
        if missing:
            self.progress(f"Alle planlagte oppslag er gjort; slår opp igjen de "
                          f"{format_count(len(missing))} som manglet.")
        still: list[list[str]] = []
        rechecked = 0
        try:
            for position, (customer, file_name) in enumerate(missing):
                if self._visible(customer):
                    data["visible"] += 1
                else:
                    still.append([customer, file_name])
                rechecked += 1
                if rechecked % 200 == 0:
                    data["missing"] = still + missing[position + 1 :]
                    save_state(self.state_path, data)
        finally:
            data["missing"] = still + missing[rechecked:]
            save_state(self.state_path, data)
        return ConfirmResult(data["planned"], data["checked"], data["visible"],
                             [tuple(m) for m in data["missing"]], rechecked=rechecked)

    def _report(self, data: dict[str, Any], per_second: float) -> None:
        share = data["checked"] / data["planned"] * 100 if data["planned"] else 100
        self.progress(
            f"Bekreftet {format_count(data['checked'])} av {format_count(data['planned'])} "
            f"({share:.0f} %): {format_count(data['visible'])} synlige, "
            f"{format_count(len(data['missing']))} ikke synlige, {per_second:.0f} oppslag/s."
        )

    def _visible(self, customer: str) -> bool:
        now = self.clock()
        if now < self._next_at:
            self.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = max(self._next_at, now) + 1.0 / self.rate
        response = self.client.lookup(customer)  # TargetEnvironmentError: state is saved, resumable
        if response.status == 200 and isinstance(response.json, dict):
            banks = response.json.get("banks") or []
            return any(isinstance(b, dict) and b.get("organizationID") == self.client.fid for b in banks)
        if response.status in (401, 403):
            raise LookupRefused(
                f"KFR avviste oppslaget med HTTP {response.status}"
                f" ({response.error_code or ''}), CorrelationID {response.correlation_id}.",
                hint="Kontroller klient, sertifikat og scope (kfr-conformance doctor); "
                "kjør samme kommando igjen – bekreftelsen fortsetter der den stoppet.",
            )
        return False
