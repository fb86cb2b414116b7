"""STOCKALERT_LOG_FORMAT=json: each `event=NAME key=value` line as one JSON object."""

from __future__ import annotations

import json
import logging
import sys
import time

import pytest

from stockalert.adapters.kafka.admin import KafkaProbe
from stockalert.adapters.logs import JsonFormatter, fields_of


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("stockalert.x", logging.WARNING, __file__, 1, message, args, info)


def test_key_value_pairs_become_fields_and_quoted_values_are_unescaped() -> None:
    line = JsonFormatter().format(
        record(
            "event=notification_deferred notification_id=%s attempts=%d error=%r level=%s "
            "reason=%r",
            "s1:HIGH:1",
            2,
            "421 try 'later'",
            "x",
            None,
        )
    )
    parsed = json.loads(line)
    assert parsed["event"] == "notification_deferred"
    assert parsed["notification_id"] == "s1:HIGH:1"
    assert parsed["attempts"] == "2"
    assert parsed["error"] == "421 try 'later'"
    assert parsed["level"] == "WARNING"  # ours; the message's own `level` is kept aside
    assert parsed["field_level"] == "x"
    assert parsed["reason"] is None  # a bare None (%r of None) is null
    assert parsed["logger"] == "stockalert.x"
    assert parsed["time"].endswith("+00:00")


def test_a_message_that_is_not_pairs_is_kept_whole_with_its_traceback() -> None:
    parsed = json.loads(JsonFormatter().format(record("Context impl MySQLImpl.", exc=True)))
    assert parsed["message"] == "Context impl MySQLImpl."
    assert "ValueError: boom" in parsed["exception"]
    assert fields_of("event=x then words") is None
    assert fields_of("") is None
    assert fields_of("event=started role=cleaner loops=-") == {
        "event": "started",
        "role": "cleaner",
        "loops": "-",
    }


def test_the_kafka_clients_own_lines_go_through_python_logging_not_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """librdkafka prints "%3|...|FAIL|..." to stderr by itself, which would break a JSON log;
    the clients hand their lines to the `stockalert.kafka.client` logger instead."""
    caplog.set_level(logging.INFO, logger="stockalert.kafka.client")
    probe = KafkaProbe("127.0.0.1:1", timeout_s=0.2)  # nothing listens there
    deadline = time.monotonic() + 20
    while not [r for r in caplog.records if r.name == "stockalert.kafka.client"]:
        assert time.monotonic() < deadline, "no librdkafka line reached Python logging"
        with pytest.raises(Exception, match=r"transport|metadata|broker"):
            probe.check()
    (first, *_) = [r for r in caplog.records if r.name == "stockalert.kafka.client"]
    assert "127.0.0.1:1" in first.getMessage()
    assert "|FAIL|" not in capfd.readouterr().err
