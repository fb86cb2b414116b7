"""Threshold crossing: the rules, the incremental engine and the naive reference."""

from stockalert.domain.alerting.engine import AlertEngine, SideChange
from stockalert.domain.alerting.reference import ReferenceAlertEngine

__all__ = ["AlertEngine", "ReferenceAlertEngine", "SideChange"]
