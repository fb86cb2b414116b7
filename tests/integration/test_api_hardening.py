"""The API's defences hold with several command-api instances behind one address: their
shared state (failed-login counts, session versions) lives in the database. Two
`stockalert serve command-api` processes and one query-api on MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import upgrade
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc
from tests.integration.conftest import mariadb_url, worker_database_url
from tests.processes import (
    clean_environ,
    kill,
    listening_address,
    spawn,
    stop,
    wait_until_serving,
)
from tests.unit.test_api_hardening import Servers, limited, refused_fast_beside_writes

__all__ = ["limited"]  # a fixture of the unit module, used here on SQLite

pytestmark = pytest.mark.integration

SECRET = "a-token-signing-key-of-at-least-32-bytes"
PASSWORD = "password123"


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """command-api A and B and a query-api on one fresh MariaDB database; a stub of each."""
    url = worker_database_url(mariadb_url(), "hardening", fresh=True)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    names = ("a", "b", "query")
    env = clean_environ() | {
        "STOCKALERT_DB_URL": url,
        "STOCKALERT_AUTH_SECRET": SECRET,
        "STOCKALERT_LOGIN_DELAY_S": "60",  # a wait no slow machine outlives by accident
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
    }
    any_port = "127.0.0.1:0"  # each picks a free one and logs it: no race for a port
    processes = {
        name: spawn(
            env | {"STOCKALERT_GRPC_ADDR": any_port, "STOCKALERT_QUERY_ADDR": any_port},
            tmp_path,
            tmp_path / f"{name}.log",
            "serve",
            "query-api" if name == "query" else "command-api",
        )
        for name in names
    }
    channels: dict[str, grpc.Channel] = {}
    try:
        for name in names:
            address = listening_address(tmp_path / f"{name}.log", processes[name], timeout=60)
            wait_until_serving(address, processes[name], timeout=60)
            channels[name] = grpc.insecure_channel(address)
        yield {
            "a": pb_grpc.CommandServiceStub(channels["a"]),
            "b": pb_grpc.CommandServiceStub(channels["b"]),
            "query": pb_grpc.QueryServiceStub(channels["query"]),
            "logs": {name: tmp_path / f"{name}.log" for name in names},
        }
        for name, process in processes.items():
            assert stop(process) == 0, name
    finally:
        for channel in channels.values():
            channel.close()
        for process in processes.values():
            kill(process)


def status(call: Any, request: Any, **options: Any) -> str:
    try:
        call(request, **options)
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    return "OK"


def test_failed_logins_at_one_instance_throttle_the_account_at_the_other(
    instances: dict[str, Any],
) -> None:
    """Six wrong passwords, alternating between the instances, make the account wait at both:
    the counts are the database's, not a process's."""
    a, b = instances["a"], instances["b"]
    a.RegisterUser(
        pb.RegisterUserRequest(request_id="r", email="ann@example.com", password=PASSWORD)
    )
    wrong = pb.LoginUserRequest(email="ann@example.com", password="not it")
    for n in range(6):
        assert status((a, b)[n % 2].LoginUser, wrong) == (
            "UNAUTHENTICATED: wrong e-mail or password"
        )
    right = pb.LoginUserRequest(email="ann@example.com", password=PASSWORD)
    for stub in (a, b):
        answer = status(stub.LoginUser, right)
        assert answer.startswith(
            "RESOURCE_EXHAUSTED: email: too many failed logins for this account from this "
            "address; retry in "
        ), answer
    failed = "".join(instances["logs"][name].read_text() for name in ("a", "b"))
    assert failed.count("event=login_failed") == 6
    assert "ann@example.com" not in failed


def test_a_logout_at_one_instance_ends_the_session_at_every_instance(
    instances: dict[str, Any],
) -> None:
    """Tokens from both instances; LogoutUser at A: both refused at B and by the query-api;
    a new login at B works at A."""
    a, b, query = instances["a"], instances["b"], instances["query"]
    a.RegisterUser(
        pb.RegisterUserRequest(request_id="r", email="bo@example.com", password=PASSWORD)
    )
    login = pb.LoginUserRequest(email="bo@example.com", password=PASSWORD)
    tokens = [stub.LoginUser(login).token for stub in (a, b)]
    auth = [[("authorization", f"Bearer {token}")] for token in tokens]
    watch = pb.SetSubscriptionRequest(request_id="w", ticker="AAPL", high_value=200.0)
    assert status(b.SetSubscription, watch, metadata=auth[0]) == "OK"

    assert status(a.LogoutUser, pb.LogoutUserRequest(), metadata=auth[1]) == "OK"

    ended = "UNAUTHENTICATED: this session has ended (logged out); log in again"
    for metadata in auth:
        assert status(b.SetSubscription, watch, metadata=metadata) == ended
        assert (
            status(query.ListSubscriptions, pb.ListSubscriptionsRequest(), metadata=metadata)
            == ended
        )
    fresh = [("authorization", f"Bearer {b.LoginUser(login).token}")]
    assert status(a.SetSubscription, watch, metadata=fresh) == "OK"


def test_a_10000_subscription_registration_is_refused_fast_beside_writes_on_sqlite(
    limited: Servers, tmp_path: Path
) -> None:
    """The probe's hole, on the embedded storage it hit: SQLite."""
    database = f"sqlite:///{tmp_path / 'stockalert.db'}"
    engine = make_engine(database)
    upgrade(engine)
    engine.dispose()
    refused_fast_beside_writes(*limited(database))
