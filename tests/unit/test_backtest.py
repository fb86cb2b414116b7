"""The replay price file and `stockalert backtest`, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stockalert.adapters.replay import ReplayFileError, read_price_file
from stockalert.entrypoints import cli

EXAMPLES = Path(__file__).parents[2] / "examples"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_price_file_is_grouped_by_timestamp_oldest_first(tmp_path: Path) -> None:
    """Each distinct timestamp is one cycle; rows may come in any order."""
    path = write(
        tmp_path,
        "p.csv",
        "timestamp,ticker,price\n"
        "2026-01-05T14:33:00Z,aapl,2\n"
        "2026-01-05T14:30:00+00:00,AAPL,1\n"
        "2026-01-05T15:30:00+01:00,MSFT,3\n",
    )
    groups = read_price_file(path)
    assert [
        (at.isoformat(), [(q.ticker.value, q.price) for q in quotes]) for at, quotes in groups
    ] == [
        ("2026-01-05T14:30:00+00:00", [("AAPL", 1.0), ("MSFT", 3.0)]),
        ("2026-01-05T14:33:00+00:00", [("AAPL", 2.0)]),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,ticker,price\n", "p.csv:1: header must be timestamp,ticker,price"),
        ("timestamp,ticker,price\n2026-01-05T14:30:00,AAPL,1\n", "p.csv:2: timestamp: "),
        ("timestamp,ticker,price\nyesterday,AAPL,1\n", "p.csv:2: timestamp: 'yesterday'"),
        ("timestamp,ticker,price\n2026-01-05T14:30:00Z,AA PL,1\n", "p.csv:2: ticker: "),
        (
            "timestamp,ticker,price\n2026-01-05T14:30:00Z,AAPL,-1\n",
            "p.csv:2: price: must be greater",
        ),
        (
            "timestamp,ticker,price\n2026-01-05T14:30:00Z,AAPL,nan\n",
            "p.csv:2: price: must be a number",
        ),
        ("timestamp,ticker,price\n2026-01-05T14:30:00Z,AAPL,abc\n", "p.csv:2: price: 'abc'"),
        (
            "timestamp,ticker,price\n2026-01-05T14:30:00Z,AAPL,1\n2026-01-05T14:30:00Z,AAPL,2\n",
            "p.csv:3: ticker: AAPL appears twice",
        ),
    ],
)
def test_malformed_price_file_names_file_line_and_field(
    tmp_path: Path, content: str, message: str
) -> None:
    """Every bad row is reported with its location; nothing is half-read."""
    with pytest.raises(ReplayFileError) as excinfo:
        read_price_file(write(tmp_path, "p.csv", content))
    assert message in str(excinfo.value)


def test_backtest_of_the_examples_sends_one_email_per_crossing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shipped example: two crossings each for AAPL-high and MSFT-low, none for Bob."""
    assert (
        cli.main(["backtest", str(EXAMPLES / "prices.csv"), str(EXAMPLES / "subscriptions.csv")])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    alerts = [line.split()[:7] for line in lines if " ALERT " in line]
    ann = "to=ann@example.com"
    assert alerts == [
        [
            "2026-01-05T14:36:00+00:00",
            "ALERT",
            ann,
            "ticker=AAPL",
            "side=HIGH",
            "price=190.55",
            "threshold=190.00",
        ],
        [
            "2026-01-05T14:39:00+00:00",
            "ALERT",
            ann,
            "ticker=MSFT",
            "side=LOW",
            "price=394.90",
            "threshold=395.00",
        ],
        [
            "2026-01-05T14:48:00+00:00",
            "ALERT",
            ann,
            "ticker=AAPL",
            "side=HIGH",
            "price=191.30",
            "threshold=190.00",
        ],
        [
            "2026-01-05T14:48:00+00:00",
            "ALERT",
            ann,
            "ticker=MSFT",
            "side=LOW",
            "price=394.00",
            "threshold=395.00",
        ],
    ]
    assert lines[-1] == "backtest cycles=7 quotes=14 notifications=4"


def test_backtest_rejects_a_bad_subscription_row_with_exit_65(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subscription with high <= low is reported with file, line and field."""
    subs = write(tmp_path, "s.csv", "email,ticker,high_value,low_value\na@example.com,AAPL,1,2\n")
    assert cli.main(["backtest", str(EXAMPLES / "prices.csv"), str(subs)]) == cli.EXIT_DATA
    assert (
        "s.csv:2: high_value: high_value 1 must be greater than low_value 2"
        in capsys.readouterr().err
    )


def test_installed_command_runs_the_backtest() -> None:
    """`python -m stockalert.entrypoints.cli backtest` works as a process, exit code 0."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stockalert.entrypoints.cli",
            "backtest",
            str(EXAMPLES / "prices.csv"),
            str(EXAMPLES / "subscriptions.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "backtest cycles=7 quotes=14 notifications=4"
