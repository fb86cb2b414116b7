"""STOCKALERT_LOG_FORMAT=json: each `event=NAME key=value` line as one JSON object."""

from __future__ import annotations

import json
import logging
import sys

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
            "event=notification_deferred notification_id=%s attempts=%d error=%r level=%s",
            "s1:HIGH:1",
            2,
            "421 try 'later'",
            "x",
        )
    )
    parsed = json.loads(line)
    assert parsed["event"] == "notification_deferred"
    assert parsed["notification_id"] == "s1:HIGH:1"
    assert parsed["attempts"] == "2"
    assert parsed["error"] == "421 try 'later'"
    assert parsed["level"] == "WARNING"  # ours; the message's own `level` is kept aside
    assert parsed["field_level"] == "x"
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
