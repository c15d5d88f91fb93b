"""JSON logs carry the correlation id of what is being handled."""

from __future__ import annotations

import json
import logging

from fangkong_common.logs import JsonFormatter, correlation_id


def _format(message: str, **extra) -> dict:
    record = logging.LogRecord("fangkong.test", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(JsonFormatter().format(record))


def test_a_log_line_is_json_with_level_logger_message_and_extras() -> None:
    line = _format("隔离点床位不足", site_id="fc-1")
    assert line["level"] == "warning"
    assert line["logger"] == "fangkong.test"
    assert line["msg"] == "隔离点床位不足"
    assert line["site_id"] == "fc-1"
    assert line["ts"].endswith("Z")
    assert "correlation_id" not in line


def test_the_correlation_id_of_the_current_request_is_in_every_line() -> None:
    token = correlation_id.set("req-42")
    try:
        assert _format("handled")["correlation_id"] == "req-42"
    finally:
        correlation_id.reset(token)
    assert "correlation_id" not in _format("after the request")
