"""The error of a server (gRPC, the metrics endpoints) that cannot listen where configured."""

from __future__ import annotations


class BindError(RuntimeError):
    """A server could not listen on the configured address (in use, or not an address)."""
