"""Prometheus metrics shared by every service (labelled by service, so several
services in one process, as in the embedded mode, share one registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "fangkong_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "fangkong_http_request_seconds", "HTTP request latency", ["service", "method", "route"]
)
BUS_PUBLISHED = Counter("fangkong_bus_published_total", "Events published to the bus", ["topic"])
BUS_CONSUMED = Counter(
    "fangkong_bus_consumed_total", "Events handed to a consumer group and committed", ["group", "topic"]
)
BUS_DEAD_LETTERS = Counter(
    "fangkong_bus_dead_letters_total", "Messages sent to a dead-letter topic", ["group", "topic"]
)
BUS_HANDLER_RETRIES = Counter(
    "fangkong_bus_handler_retries_total", "Handler calls retried after an error", ["group", "kind"]
)
OUTBOX_PUBLISHED = Counter("fangkong_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PENDING = Gauge("fangkong_outbox_pending", "Outbox rows waiting to be published", ["service"])
OUTBOX_PUBLISH_ERRORS = Counter(
    "fangkong_outbox_publish_errors_total", "Failed relay publish attempts", ["service"]
)
