"""`pytest --compose` (tests/integration/endpoints.py) without a usable Docker engine stops the
run with a usage error before any test runs: it never skips its way to a green run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USAGE_ERROR = 4  # pytest.ExitCode.USAGE_ERROR
# A `docker` command whose engine does not run, as on a machine with only the client.
NO_ENGINE = """#!/bin/sh
echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2
exit 1
"""


@pytest.mark.parametrize(
    ("docker", "reason"),
    [(None, "no `docker` command on PATH"), (NO_ENGINE, "Cannot connect to the Docker daemon")],
)
def test_compose_without_a_docker_engine_is_a_usage_error(
    docker: str | None, reason: str, tmp_path: Path
) -> None:
    """Exit 4 naming what is missing, not skipped tests."""
    if docker is not None:
        (tmp_path / "docker").write_text(docker)
        (tmp_path / "docker").chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--compose", "--collect-only", "-q", "tests/unit"],
        cwd=ROOT,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == USAGE_ERROR, result.stdout + result.stderr
    assert "--compose needs a Docker engine with Compose v2" in result.stderr
    assert reason in result.stderr
