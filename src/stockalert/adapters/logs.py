"""Log lines as JSON (STOCKALERT_LOG_FORMAT=json), for log pipelines that index fields.

Every line this project logs is `event=NAME key=value ...` (values from %r are Python string
literals); a JSON line carries those pairs as fields beside time, level and logger, their
values as text (a field keeps one type from line to line), a bare None as null. A
message that is not such pairs (a library's) goes in `message` whole."""

from __future__ import annotations

import ast
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

_PAIR = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)""")
_BASE = ("time", "level", "logger")


def fields_of(message: str) -> dict[str, Any] | None:
    """The key=value pairs of a whole message, or None when it is not made of them."""
    found: dict[str, Any] = {}
    position = 0
    for match in _PAIR.finditer(message):
        if message[position : match.start()].strip():
            return None  # words between pairs: not ours
        key, raw = match.group(1), match.group(2)
        value: Any = None if raw == "None" else raw  # %r of None: null in JSON
        if raw[:1] in ("'", '"'):
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw
        found.setdefault(key, value)
        position = match.end()
    if not found or message[position:].strip():
        return None
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        fields = fields_of(message)
        if fields is None:
            line["message"] = message
        else:
            for key, value in fields.items():
                line[key if key not in _BASE else f"field_{key}"] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)
