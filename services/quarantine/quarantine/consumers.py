"""Consumer groups of the quarantine service (what it learns from other services' events)."""

from fangkong_common.app import ConsumerSpec

CONSUMERS: list[ConsumerSpec] = []
