"""Valid events of every type in the catalogue (one per topic), and poison messages for them:
what the fault tests publish straight onto the platform's broker."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

from fangkong_common.events import schemas as ev
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope


def key_of(label: str) -> str:
    """A person key (64 hex) nobody else uses."""
    return hashlib.sha256(f"fault-test:{label}:{uuid.uuid4()}".encode()).hexdigest()


def good_event(topic: str, region: str) -> Envelope:
    """A valid event of ``topic`` about a fresh person in ``region``."""
    now = datetime.now(UTC)
    today = now.date()
    person = key_of(topic)
    other = key_of(topic + "/source")
    site = f"fault-site-{uuid.uuid4().hex[:8]}"
    payloads: dict[str, ev.EventPayload] = {
        topics.PERSON_RETURNED: ev.PersonReturned(
            person_key=person, region_code=region, category=ev.ReturneeCategory.domestic_other,
            origin_kind="domestic", origin_region_code="110101", arrival_date=today),
        topics.PERSON_RISK_FLAGGED: ev.PersonRiskFlagged(
            person_key=person, region_code=region, risk_area_id=str(uuid.uuid4()), risk_area_region_code="110101",
            level=ev.RiskLevel.medium, window_start=now - timedelta(days=7), window_end=now),
        topics.CONTACT_IDENTIFIED: ev.ContactIdentified(
            person_key=person, region_code=region, degree=1, source_person_key=other, case_person_key=other,
            last_exposure_at=now - timedelta(hours=5), setting="household"),
        topics.CHECKPOINT_FEVER: ev.CheckpointFever(
            checkpoint_id="fault-checkpoint", region_code=region, person_key=person, temperature_c=38.2,
            observed_at=now),
        topics.VACCINATION_RECORDED: ev.VaccinationRecorded(
            person_key=person, region_code=region, age_group="18+", vaccine="fault-vaccine", dose_number=1,
            vaccinated_on=today),
        topics.GATHERING_FILED: ev.GatheringFiled(
            gathering_id=str(uuid.uuid4()), region_code=region, kind="meeting", expected_attendees=30,
            held_on=today + timedelta(days=3), status="filed"),
        topics.QUARANTINE_ORDERED: ev.QuarantineOrdered(
            order_id=uuid.uuid4(), person_key=person, region_code=region, reason="domestic_key_region",
            policy_id="fault-policy", policy_version=1,
            stages=[ev.PlannedStage(kind=ev.StageKind.monitoring, place=ev.StagePlace.home, start_date=today,
                                    end_date=today + timedelta(days=13), test_days=[today])]),
        topics.QUARANTINE_TEST_DUE: ev.QuarantineTestDue(
            order_id=uuid.uuid4(), person_key=person, region_code=region, due_date=today, stage_index=0),
        topics.QUARANTINE_RELEASED: ev.QuarantineReleased(
            order_id=uuid.uuid4(), person_key=person, region_code=region, released_at=now),
        topics.QUARANTINE_ADMITTED: ev.QuarantineAdmitted(
            person_key=person, region_code=region, origin_region_code=region, site_id=site,
            site_kind=ev.SiteKind.hotel, admitted_at=now),
        topics.CASE_CLASSIFIED: ev.CaseClassified(
            person_key=person, origin_region_code=region, treating_region_code=region,
            classification=ev.CaseClass.asymptomatic, classified_at=now),
        topics.SITE_CAPACITY_LOW: ev.SiteCapacityLow(
            site_id=site, region_code=region, site_kind=ev.SiteKind.hotel, beds_total=10, beds_free=1,
            threshold=0.1),
        topics.TEST_COLLECTED: ev.TestCollected(
            barcode=f"FG-{uuid.uuid4().hex[:10]}", site_id=site, region_code=region, ratio=1, member_keys=[person],
            collected_at=now - timedelta(hours=2)),
        topics.TEST_POOL_POSITIVE: ev.TestPoolPositive(
            barcode=f"FG-{uuid.uuid4().hex[:10]}", lab_id="fault-lab", region_code=region,
            member_keys=[person, other], resulted_at=now),
        topics.TEST_POSITIVE: ev.TestPositive(
            person_key=person, barcode=f"FG-{uuid.uuid4().hex[:10]}", lab_id="fault-lab", region_code=region,
            resulted_at=now, ct_value=30.0),
        topics.TEST_NEGATIVE: ev.TestNegative(
            barcode=f"FG-{uuid.uuid4().hex[:10]}", lab_id="fault-lab", region_code=region, member_keys=[person],
            resulted_at=now),
        topics.TESTING_CAPACITY_ALERT: ev.TestingCapacityAlert(
            region_code=region, kind="backlog", backlog_tubes=10, message="故障测试"),
    }
    assert set(payloads) == set(topics.ALL_TOPICS), "a topic of the catalogue has no good event here"
    return Envelope.wrap(payloads[topic], source="fault-test", key=person)


POISON_KINDS = ("not json", "not an envelope", "payload breaks its schema", "unknown version")


def poison(topic: str, index: int) -> tuple[str, bytes]:
    """One of four kinds of message no consumer can apply, chosen by ``index``."""
    kind = POISON_KINDS[index % len(POISON_KINDS)]
    envelope = {"id": str(uuid.uuid4()), "type": topic, "version": 1, "occurred_at": datetime.now(UTC).isoformat(),
                "source": "fault-test", "key": "poison", "correlation_id": str(uuid.uuid4()),
                "payload": {"fault": "poison"}}
    if kind == "not json":
        return kind, b"\x00\xff not json at all {"
    if kind == "not an envelope":
        return kind, json.dumps({"hello": "world", "topic": topic}).encode()
    if kind == "unknown version":
        envelope["version"] = 99
    return kind, json.dumps(envelope).encode()
