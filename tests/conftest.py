"""Suite-wide: every test under tests/integration/ carries the `integration` marker (it needs
the servers of scripts/dev-services), so `pytest -m "not integration"` runs the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"
# --compose and the endpoint fixtures (scripts/dev-services by default, or compose/compose.yaml)
pytest_plugins = ("tests.integration.endpoints",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)
