"""The API against abuse, through a real gRPC server on 127.0.0.1 over the in-memory
adapters: undecodable frames, quotas, sessions (the issue's holes, one test or more each)."""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from stockalert.api.v1 import stockalert_pb2 as pb

SERVICES = [pb.DESCRIPTOR.services_by_name[name] for name in ("CommandService", "QueryService")]
METHODS = [(service, method) for service in SERVICES for method in service.methods]


def raw_call(channel: grpc.Channel, service: Any, method: Any) -> Any:
    """A stub that sends bytes as they are (no serializer) and gets bytes back."""
    return channel.unary_unary(f"/{service.full_name}/{method.name}")


def parses(method: Any, frame: bytes) -> bool:
    try:
        getattr(pb, method.input_type.name).FromString(frame)
    except DecodeError:
        return False
    return True


def test_random_byte_frames_are_invalid_argument_without_a_traceback(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 random or mutated frames over every method of both services, no token: a frame
    that is not the method's message is INVALID_ARGUMENT naming `request`, with one WARNING
    line and no traceback; one that happens to parse gets an ordinary answer (never INTERNAL
    or UNKNOWN)."""
    caplog.set_level(logging.INFO)
    rng = random.Random(15)
    valid = pb.RegisterUserRequest(email="a@example.com", password="x" * 9).SerializeToString()
    codes: Counter[str] = Counter()
    undecodable = 0
    for n in range(1000):
        service, method = METHODS[n % len(METHODS)]
        if n % 3 == 0:  # a valid frame with a few bytes flipped or cut
            frame = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = frame[: rng.randint(1, len(frame))]
        else:
            frame = bytearray(rng.randbytes(rng.randint(1, 300)))
        bad = not parses(method, bytes(frame))
        undecodable += bad
        with pytest.raises(grpc.RpcError) as excinfo:
            raw_call(channel, service, method)(bytes(frame), timeout=10)
        code = excinfo.value.code()
        codes[code.name] += 1
        if bad:
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (method.name, frame)
            assert (excinfo.value.details() or "").startswith(
                f"request: not a valid {method.input_type.name} message"
            )
        else:
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), code
    assert undecodable > 800, codes
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if "event=rpc_undecodable" in r.getMessage()]
    assert len(warnings) == undecodable
