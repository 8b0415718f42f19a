"""Where an event came from: the deployment's secret, session tokens, and the control salt.

Every ``/v1/suggest`` call with a ``session_id`` returns a **token**: an HMAC-SHA256, keyed
by the deployment's secret, over the session id, the request id, the variant and the time it
was issued. The widget sends it with every event of that session. An event is counted only
when its token is valid for its own session, was issued less than ``token_ttl`` before the
event arrived, is not dated (client clock) more than ``clock_skew`` before the token was
issued, and, when the event names a ``request_id``, names the one the token was issued for.
Anything else is kept apart with its reason (``rejected_events``) and never counted.

The **control-group salt** is derived from the same secret, so it is different in every
deployment and nobody outside can compute which session ids fall in the control group.
Replicas that share the secret (``DEFLECT_SECRET``) assign a session the same variant; a
session keeps the variant of the server's first answer because later calls present its
token.

The secret is ``DEFLECT_SECRET`` when set, else a random one generated once into the data
home (``secret``, readable by its owner only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deflect.core.datahome import DataHome
from deflect.core.errors import ConfigError
from deflect.experiment import CONTROL, TREATMENT

log = logging.getLogger("deflect.provenance")

MIN_SECRET_CHARS = 16
_VERSION = "1"
_VARIANT_CODES = {TREATMENT: "t", CONTROL: "c"}
_VARIANTS = {v: k for k, v in _VARIANT_CODES.items()}
_MAC_BYTES = 16  # 128 bits: forging one token takes ~2**128 tries

#: why an event was not counted (the ``reason`` column of ``rejected_events``)
REJECT_REASONS = {
    "no_token": "no token: the session never received one from /v1/suggest",
    "bad_token": "a token that is malformed, forged, or issued to another session",
    "expired_token": "a token older than DEFLECT_TOKEN_TTL when the event arrived",
    "wrong_request": "the event names a request id its token was not issued for",
    "before_token": "the event is dated before its token was issued (backdated)",
}


def load_secret(explicit: str, home: str | Path) -> bytes:
    """The deployment secret: ``explicit`` (``DEFLECT_SECRET``) when set, else the data home's
    ``secret`` file, created on first use (32 random bytes, hex, mode 0600). Several processes
    starting at once agree: the file is created exclusively and the losers read it."""
    if explicit:
        if len(explicit) < MIN_SECRET_CHARS:
            raise ConfigError(f"secret: DEFLECT_SECRET must be at least {MIN_SECRET_CHARS} characters")
        return explicit.encode()
    path = DataHome(home).secret
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"secret: cannot read {path}: {exc}") from exc
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o): run chmod 600 on it", path, mode)
    if len(text) < MIN_SECRET_CHARS:  # a writer still between create and write, or a truncated file
        raise ConfigError(f"secret: {path} is empty or too short; delete it to generate a new one")
    return text.encode()


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says."""

    request_id: str
    variant: str
    issued: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Provenance:
    """Issues and checks session tokens, and derives the control-group salt, from one secret."""

    def __init__(
        self,
        secret: bytes,
        *,
        token_ttl: timedelta = timedelta(hours=48),
        clock_skew: timedelta = timedelta(hours=1),
    ) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError("secret too short")
        self._key = hmac.new(secret, b"deflect session token v1", hashlib.sha256).digest()
        self.salt = hmac.new(secret, b"deflect control group v1", hashlib.sha256).hexdigest()
        self._client_key = hmac.new(secret, b"deflect client v1", hashlib.sha256).digest()
        self.token_ttl = token_ttl
        self.clock_skew = clock_skew

    @classmethod
    def from_settings(cls, settings) -> Provenance:
        """The provenance of a deployment, from ``settings`` (secret, TTL, clock skew)."""
        return cls(
            load_secret(settings.secret.get_secret_value(), settings.home),
            token_ttl=timedelta(hours=settings.token_ttl_hours),
            clock_skew=timedelta(minutes=settings.clock_skew_minutes),
        )

    def client_key(self, address: str | None) -> str | None:
        """A keyed hash of a caller's address (16 hex digits): the same caller gets the same key
        in this deployment, and the address cannot be read back from it."""
        if not address:
            return None
        return hmac.new(self._client_key, address.encode(), hashlib.sha256).hexdigest()[:16]

    def _mac(self, session_id: str, request_id: str, code: str, issued: int) -> str:
        msg = "\x00".join((_VERSION, session_id, request_id, code, str(issued))).encode()
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest()[:_MAC_BYTES])

    def issue(self, session_id: str, request_id: str, variant: str, issued: datetime) -> str:
        """The token of one suggest answer: ``1.<request id>.<variant>.<issued>.<mac>``."""
        code = _VARIANT_CODES[variant]
        t = int(issued.timestamp())
        return f"{_VERSION}.{request_id}.{code}.{t:x}.{self._mac(session_id, request_id, code, t)}"

    def claims(self, token: str | None, session_id: str | None) -> TokenClaims | None:
        """What ``token`` says if it is genuine and was issued to ``session_id``, else None
        (expiry is not checked here: see :meth:`check`)."""
        if not token or not session_id:
            return None
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != _VERSION or parts[2] not in _VARIANTS:
            return None
        _, request_id, code, issued_hex, mac = parts
        try:
            issued = int(issued_hex, 16)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(session_id, request_id, code, issued)):
            return None
        return TokenClaims(request_id, _VARIANTS[code], datetime.fromtimestamp(issued, UTC))

    def variant_of(self, token: str | None, session_id: str | None, now: datetime) -> str | None:
        """The variant a valid, unexpired token of ``session_id`` fixes, else None."""
        c = self.claims(token, session_id)
        if c is None or now - c.issued > self.token_ttl:
            return None
        return c.variant

    def check(
        self, token: str | None, session_id: str, request_id: str | None, ts: datetime, received_at: datetime
    ) -> str | None:
        """Why an event may not be counted (a key of :data:`REJECT_REASONS`), or None when it may."""
        if not token:
            return "no_token"
        c = self.claims(token, session_id)
        if c is None:
            return "bad_token"
        if received_at - c.issued > self.token_ttl:
            return "expired_token"
        if request_id is not None and request_id != c.request_id:
            return "wrong_request"
        if ts < c.issued - self.clock_skew:
            return "before_token"
        return None
