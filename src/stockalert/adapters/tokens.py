"""Bearer tokens as signed JWTs (PyJWT, HS256), verified against the injected clock."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

import jwt

from stockalert.domain.errors import Unauthenticated
from stockalert.domain.ports import TokenClaims

MIN_SECRET_BYTES = 32
ISSUER = "stockalert"
CLOCK_SKEW = timedelta(seconds=30)  # between two API instances' clocks, at most
VERIFIED_CACHE = 4096  # tokens whose signature and claims were checked (~0.05 ms each)


class JwtTokens:
    """TokenIssuer port: `sub` = user id, `iat` = login time, `exp` = expiry, `sv` = the
    user's session version at login (absent in tokens from before: 0)."""

    def __init__(self, secret: str, ttl: timedelta = timedelta(hours=12)) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._ttl = ttl
        # token -> (claims, expiry). A token is immutable: once its signature checked out,
        # only the expiry (against the clock) needs checking again. Bounded: when full, the
        # oldest half goes (dicts keep insertion order; single operations are thread-safe).
        self._verified: dict[str, tuple[TokenClaims, datetime]] = {}

    def issue(self, user_id: str, now: datetime, session_version: int = 0) -> tuple[str, datetime]:
        issued = now.replace(microsecond=0)
        expires = issued + self._ttl
        claims = {
            "sub": user_id,
            "iss": ISSUER,
            "iat": issued,
            "exp": expires,
            "sv": session_version,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires

    def verify(self, token: str, now: datetime) -> TokenClaims:
        known = self._verified.get(token)
        if known is not None:
            claims, expires = known
            if now >= expires:
                raise Unauthenticated("token expired; log in again")
            return claims
        checked, expires = self._check(token)
        if now >= expires:
            raise Unauthenticated("token expired; log in again")
        if checked.issued_at > now + CLOCK_SKEW:
            # Only a server signs tokens: a future login time is a clock far off or a forged
            # token, and would pass for a fresh login (DeleteUser needs one).
            raise Unauthenticated("invalid token: issued in the future")
        if len(self._verified) >= VERIFIED_CACHE:
            for old in list(self._verified)[: VERIFIED_CACHE // 2]:
                self._verified.pop(old, None)
        self._verified[token] = (checked, expires)
        return checked

    def _check(self, token: str) -> tuple[TokenClaims, datetime]:
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
            version = claims.get("sv", 0)
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise TypeError("sv is not a session version")
        except (jwt.PyJWTError, ValueError, OverflowError, OSError, TypeError):
            raise Unauthenticated("invalid token") from None
        return TokenClaims(str(claims["sub"]), issued, version), expires


class KeyedDigest:
    """HMAC-SHA256 under a key derived from the token secret (a key of its own: the secret
    itself only signs tokens). Request fingerprints carry secrets through it."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(
            secret.encode(), b"stockalert request fingerprint v1", "sha256"
        ).digest()

    def __call__(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), "sha256").hexdigest()


def _instant(value: object) -> datetime:
    """A NumericDate claim as an aware datetime; anything else is a malformed token."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("NumericDate claim is not a number")
    return datetime.fromtimestamp(int(value), UTC)
