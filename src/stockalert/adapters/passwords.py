"""Password hashing with Argon2id (argon2-cffi): salted, memory-hard, tunable."""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2Hasher:
    """PasswordHasher port over argon2-cffi's RFC 9106 low-memory profile."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher.from_parameters(
            argon2.profiles.RFC_9106_LOW_MEMORY
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
