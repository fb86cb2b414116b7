"""The `stockalert` CLI client commands against a real in-process gRPC server."""

from __future__ import annotations

import io
import itertools
import json
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from stockalert.adapters.grpc.client import ApiError, StockAlertClient
from stockalert.adapters.grpc.server import start, stop
from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc
from stockalert.domain.commands import RecordQuotes
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import MailTemporaryError
from stockalert.entrypoints import cli
from stockalert.entrypoints.cli import client_commands
from tests.processes import free_port

EMAIL = "alice@example.com"
PASSWORD = "password123"
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)

SUBCOMMANDS = [
    "run",
    "check-config",
    "backtest",
    "register",
    "login",
    "logout",
    "watch",
    "unwatch",
    "latest",
    "average",
    "subscriptions",
    "notifications",
    "delete-account",
]

Cli = Callable[..., int]


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG_CONFIG_HOME and no STOCKALERT_* variables leaking in."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for name in ("STOCKALERT_TOKEN", "STOCKALERT_GRPC_ADDR", "STOCKALERT_QUERY_ADDR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def address(container: Any) -> Iterator[str]:
    """Both services of the test container on a free local port."""
    running = start(container.bus(), "127.0.0.1:0")
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        stop(running, grace=0)


@pytest.fixture
def run(address: str, config_home: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`stockalert --addr <test server> ARGS...`; `stdin` feeds --password-stdin."""

    def invoke(*args: str, stdin: str = PASSWORD + "\n") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return cli.main(["--addr", address, *args])

    return invoke


@pytest.fixture
def registered(run: Cli, capsys: pytest.CaptureFixture[str]) -> str:
    """Alice has registered (and so is logged in); the output so far is discarded."""
    assert run("register", EMAIL, "--password-stdin") == 0
    capsys.readouterr()
    return EMAIL


def token_file(config_home: Path) -> Path:
    return config_home / "stockalert" / "token.json"


def json_out(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def subscriptions(run: Cli, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    """The caller's subscriptions as the server reports them, by ticker."""
    capsys.readouterr()
    assert run("--json", "subscriptions") == 0
    return {s["ticker"]: s for s in json_out(capsys).get("subscriptions", [])}


@pytest.fixture
def feed(bus: MessageBus) -> Callable[..., None]:
    """Record quotes of a ticker, one per price, a minute apart and after every earlier one."""
    minutes = itertools.count(1)

    def record(ticker: str, *prices: float) -> None:
        for price in prices:
            at = T0 + timedelta(minutes=next(minutes))
            bus.handle(RecordQuotes((Quote(Ticker(ticker), price, at),)))

    return record


def test_register_logs_in_so_commands_work_without_a_separate_login(
    run: Cli, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Registering stores a token readable by its owner only, and the next command uses it."""
    assert run("register", EMAIL, "--password-stdin") == 0
    assert f"registered {EMAIL}" in capsys.readouterr().out
    path = token_file(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["email"] == EMAIL
    assert run("subscriptions") == 0
    assert "no subscriptions" in capsys.readouterr().out


def test_login_writes_a_private_token_file(
    run: Cli, registered: str, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh login replaces the token file with a working, owner-only one."""
    token_file(config_home).unlink()
    assert run("login", EMAIL, "--password-stdin") == 0
    assert f"logged in as {EMAIL}" in capsys.readouterr().out
    path = token_file(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"]
    assert run("subscriptions") == 0


def test_logout_forgets_the_token_so_commands_need_a_login_again(
    run: Cli, registered: str, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After logout the token file is gone and authenticated commands exit 4."""
    assert run("logout") == 0
    assert not token_file(config_home).exists()
    assert run("subscriptions") == 4
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_stockalert_token_environment_variable_is_used_instead_of_the_file(
    run: Cli,
    registered: str,
    config_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """STOCKALERT_TOKEN authenticates without a file and wins over a stored token."""
    token = json.loads(token_file(config_home).read_text())["token"]
    token_file(config_home).unlink()
    monkeypatch.setenv("STOCKALERT_TOKEN", token)
    assert run("subscriptions") == 0

    assert run("login", EMAIL, "--password-stdin") == 0
    monkeypatch.setenv("STOCKALERT_TOKEN", "not-a-token")
    assert run("subscriptions") == 4


def test_logout_ends_the_session_everywhere_not_only_here(
    run: Cli,
    registered: str,
    config_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A copy of the token (another machine, a leaked one) is refused after `logout`; a new
    login works; logging out again without a token is fine."""
    copied = json.loads(token_file(config_home).read_text())["token"]
    assert run("logout") == 0
    assert "logged out everywhere" in capsys.readouterr().out
    assert not token_file(config_home).exists()
    monkeypatch.setenv("STOCKALERT_TOKEN", copied)
    assert run("subscriptions") == 4
    assert "this session has ended (logged out)" in capsys.readouterr().err
    monkeypatch.delenv("STOCKALERT_TOKEN")
    assert run("login", EMAIL, "--password-stdin") == 0
    assert run("subscriptions") == 0
    assert run("logout") == 0
    assert run("logout") == 0


def test_a_throttled_login_exits_75_and_says_when_to_retry(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six wrong passwords (exit 4 each), then even the right one waits: exit 75
    (EX_TEMPFAIL) with the server's message naming the wait."""
    capsys.readouterr()
    for _ in range(6):
        assert run("login", EMAIL, "--password-stdin", stdin="wrong password\n") == 4
    assert run("login", EMAIL, "--password-stdin") == 75
    assert "too many failed logins for this account from this address; retry in 1 s" in (
        capsys.readouterr().err
    )


def test_delete_account_logs_in_again_deletes_everything_and_forgets_the_token(
    run: Cli, registered: str, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The account goes away for good: no token file, no access, the password no longer works."""
    assert run("watch", "AAPL", "--high", "190") == 0
    assert run("delete-account", "--password-stdin") == 0
    assert f"deleted the account {EMAIL}" in capsys.readouterr().out
    assert not token_file(config_home).exists()
    assert run("subscriptions") == 4
    assert run("login", EMAIL, "--password-stdin") == 4


def test_delete_account_with_a_wrong_password_keeps_the_account(
    run: Cli, registered: str, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong confirmation password exits 4 and leaves account and token in place."""
    assert run("delete-account", "--password-stdin", stdin="wrong-password\n") == 4
    assert token_file(config_home).exists()
    assert run("subscriptions") == 0


def test_delete_account_refuses_to_prompt_without_a_terminal(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --password-stdin and without a terminal it is a usage error, nothing deleted."""
    assert run("delete-account") == 2
    assert "--password-stdin" in capsys.readouterr().err
    assert run("subscriptions") == 0


def test_delete_account_needs_an_email_when_only_an_environment_token_is_known(
    run: Cli, registered: str, config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With STOCKALERT_TOKEN (which names no account) and no --email, it exits 2."""
    monkeypatch.setenv("STOCKALERT_TOKEN", json.loads(token_file(config_home).read_text())["token"])
    assert run("delete-account", "--password-stdin") == 2
    assert run("delete-account", "--email", EMAIL, "--password-stdin") == 0


# ----- subscriptions ---------------------------------------------------------------------


def test_watch_prints_the_subscription_and_creates_it_on_the_server(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`watch` echoes thresholds and states; the server lists the same subscription."""
    assert run("watch", "aapl", "--high", "190", "--low", "180", "--rearm-percent", "2") == 0
    out = capsys.readouterr().out
    assert out.startswith("watching AAPL")
    assert "high=190 (ARMED)" in out
    assert "low=180 (ARMED)" in out
    assert "rearm=2%" in out
    assert "ticker=PENDING" in out
    sub = subscriptions(run, capsys)["AAPL"]
    assert (sub["high_value"], sub["low_value"], sub["rearm_percent"]) == (190.0, 180.0, 2.0)


def test_watch_again_changes_only_the_given_fields(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `watch` of a ticker updates it in place and keeps what was not given."""
    assert run("watch", "AAPL", "--high", "190", "--low", "180") == 0
    assert run("watch", "AAPL", "--high", "195", "--cooldown", "60") == 0
    subs = subscriptions(run, capsys)
    assert list(subs) == ["AAPL"]
    assert subs["AAPL"]["high_value"] == 195.0
    assert subs["AAPL"]["low_value"] == 180.0
    assert subs["AAPL"]["cooldown_s"] == 60.0


def test_watch_clear_high_removes_only_the_high_threshold(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--clear-high drops the high side (and its status) and keeps the low side."""
    assert run("watch", "AAPL", "--high", "190", "--low", "180") == 0
    capsys.readouterr()
    assert run("watch", "AAPL", "--clear-high") == 0
    assert "high=- (-) low=180 (ARMED)" in capsys.readouterr().out
    sub = subscriptions(run, capsys)["AAPL"]
    assert "high_value" not in sub
    assert "high_status" not in sub
    assert sub["low_value"] == 180.0


def test_watch_with_contradicting_options_is_invalid_input(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """High below low, a threshold with its own --clear, or NaN exit 2 and change nothing."""
    assert run("watch", "AAPL", "--high", "170", "--low", "180") == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert run("watch", "AAPL", "--high", "190", "--clear-high") == 2
    assert run("watch", "AAPL", "--high", "nan") == 2
    assert subscriptions(run, capsys) == {}


def test_unwatch_removes_the_subscription(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `unwatch` only the other tickers remain."""
    assert run("watch", "AAPL", "--high", "190") == 0
    assert run("watch", "MSFT", "--low", "395") == 0
    capsys.readouterr()
    assert run("unwatch", "aapl") == 0
    assert "no longer watching AAPL" in capsys.readouterr().out
    assert list(subscriptions(run, capsys)) == ["MSFT"]


def test_unwatch_of_a_ticker_not_watched_exits_3(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """NOT_FOUND maps to exit code 3 with the server's message on stderr."""
    assert run("unwatch", "ZZZ") == 3
    err = capsys.readouterr().err
    assert "NOT_FOUND" in err
    assert "ZZZ" in err


# ----- values and notifications ----------------------------------------------------------


def test_latest_and_average_report_the_collected_quotes(
    run: Cli, registered: str, feed: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """`latest` shows the newest quote; `average --count N` the mean of the newest N."""
    assert run("watch", "AAPL", "--high", "500") == 0
    feed("AAPL", 100.0, 110.0, 120.0, 130.0)
    capsys.readouterr()
    assert run("latest") == 0
    assert capsys.readouterr().out.startswith("AAPL 130.0000 at 2026-01-05T14:")
    assert run("average", "AAPL", "--count", "2") == 0
    assert "AAPL average of the newest 2 quotes: 125.0000" in capsys.readouterr().out
    assert run("average", "--count", "10") == 0
    assert "newest 4 quotes: 115.0000" in capsys.readouterr().out


def test_average_without_count_is_the_mean_of_the_newest_ten(
    run: Cli, registered: str, feed: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """`average` alone averages the newest 10 quotes of the only watched ticker."""
    assert run("watch", "AAPL", "--high", "500") == 0
    feed("AAPL", *[float(price) for price in range(101, 113)])  # 12 quotes: 101 .. 112
    capsys.readouterr()
    assert run("average") == 0
    assert "AAPL average of the newest 10 quotes: 107.5000" in capsys.readouterr().out


def test_latest_before_any_quote_exits_3(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A watched ticker without a collected price is NOT_FOUND."""
    assert run("watch", "AAPL", "--high", "500") == 0
    assert run("latest", "AAPL") == 3


def test_average_count_must_be_positive(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`average --count 0` is invalid input (exit 2)."""
    assert run("watch", "AAPL", "--high", "500") == 0
    assert run("average", "AAPL", "--count", "0") == 2
    assert "count" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("average", "AAPL", "--count", "3000000000"), id="average-count"),
        pytest.param(("notifications", "--limit", "3000000000"), id="notifications-limit"),
    ],
)
def test_a_number_too_large_for_the_api_is_invalid_input_not_a_crash(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """A count beyond the API's 32-bit range exits 2 with a message, like any bad count."""
    assert run("watch", "AAPL", "--high", "500") == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as excinfo:
        run(*args)
    assert excinfo.value.code == 2
    assert "out of range" in capsys.readouterr().err


def test_notifications_list_the_alert_after_a_crossing(
    run: Cli,
    registered: str,
    feed: Callable[..., None],
    mailer: MemoryMailer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One crossing gives one sent notification, shown in text and in JSON."""
    assert run("watch", "AAPL", "--high", "190") == 0
    capsys.readouterr()
    assert run("notifications") == 0
    assert "no notifications" in capsys.readouterr().out
    feed("AAPL", 185.0, 190.55, 190.7)
    assert len(mailer.sent) == 1
    assert run("notifications") == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "AAPL HIGH CROSSING price=190.55 threshold=190 SENT" in line
    assert run("--json", "notifications", "--limit", "5") == 0
    (note,) = json_out(capsys)["notifications"]
    assert note["notification_id"] == mailer.sent[0].notification_id
    assert (note["ticker"], note["side"], note["kind"]) == (
        "AAPL",
        "SIDE_HIGH",
        "NOTIFICATION_KIND_CROSSING",
    )
    assert (note["price"], note["threshold"], note["status"]) == (
        190.55,
        190.0,
        "DELIVERY_STATUS_SENT",
    )


def test_a_deferred_notification_shows_why_and_when_it_is_tried_next(
    run: Cli,
    registered: str,
    feed: Callable[..., None],
    mailer: MemoryMailer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """PENDING lines carry the attempts, the server's answer and the next attempt time."""
    assert run("watch", "AAPL", "--high", "190") == 0
    mailer.fail_next(MailTemporaryError("421 4.3.2 try later"))
    feed("AAPL", 185.0, 190.55)
    capsys.readouterr()

    assert run("notifications") == 0

    (line,) = capsys.readouterr().out.splitlines()
    assert "AAPL HIGH CROSSING price=190.55 threshold=190 PENDING attempts=1" in line
    assert "error='421 4.3.2 try later' next_attempt_at=20" in line


# ----- --json ----------------------------------------------------------------------------


def test_json_output_is_valid_json_with_proto_field_names(
    run: Cli, config_home: Path, feed: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every reply printed with --json parses and uses the .proto's snake_case names."""
    assert run("--json", "register", EMAIL, "--password-stdin") == 0
    assert set(json_out(capsys)) == {"user_id"}
    assert run("--json", "login", EMAIL, "--password-stdin") == 0
    assert set(json_out(capsys)) == {"token", "expires_at"}
    assert run("--json", "watch", "AAPL", "--high", "190") == 0
    sub = json_out(capsys)["subscription"]
    assert {"subscription_id", "ticker", "high_value", "rearm_percent"} <= set(sub)
    assert (sub["high_status"], sub["ticker_status"]) == (
        "SIDE_STATUS_ARMED",
        "TICKER_STATUS_PENDING",
    )
    feed("AAPL", 185.0, 186.0)
    assert run("--json", "latest", "AAPL") == 0
    latest = json_out(capsys)
    assert (latest["ticker"], latest["value"]) == ("AAPL", 186.0)
    assert latest["quoted_at"].startswith("2026-01-05T14:")
    assert run("--json", "average", "AAPL", "--count", "2") == 0
    assert json_out(capsys) == {"ticker": "AAPL", "average_value": 185.5, "samples": 2}
    assert run("--json", "unwatch", "AAPL") == 0
    assert json_out(capsys) == {}
    assert run("--json", "delete-account", "--password-stdin") == 0
    assert json_out(capsys) == {}


# ----- exit codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param("not-an-email", PASSWORD, id="bad-email"),
        pytest.param(EMAIL, "short", id="short-password"),
    ],
)
def test_register_with_invalid_input_exits_2(
    run: Cli, config_home: Path, capsys: pytest.CaptureFixture[str], email: str, password: str
) -> None:
    """INVALID_ARGUMENT maps to exit 2; no token is stored."""
    assert run("register", email, "--password-stdin", stdin=password + "\n") == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert not token_file(config_home).exists()


def test_register_twice_exits_5(
    run: Cli, registered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ALREADY_EXISTS maps to exit 5."""
    assert run("register", EMAIL.upper(), "--password-stdin") == 5
    assert "ALREADY_EXISTS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param(EMAIL, "wrong-password", id="wrong-password"),
        pytest.param("nobody@example.com", PASSWORD, id="unknown-user"),
    ],
)
def test_login_with_wrong_credentials_exits_4_and_keeps_no_token(
    run: Cli, registered: str, config_home: Path, email: str, password: str
) -> None:
    """UNAUTHENTICATED maps to exit 4; the stored token is not replaced."""
    before = token_file(config_home).read_text()
    assert run("login", email, "--password-stdin", stdin=password + "\n") == 4
    assert token_file(config_home).read_text() == before


@pytest.mark.parametrize(
    "args",
    [
        ("watch", "AAPL", "--high", "190"),
        ("unwatch", "AAPL"),
        ("latest",),
        ("average", "--count", "1"),
        ("subscriptions",),
        ("notifications",),
    ],
    ids=lambda args: args[0],
)
def test_commands_without_a_token_exit_4(
    run: Cli, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """Nobody logged in: every authenticated command exits 4, says so and how to log in."""
    assert run(*args) == 4
    error = capsys.readouterr().err
    assert "not logged in" in error
    assert "hint: log in with `stockalert login EMAIL`" in error
    assert "`stockalert register EMAIL`" in error


def test_an_expired_token_hints_to_log_in_again(
    run: Cli, registered: str, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token past its 12 hours is refused (exit 4) with the way out: log in again."""
    clock.advance(13 * 3600)
    assert run("subscriptions") == 4
    error = capsys.readouterr().err
    assert "UNAUTHENTICATED" in error
    assert "hint: log in again with `stockalert login EMAIL`" in error


class Terminal(io.StringIO):
    """Standard input that says it is a terminal (so the CLI prompts)."""

    def isatty(self) -> bool:
        return True


def test_register_on_a_terminal_asks_for_the_password_twice(
    address: str,
    run: Cli,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Typed at a prompt, the password is asked twice; two different ones create nothing."""
    answers = iter(["password123", "password124", "password123", "password123"])
    prompts: list[str] = []

    def getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", getpass)
    monkeypatch.setattr("sys.stdin", Terminal())

    assert cli.main(["--addr", address, "register", EMAIL]) == 2
    assert "the two passwords differ; nothing was changed" in capsys.readouterr().err
    assert run("login", EMAIL, "--password-stdin") == 4  # no such account
    monkeypatch.setattr("sys.stdin", Terminal())
    assert cli.main(["--addr", address, "register", EMAIL]) == 0
    assert prompts == ["Password: ", "Repeat the password: "] * 2
    assert run("login", EMAIL, "--password-stdin") == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["register"], id="register-without-email"),
        pytest.param(["watch"], id="watch-without-ticker"),
        pytest.param(["average", "AAPL", "--count", "many"], id="average-count-not-a-number"),
        pytest.param(["watch", "AAPL", "--high", "abc"], id="watch-high-not-a-number"),
        pytest.param(["frobnicate"], id="unknown-subcommand"),
    ],
)
def test_argparse_usage_errors_exit_2(
    config_home: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """A malformed command line stops with status 2 and a usage message."""
    with pytest.raises(SystemExit) as excinfo:
        cli.main(args)
    assert excinfo.value.code == 2
    assert "usage: stockalert" in capsys.readouterr().err


def test_no_subcommand_prints_help_and_exits_2(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bare `stockalert` shows the command list and returns 2."""
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_works_for_every_subcommand(
    config_home: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """`stockalert NAME --help` exits 0 with that subcommand's usage."""
    with pytest.raises(SystemExit) as excinfo:
        cli.main([name, "--help"])
    assert excinfo.value.code == 0
    assert f"usage: stockalert {name}" in capsys.readouterr().out


def test_unreachable_server_exits_1_with_a_message(
    config_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After its retries the CLI gives up with UNAVAILABLE on stderr and exit 1."""
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    backoffs: list[float] = []  # the real retries, without waiting them out
    monkeypatch.setattr(client_commands, "retry_sleep", backoffs.append)
    port = free_port()
    args = ["--addr", f"127.0.0.1:{port}", "--timeout", "0.5", "login", EMAIL, "--password-stdin"]
    assert cli.main(args) == 1
    error = capsys.readouterr().err
    assert "stockalert login: UNAVAILABLE" in error
    assert f"hint: no stockalert server answered at 127.0.0.1:{port}" in error
    assert "start one with `stockalert run`" in error
    assert len(backoffs) == 4  # 5 attempts, growing waits between them (x jitter 0.5..1.5)
    assert all(0.5 * 0.2 * 2**n <= wait < 1.5 * 0.2 * 2**n for n, wait in enumerate(backoffs))


# ----- retries ---------------------------------------------------------------------------


class FlakyCommands(pb_grpc.CommandServiceServicer):
    """RegisterUser fails with `code` `failures` times, then succeeds; LoginUser works."""

    def __init__(self, code: grpc.StatusCode, failures: int = 1) -> None:
        self.code = code
        self.failures = failures
        self.request_ids: list[str] = []

    def RegisterUser(  # noqa: N802 - the RPC's name
        self, request: pb.RegisterUserRequest, context: grpc.ServicerContext
    ) -> pb.RegisterUserReply:
        self.request_ids.append(request.request_id)
        if len(self.request_ids) <= self.failures:
            context.abort(self.code, "try again")
        return pb.RegisterUserReply(user_id=f"user-after-{len(self.request_ids)}-calls")

    def LoginUser(  # noqa: N802 - the RPC's name
        self, request: pb.LoginUserRequest, context: grpc.ServicerContext
    ) -> pb.LoginUserReply:
        reply = pb.LoginUserReply(token="flaky-token")
        reply.expires_at.FromDatetime(T0)
        return reply


@pytest.fixture
def flaky_server() -> Iterator[Callable[[FlakyCommands], str]]:
    """Serve a FlakyCommands servicer on a free port; returns its address."""
    servers: list[grpc.Server] = []

    def serve(servicer: FlakyCommands) -> str:
        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_CommandServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield serve
    for server in servers:
        server.stop(0).wait()


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_client_retries_a_transient_failure_with_the_same_request_id(
    flaky_server: Callable[[FlakyCommands], str], code: grpc.StatusCode
) -> None:
    """A retry resends the very same request, and the caller gets the successful reply."""
    servicer = FlakyCommands(code)
    sleeps: list[float] = []
    with StockAlertClient(flaky_server(servicer), attempts=3, sleep=sleeps.append) as client:
        reply = client.register(EMAIL, PASSWORD)
    assert reply.user_id == "user-after-2-calls"
    assert len(servicer.request_ids) == 2
    assert servicer.request_ids[0] == servicer.request_ids[1] != ""
    assert len(sleeps) == 1


def test_client_gives_up_after_its_attempts(
    flaky_server: Callable[[FlakyCommands], str],
) -> None:
    """When every attempt is UNAVAILABLE the caller gets that status after `attempts` calls."""
    servicer = FlakyCommands(grpc.StatusCode.UNAVAILABLE, failures=10)
    client = StockAlertClient(flaky_server(servicer), attempts=3, sleep=lambda _: None)
    with client, pytest.raises(ApiError) as excinfo:
        client.register(EMAIL, PASSWORD)
    assert excinfo.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(servicer.request_ids) == 3
    assert len(set(servicer.request_ids)) == 1


def test_client_does_not_retry_a_definite_answer(
    flaky_server: Callable[[FlakyCommands], str],
) -> None:
    """A non-transient status (ALREADY_EXISTS) is reported after a single call."""
    servicer = FlakyCommands(grpc.StatusCode.ALREADY_EXISTS)
    client = StockAlertClient(flaky_server(servicer), attempts=3, sleep=lambda _: None)
    with client, pytest.raises(ApiError) as excinfo:
        client.register(EMAIL, PASSWORD)
    assert excinfo.value.code is grpc.StatusCode.ALREADY_EXISTS
    assert len(servicer.request_ids) == 1


def test_cli_register_survives_one_unavailable_answer(
    flaky_server: Callable[[FlakyCommands], str],
    config_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI retries UNAVAILABLE with the same request id and then succeeds (exit 0)."""
    servicer = FlakyCommands(grpc.StatusCode.UNAVAILABLE)
    address = flaky_server(servicer)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    backoffs: list[float] = []  # the real retry, without waiting it out
    monkeypatch.setattr(client_commands, "retry_sleep", backoffs.append)
    assert cli.main(["--addr", address, "register", EMAIL, "--password-stdin"]) == 0
    assert "user-after-2-calls" in capsys.readouterr().out
    assert len(backoffs) == 1
    assert len(servicer.request_ids) == 2
    assert len(set(servicer.request_ids)) == 1
    assert json.loads(token_file(config_home).read_text())["token"] == "flaky-token"


def test_a_retried_register_creates_the_account_once(container: Any, address: str) -> None:
    """Resending a RegisterUser request (same id) returns the first reply, not ALREADY_EXISTS."""
    with StockAlertClient(address) as client:
        first = client.register(EMAIL, PASSWORD, request_id="req-1")
        again = client.register(EMAIL, PASSWORD, request_id="req-1")
        with pytest.raises(ApiError) as excinfo:
            client.register(EMAIL, PASSWORD, request_id="req-2")
    assert again.user_id == first.user_id
    assert excinfo.value.code is grpc.StatusCode.ALREADY_EXISTS


def test_delete_account_works_with_an_old_login_because_it_logs_in_again(
    run: Cli, registered: str, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server wants a login under ten minutes old; the CLI re-authenticates first."""
    clock.advance(60 * 60)
    assert run("delete-account", "--password-stdin") == 0
    assert run("login", EMAIL, "--password-stdin") == 4
