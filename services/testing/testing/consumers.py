"""Consumer groups of the testing service (what it learns from other services' events)."""

from fangkong_common.app import ConsumerSpec
from fangkong_common.events import topics
from testing import service

CONSUMERS: list[ConsumerSpec] = [
    # Quarantined people due a test become pending orders (one per order, stage and day).
    ConsumerSpec(group="testing.test-due", topics=[topics.QUARANTINE_TEST_DUE], apply_batch=service.apply_test_due),
]
