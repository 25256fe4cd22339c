"""Webhook credentials for callers outside IAM (`WEBHOOK_SECRET`).

When the HTTP function is deployed public (`--allow-unauthenticated`) so that Alertmanager,
Grafana or a CI system can call it, `WEBHOOK_SECRET` names a Secret Manager secret holding a
shared token. A request must then carry one of:
- the token itself: `Authorization: Bearer TOKEN`, `X-Webhook-Token: TOKEN` (coexists with IAM,
  whose identity token occupies `Authorization`), or HTTP Basic with the token as the password
  (any user name; Cloud Monitoring's webhook channel can send nothing else);
- an HMAC-SHA256 keyed with the token: `X-Signature-256: sha256=HEX` of the exact body (GitHub's
  scheme), or Grafana's `X-Grafana-Alerting-Signature: HEX` of the body, or of `TIMESTAMP:body`
  when the contact point also sends `X-Grafana-Alerting-Timestamp: TIMESTAMP` (Unix seconds); a
  timestamp more than `MAX_TIMESTAMP_SKEW_S` from now is refused (a replayed request).

No credential -> 401; a wrong one (or a stale timestamp) -> 403. Comparisons are constant-time.
A rotated token is picked up by re-reading the secret after a mismatch, at most once per
`_REREAD_INTERVAL_S`, so a flood of bad requests cannot turn into a flood of Secret Manager calls.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sender.config import Settings
from sender.errors import (
    ConfigurationError,
    WebhookForbiddenError,
    WebhookStaleTimestampError,
    WebhookUnauthorizedError,
)
from sender.secrets import ClientFactory, FileSecretSource, SecretSource, secret_manager_source

SIGNATURE_HEADERS = ("X-Signature-256", "X-Hub-Signature-256")
TOKEN_HEADER = "X-Webhook-Token"  # noqa: S105 - a header name, not a secret
GRAFANA_SIGNATURE_HEADER = "X-Grafana-Alerting-Signature"
GRAFANA_TIMESTAMP_HEADER = "X-Grafana-Alerting-Timestamp"
MAX_TIMESTAMP_SKEW_S = 300
_CACHE_TTL_S = 300.0
_REREAD_INTERVAL_S = 30.0


@dataclass(slots=True)
class _CachedToken:
    token: bytes
    loaded_at: float


class TokenStore:
    """The shared token, cached, re-read after a mismatch (rate-limited)."""

    def __init__(self, source: SecretSource, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: _CachedToken | None = None

    def _load(self) -> bytes:
        data = self._source.read().data
        token = data[:-1] if data.endswith(b"\n") else data
        token = token[:-1] if token.endswith(b"\r") else token
        if not token:
            raise ConfigurationError("the webhook secret is empty")
        self._cached = _CachedToken(token, self._clock())
        return token

    def current(self) -> bytes:
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() - cached.loaded_at < _CACHE_TTL_S:
                return cached.token
            return self._load()

    def refreshed(self) -> bytes | None:
        """A re-read token after a mismatch, or None when one was read too recently."""
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() - cached.loaded_at < _REREAD_INTERVAL_S:
                return None
            return self._load()


def _basic_password(value: str) -> bytes | None:
    """The password of an HTTP Basic credential (`user:password`, base64); None if malformed."""
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    _user, sep, password = decoded.partition(b":")
    return password if sep else None


def _same(presented: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(presented, expected)


def _hex_hmac(token: bytes, message: bytes) -> bytes:
    return hmac.new(token, message, hashlib.sha256).hexdigest().encode()


def _matches(token: bytes, headers: Mapping[str, str], body: bytes) -> bool | None:
    """True/False when a credential is present and right/wrong; None when there is none."""
    headers = {name.lower(): value for name, value in headers.items()}  # names are case-blind
    presented: list[bool] = []
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        presented.append(_same(value.encode(), token))
    if scheme.lower() == "basic" and value:
        password = _basic_password(value)
        presented.append(password is not None and _same(password, token))
    token_header = headers.get(TOKEN_HEADER.lower())
    if token_header:
        presented.append(_same(token_header.strip().encode(), token))
    for name in SIGNATURE_HEADERS:
        signature = headers.get(name.lower())
        if signature:
            expected = b"sha256=" + _hex_hmac(token, body)
            presented.append(_same(signature.strip().lower().encode(), expected))
    grafana = headers.get(GRAFANA_SIGNATURE_HEADER.lower())
    if grafana:
        timestamp = headers.get(GRAFANA_TIMESTAMP_HEADER.lower())
        signed = body if timestamp is None else timestamp.strip().encode() + b":" + body
        presented.append(_same(grafana.strip().lower().encode(), _hex_hmac(token, signed)))
    if not presented:
        return None
    return any(presented)


def _check_timestamp(headers: Mapping[str, str], now: float) -> None:
    """A Grafana signature over `TIMESTAMP:body` proves nothing about *when*: the timestamp must
    be within `MAX_TIMESTAMP_SKEW_S` of now, or the request is a replay (403)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if not lowered.get(GRAFANA_SIGNATURE_HEADER.lower()):
        return
    timestamp = lowered.get(GRAFANA_TIMESTAMP_HEADER.lower())
    if timestamp is None:
        return
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise WebhookStaleTimestampError from None
    if abs(now - sent_at) > MAX_TIMESTAMP_SKEW_S:
        raise WebhookStaleTimestampError


def verify(
    store: TokenStore,
    headers: Mapping[str, str],
    body: bytes,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Raise WebhookUnauthorizedError / WebhookForbiddenError unless the request is authentic."""
    _check_timestamp(headers, clock())
    verdict = _matches(store.current(), headers, body)
    if verdict is None:
        raise WebhookUnauthorizedError
    if verdict:
        return
    fresh = store.refreshed()
    if fresh is None or not _matches(fresh, headers, body):
        raise WebhookForbiddenError


def token_source(settings: Settings, client: ClientFactory) -> SecretSource | None:
    """Where the webhook token comes from, or None when no webhook credential is configured."""
    if not settings.webhook_secret:
        return None
    if settings.webhook_secret.startswith("file:"):
        # Local runs: WEBHOOK_SECRET=file:/path/to/token
        return FileSecretSource(
            settings.webhook_secret.removeprefix("file:"), variable="WEBHOOK_SECRET"
        )
    return secret_manager_source(settings.webhook_secret, settings, "WEBHOOK_SECRET", client)
