"""Stored command replies <-> JSON, for the request ledger."""

from __future__ import annotations

from typing import Any

import attrs

from stockalert.domain.model import SideStatus, TickerStatus
from stockalert.domain.views import Done, SubscriptionView, UserRegistered

_RESULTS = (Done, SubscriptionView, UserRegistered)
_TYPES: dict[str, type[Any]] = {t.__name__: t for t in _RESULTS}


def encode_result(result: object) -> dict[str, Any] | None:
    """A command result as JSON-ready data tagged with its type."""
    if result is None:
        return None
    name = type(result).__name__
    if name not in _TYPES or not isinstance(result, _RESULTS):
        raise TypeError(f"cannot store a {name} reply in the request ledger")
    return {"type": name, "value": attrs.asdict(result)}


def decode_result(data: dict[str, Any] | None) -> object:
    """The command result stored by `encode_result`."""
    if data is None:
        return None
    kind = _TYPES[data["type"]]
    value = dict(data["value"])
    if kind is SubscriptionView:
        for side in ("high_status", "low_status"):
            value[side] = None if value[side] is None else SideStatus(value[side])
        value["ticker_status"] = TickerStatus(value["ticker_status"])
    return kind(**value)
