"""Bearer tokens as signed JWTs (PyJWT, HS256), verified against the injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

from stockalert.domain.errors import Unauthenticated
from stockalert.domain.ports import TokenClaims

MIN_SECRET_BYTES = 32
ISSUER = "stockalert"


class JwtTokens:
    """TokenIssuer port: `sub` = user id, `iat` = login time, `exp` = expiry."""

    def __init__(self, secret: str, ttl: timedelta = timedelta(hours=12)) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._ttl = ttl

    def issue(self, user_id: str, now: datetime) -> tuple[str, datetime]:
        issued = now.replace(microsecond=0)
        expires = issued + self._ttl
        claims = {"sub": user_id, "iss": ISSUER, "iat": issued, "exp": expires}
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires

    def verify(self, token: str, now: datetime) -> TokenClaims:
        try:
            # Expiry is checked below against the injected clock, not the system clock.
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={
                    "require": ["sub", "iat", "exp", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            expires = _instant(claims["exp"])
            issued = _instant(claims["iat"])
        except (jwt.PyJWTError, ValueError, OverflowError, OSError, TypeError):
            raise Unauthenticated("invalid token") from None
        if now >= expires:
            raise Unauthenticated("token expired; log in again")
        return TokenClaims(str(claims["sub"]), issued)


def _instant(value: object) -> datetime:
    """A NumericDate claim as an aware datetime; anything else is a malformed token."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("NumericDate claim is not a number")
    return datetime.fromtimestamp(int(value), UTC)
