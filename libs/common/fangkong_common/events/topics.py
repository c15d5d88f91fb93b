"""Every topic name, in one place. A topic is named after the event type it carries."""

from __future__ import annotations

PERSON_RETURNED = "person.returned"
PERSON_RISK_FLAGGED = "person.risk_flagged"
CONTACT_IDENTIFIED = "contact.identified"
CHECKPOINT_FEVER = "checkpoint.fever"
VACCINATION_RECORDED = "vaccination.recorded"
GATHERING_FILED = "gathering.filed"

QUARANTINE_ORDERED = "quarantine.ordered"
QUARANTINE_TEST_DUE = "quarantine.test_due"
QUARANTINE_RELEASED = "quarantine.released"
QUARANTINE_ADMITTED = "quarantine.admitted"
CASE_CLASSIFIED = "case.classified"
SITE_CAPACITY_LOW = "site.capacity_low"

TEST_COLLECTED = "test.collected"
TEST_POOL_POSITIVE = "test.pool_positive"
TEST_POSITIVE = "test.positive"
TEST_NEGATIVE = "test.negative"
TESTING_CAPACITY_ALERT = "testing.capacity_alert"

ALL_TOPICS: tuple[str, ...] = (
    PERSON_RETURNED,
    PERSON_RISK_FLAGGED,
    CONTACT_IDENTIFIED,
    CHECKPOINT_FEVER,
    VACCINATION_RECORDED,
    GATHERING_FILED,
    QUARANTINE_ORDERED,
    QUARANTINE_TEST_DUE,
    QUARANTINE_RELEASED,
    QUARANTINE_ADMITTED,
    CASE_CLASSIFIED,
    SITE_CAPACITY_LOW,
    TEST_COLLECTED,
    TEST_POOL_POSITIVE,
    TEST_POSITIVE,
    TEST_NEGATIVE,
    TESTING_CAPACITY_ALERT,
)

DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """The dead-letter topic for ``topic``."""
    return topic + DLQ_SUFFIX
