"""The composition root, the CLI skeleton and the layering rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stockalert.adapters.memory import MemoryMailer
from stockalert.containers import ConfigError, Container, from_environ
from stockalert.domain.messagebus import MessageBus
from stockalert.entrypoints import cli

DOMAIN = Path(__file__).parents[2] / "src" / "stockalert" / "domain"
ALLOWED_THIRD_PARTY = {"attrs", "sortedcontainers"}


def test_every_container_has_all_its_dependencies() -> None:
    """check_dependencies() finds no undefined provider or configuration option."""
    container = from_environ({})
    container.check_dependencies()
    assert isinstance(container.bus(), MessageBus)


def test_container_providers_can_be_overridden_with_fakes() -> None:
    """Tests swap one adapter without touching the wiring."""
    container = Container()
    container.config.from_dict({"db_url": "memory://"})
    fake = MemoryMailer()
    with container.mailer.override(fake):
        assert container.mailer() is fake


def test_unsupported_database_url_is_a_configuration_error_naming_the_variable() -> None:
    """A wrong STOCKALERT_DB_URL stops start-up with a message that names it."""
    with pytest.raises(ConfigError, match="STOCKALERT_DB_URL"):
        from_environ({"STOCKALERT_DB_URL": "oracle://nowhere"})


def test_cli_check_config_exits_0_on_a_valid_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stockalert check-config` builds everything and says so."""
    monkeypatch.delenv("STOCKALERT_DB_URL", raising=False)
    assert cli.main(["check-config"]) == cli.EXIT_OK
    assert "configuration ok" in capsys.readouterr().out


def test_cli_check_config_exits_78_on_a_bad_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration error is reported on stderr with EX_CONFIG."""
    monkeypatch.setenv("STOCKALERT_DB_URL", "oracle://nowhere")
    assert cli.main(["check-config"]) == cli.EXIT_CONFIG
    assert "STOCKALERT_DB_URL" in capsys.readouterr().err


def test_cli_without_a_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Bare `stockalert` is a usage error."""
    assert cli.main([]) == cli.EXIT_USAGE
    assert "usage: stockalert" in capsys.readouterr().out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(DOMAIN.rglob("*.py")), ids=lambda p: p.name)
def test_domain_imports_only_the_domain_and_pure_libraries(path: Path) -> None:
    """The hexagon's core never imports adapters, entrypoints, the DI library or I/O."""
    for module in _imports(path):
        top = module.split(".")[0]
        if top == "stockalert":
            assert module.startswith("stockalert.domain"), f"{path.name} imports {module}"
        else:
            is_stdlib = top in __import__("sys").stdlib_module_names
            assert is_stdlib or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {module}"
            assert top not in {"socket", "time", "random", "uuid", "smtplib", "urllib"}, module
