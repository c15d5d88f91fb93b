"""The event contract: topics, envelope, versioned payloads."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from fangkong_common.events import PAYLOAD_MODELS, Envelope, EventPayload, UnknownEventError, payload_model, topics
from fangkong_common.events import schemas as s

CST = timezone(timedelta(hours=8))
AT = datetime(2022, 4, 2, 9, 30, 15, 123456, tzinfo=UTC)
KEY_A = "a" * 64
KEY_B = "b" * 64
ORDER = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _samples() -> dict[str, EventPayload]:
    """One valid payload per topic."""
    stage = s.PlannedStage(kind=s.StageKind.centralized, place=s.StagePlace.port, start_date=date(2022, 4, 1),
                           end_date=date(2022, 4, 14), test_days=[date(2022, 4, 1), date(2022, 4, 7)])
    items = [
        s.PersonReturned(person_key=KEY_A, region_code="440305", category=s.ReturneeCategory.inbound_international,
                         origin_kind="international", origin_country="US", port_of_entry="440304",
                         arrival_date=date(2022, 4, 1)),
        s.PersonRiskFlagged(person_key=KEY_A, region_code="440305", risk_area_id="ra-1",
                            risk_area_region_code="310115", level=s.RiskLevel.high, window_start=AT,
                            window_end=AT + timedelta(days=14)),
        s.ContactIdentified(person_key=KEY_B, region_code="440305", degree=1, source_person_key=KEY_A,
                            last_exposure_at=AT, setting="household"),
        s.CheckpointFever(checkpoint_id="cp-1", region_code="440305", temperature_c=37.9, observed_at=AT),
        s.VaccinationRecorded(person_key=KEY_A, region_code="440305", age_group="12-14", vaccine="CoronaVac",
                              dose_number=2, vaccinated_on=date(2022, 4, 1)),
        s.GatheringFiled(gathering_id="g-1", region_code="440305", kind="wedding", expected_attendees=80,
                         held_on=date(2022, 4, 9), status="filed"),
        s.QuarantineOrdered(order_id=ORDER, person_key=KEY_A, region_code="440305", reason="inbound_international",
                            policy_id="inbound", policy_version=1, stages=[stage]),
        s.QuarantineTestDue(order_id=ORDER, person_key=KEY_A, region_code="440305", due_date=date(2022, 4, 7),
                            stage_index=0),
        s.QuarantineReleased(order_id=ORDER, person_key=KEY_A, region_code="440305", released_at=AT),
        s.QuarantineAdmitted(person_key=KEY_A, region_code="440304", origin_region_code="440305", site_id="h-1",
                             site_kind=s.SiteKind.hospital, admitted_at=AT),
        s.CaseClassified(person_key=KEY_A, origin_region_code="440305", treating_region_code="440104",
                         classification=s.CaseClass.asymptomatic, classified_at=AT),
        s.SiteCapacityLow(site_id="fc-1", region_code="440305", site_kind=s.SiteKind.fangcang, beds_total=1000,
                          beds_free=50, threshold=0.1),
        s.TestCollected(barcode="t-1", site_id="cs-1", region_code="440305", ratio=10,
                        member_keys=[KEY_A, KEY_B], collected_at=AT),
        s.TestPoolPositive(barcode="t-1", lab_id="lab-1", region_code="440305", member_keys=[KEY_A, KEY_B],
                           resulted_at=AT),
        s.TestPositive(person_key=KEY_A, barcode="t-2", lab_id="lab-1", region_code="440305", resulted_at=AT,
                       ct_value=28.5),
        s.TestNegative(barcode="t-3", lab_id="lab-1", region_code="440305", member_keys=[KEY_B], resulted_at=AT),
        s.TestingCapacityAlert(region_code="440300", kind="backlog", backlog_tubes=120000, message="backlog"),
    ]
    return {item.event_type: item for item in items}


SAMPLES = _samples()


def _positive_payload(**changes) -> dict:
    payload = {"person_key": KEY_A, "barcode": "t-1", "lab_id": "lab-1", "region_code": "440305",
               "resulted_at": "2022-04-02T09:30:15Z"}
    payload.update(changes)
    return payload


# --- topics -----------------------------------------------------------------


def test_every_event_of_design_md_has_a_topic_and_no_topic_is_named_twice() -> None:
    design_table = {
        "person.returned", "person.risk_flagged", "contact.identified", "checkpoint.fever", "quarantine.ordered",
        "quarantine.test_due", "quarantine.released", "quarantine.admitted", "case.classified",
        "site.capacity_low", "test.collected", "test.pool_positive", "test.positive", "test.negative",
        "testing.capacity_alert",
    }
    assert design_table <= set(topics.ALL_TOPICS)
    assert len(set(topics.ALL_TOPICS)) == len(topics.ALL_TOPICS)


@pytest.mark.parametrize("topic", topics.ALL_TOPICS)
def test_every_topic_has_a_version_1_payload_model(topic: str) -> None:
    model = PAYLOAD_MODELS[(topic, 1)]
    assert model.event_type == topic
    assert model.event_version == 1
    assert payload_model(topic, 1) is model


def test_every_registered_model_belongs_to_a_known_topic() -> None:
    assert {event_type for event_type, _ in PAYLOAD_MODELS} == set(topics.ALL_TOPICS)


def test_dead_letter_topic_name() -> None:
    assert topics.dlq("test.positive") == "test.positive.dlq"
    assert topics.dlq(topics.PERSON_RETURNED) == "person.returned.dlq"


# --- envelope ---------------------------------------------------------------


@pytest.mark.parametrize("topic", topics.ALL_TOPICS)
def test_every_sample_survives_wrap_bytes_and_parse(topic: str) -> None:
    payload = SAMPLES[topic]
    envelope = Envelope.wrap(payload, source="unit-test", key=KEY_A)
    assert envelope.type == topic
    assert envelope.version == 1
    back = Envelope.from_bytes(envelope.to_bytes())
    assert back == envelope
    assert back.parsed() == payload
    assert type(back.parsed()) is type(payload)


def test_wrap_sets_the_envelope_fields() -> None:
    correlation = uuid.uuid4()
    envelope = Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A,
                             correlation_id=correlation, occurred_at=AT)
    assert envelope.source == "testing"
    assert envelope.key == KEY_A
    assert envelope.correlation_id == correlation
    assert envelope.occurred_at == AT
    assert isinstance(envelope.id, uuid.UUID)
    assert envelope.payload["person_key"] == KEY_A


def test_each_envelope_gets_its_own_id_and_correlation_id() -> None:
    first = Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A)
    second = Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A)
    assert first.id != second.id
    assert first.correlation_id != second.correlation_id


def test_wire_format_has_the_documented_fields() -> None:
    envelope = Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A, occurred_at=AT)
    wire = json.loads(envelope.to_bytes())
    assert set(wire) == {"id", "type", "version", "occurred_at", "source", "key", "correlation_id", "payload"}
    assert wire["type"] == "test.positive"
    assert wire["version"] == 1
    assert wire["id"] == str(envelope.id)
    assert wire["payload"]["resulted_at"] == "2022-04-02T09:30:15.123456Z"


def test_occurred_at_is_rfc3339_utc_even_from_a_plus_eight_datetime() -> None:
    beijing = datetime(2022, 4, 2, 17, 30, 0, tzinfo=CST)
    envelope = Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A, occurred_at=beijing)
    wire = json.loads(envelope.to_bytes())["occurred_at"]
    assert wire == "2022-04-02T09:30:00Z"
    assert datetime.fromisoformat(wire) == beijing  # the same instant
    assert envelope.occurred_at.utcoffset() == timedelta(0)
    assert Envelope.from_bytes(envelope.to_bytes()).occurred_at == beijing


def test_default_occurred_at_is_now_in_utc() -> None:
    before = datetime.now(UTC)
    envelope = Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A)
    assert before <= envelope.occurred_at <= datetime.now(UTC)
    assert json.loads(envelope.to_bytes())["occurred_at"].endswith("Z")


def test_naive_occurred_at_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A, occurred_at=datetime(2022, 4, 2))


def test_naive_occurred_at_on_the_wire_is_rejected() -> None:
    wire = json.loads(Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A).to_bytes())
    wire["occurred_at"] = "2022-04-02T09:30:00"
    with pytest.raises(ValidationError):
        Envelope.from_bytes(json.dumps(wire).encode())


@pytest.mark.parametrize("field", ["source", "key"])
def test_empty_source_or_key_is_rejected(field: str) -> None:
    kwargs = {"source": "testing", "key": KEY_A, field: ""}
    with pytest.raises(ValidationError):
        Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], **kwargs)


def test_envelope_is_immutable() -> None:
    envelope = Envelope.wrap(SAMPLES[topics.TEST_POSITIVE], source="testing", key=KEY_A)
    with pytest.raises(ValidationError):
        envelope.source = "someone-else"


def test_unknown_version_raises_unknown_event_error() -> None:
    envelope = Envelope(type=topics.TEST_POSITIVE, version=2, source="testing", key=KEY_A, payload=_positive_payload())
    with pytest.raises(UnknownEventError, match="test.positive v2"):
        envelope.parsed()


def test_unknown_type_raises_unknown_event_error() -> None:
    envelope = Envelope(type="test.maybe", source="testing", key=KEY_A, payload={})
    with pytest.raises(UnknownEventError):
        envelope.parsed()
    with pytest.raises(LookupError):
        payload_model("test.maybe", 1)


def test_parsed_validates_the_payload() -> None:
    envelope = Envelope(type=topics.TEST_POSITIVE, source="testing", key=KEY_A,
                        payload=_positive_payload(region_code="4403"))
    with pytest.raises(ValidationError):
        envelope.parsed()


# --- payload validation -------------------------------------------------------


@pytest.mark.parametrize("code", ["4403", "4403050", "44030a", "", "44 305"])
def test_region_code_must_be_six_digits(code: str) -> None:
    with pytest.raises(ValidationError, match="region_code"):
        s.TestPositive.model_validate(_positive_payload(region_code=code))


def test_region_code_rejects_full_width_digits() -> None:
    with pytest.raises(ValidationError):
        s.TestPositive.model_validate(_positive_payload(region_code="４４０３０５"))


@pytest.mark.parametrize(
    "key",
    ["a" * 63, "a" * 65, "A" * 64, "g" * 64, "", "11010519491231002X"],
    ids=["short", "long", "upper-case", "not-hex", "empty", "raw-id-number"],
)
def test_person_key_must_be_64_lower_hex(key: str) -> None:
    with pytest.raises(ValidationError, match="person_key"):
        s.TestPositive.model_validate(_positive_payload(person_key=key))


def _collected(members: list[str]) -> dict:
    return {"barcode": "t-1", "site_id": "cs-1", "region_code": "440305", "ratio": 20,
            "member_keys": members, "collected_at": "2022-04-02T09:30:00Z"}


def test_pool_of_twenty_is_accepted_and_twenty_one_rejected(make_key) -> None:
    assert len(s.TestCollected.model_validate(_collected([make_key(i) for i in range(20)])).member_keys) == 20
    with pytest.raises(ValidationError, match="member_keys"):
        s.TestCollected.model_validate(_collected([make_key(i) for i in range(21)]))


def test_empty_tube_is_rejected() -> None:
    with pytest.raises(ValidationError, match="member_keys"):
        s.TestCollected.model_validate(_collected([]))


def test_pool_positive_needs_at_least_two_members() -> None:
    payload = {"barcode": "t", "lab_id": "l", "region_code": "440305", "member_keys": [KEY_A],
               "resulted_at": "2022-04-02T09:30:00Z"}
    with pytest.raises(ValidationError):
        s.TestPoolPositive.model_validate(payload)


def test_payload_timestamps_must_be_timezone_aware() -> None:
    with pytest.raises(ValidationError, match="resulted_at"):
        s.TestPositive.model_validate(_positive_payload(resulted_at="2022-04-02T09:30:00"))


def test_contact_degree_starts_at_one_and_is_bounded() -> None:
    payload = {"person_key": KEY_B, "region_code": "440305", "source_person_key": KEY_A,
               "last_exposure_at": "2022-04-02T09:30:00Z"}
    assert s.ContactIdentified.model_validate({**payload, "degree": 2}).degree == 2
    for degree in (0, 6):
        with pytest.raises(ValidationError):
            s.ContactIdentified.model_validate({**payload, "degree": degree})


def test_unknown_payload_fields_are_ignored() -> None:
    parsed = s.TestPositive.model_validate(_positive_payload(variant="omicron", extra={"nested": True}))
    assert parsed.person_key == KEY_A
    assert not hasattr(parsed, "variant")
    assert "variant" not in parsed.model_dump()


def test_newer_producer_fields_do_not_break_an_older_consumer() -> None:
    envelope = Envelope(type=topics.TEST_POSITIVE, source="testing", key=KEY_A,
                        payload=_positive_payload(variant="omicron"))
    back = Envelope.from_bytes(envelope.to_bytes())
    assert back.payload["variant"] == "omicron"  # the envelope keeps what it carried
    parsed = back.parsed()
    assert isinstance(parsed, s.TestPositive)
    assert parsed.region_code == "440305"


def test_payloads_are_immutable() -> None:
    with pytest.raises(ValidationError):
        SAMPLES[topics.TEST_POSITIVE].region_code = "110101"
