"""Ground truth: what the simulator did and when, in simulated time.

Every fact is one record ``{"seq", "at", "kind", ...}``; ``at`` is the simulated
instant the simulator gave the platform (a tube's ``collected_at``, a result's
``tested_at``, a contact's registration) or, for what the platform does on its
own clock (orders, admissions), the instant the clock was put at for that step: the
simulator stops the platform's clock there (``frozen``), so those are exact too.
People are named by their ID number (the platform's person keys depend on the
installation's secret, so they would make two runs of one seed differ).
Issue 10 compares the dashboard's intervals against these records.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

# The kinds of record, one per thing the simulator does or sees done.
KINDS = (
    "scenario",          # the run's parameters
    "site",              # a quarantine site, testing site or lab created
    "registered",        # a person registered (contacts and returnees are registered with their event)
    "returned",          # travel history reported (person.returned)
    "risk_area",         # a risk area declared
    "exposed",           # a contact registered with its exposure (contact.identified)
    "infected",          # the simulator decided this person is infected (hidden from the platform)
    "collected",         # a tube swabbed (its members)
    "resulted",          # a lab result posted for a tube
    "positive",          # a single-tube positive posted for a person (test.positive)
    "classified",        # a case classified by the medical institution
    "admitted",          # a positive seen in a treatment bed (hospital, 方舱) at the step that put them there
    "scheduler",         # the quarantine daily job run
    "clock",             # the platform's clock put at a simulated instant
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def note_admissions(world: Any, at: datetime) -> int:
    """Record the positives the platform has put in a treatment bed since the last look, at ``at``:
    the step that just ran (a lab run admits at the result, the daily job admits who waited). The
    clock is frozen at the step, so that is the platform's own admission time (issue 10 measures
    result → bed against it). ``world``: the scenario's World (its API and people by key)."""
    seen = world.__dict__.setdefault("_admitted_noted", set())
    cases = await world.api.call("quarantine", "GET", "/quarantine/cases", params={"classified": "false",
                                                                                     "limit": 1000})
    admitted = sorted((person.id_number, case["site_id"]) for case in cases
                      if (person := world.by_key.get(case["person_key"])) is not None
                      and case.get("site_kind") in ("hospital", "fangcang"))
    for id_number, site in admitted:  # by ID number: the same order on every installation
        if id_number not in seen:
            seen.add(id_number)
            world.truth.add("admitted", at, person=id_number, site=site)
    return len(seen)


class GroundTruth:
    def __init__(self, path: Path | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._file: TextIO | None = path.open("w", encoding="utf-8") if path else None

    def add(self, kind: str, at: datetime, /, **fields: Any) -> dict[str, Any]:
        if kind not in KINDS:
            raise ValueError(f"unknown ground-truth kind {kind!r}")
        if {"seq", "at", "kind"} & set(fields):
            raise ValueError("seq, at and kind are the record's own fields")
        record = {"seq": len(self.records), "at": iso(at), "kind": kind, **fields}
        self.records.append(record)
        self.counts[kind] += 1
        if self._file is not None:
            self._file.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        return record

    def of(self, kind: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.records if r["kind"] == kind)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def fingerprint(self) -> str:
        """A digest of every record: equal for two runs that did the same things at the same times."""
        import hashlib

        digest = hashlib.sha256()
        for record in self.records:
            digest.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
        return digest.hexdigest()
