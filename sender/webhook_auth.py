"""Webhook credentials for callers outside IAM (`WEBHOOK_SECRET`).

When the HTTP function is deployed public (`--allow-unauthenticated`) so that Alertmanager,
Grafana or a CI system can call it, `WEBHOOK_SECRET` names a Secret Manager secret holding a
shared token. A request must then carry either the token itself — `Authorization: Bearer TOKEN`
or `X-Webhook-Token: TOKEN` (the latter coexists with IAM, whose identity token occupies
`Authorization`) — or an HMAC of the exact body, `X-Signature-256: sha256=HEX`
(`HMAC-SHA256(token, body)`, the scheme GitHub and many webhook senders use).

No credential -> 401; a wrong one -> 403. Comparisons are constant-time. A rotated token is picked
up by re-reading the secret after a mismatch, at most once per `_REREAD_INTERVAL_S`, so a flood of
bad requests cannot turn into a flood of Secret Manager calls.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sender.config import Settings
from sender.errors import ConfigurationError, WebhookForbiddenError, WebhookUnauthorizedError
from sender.secrets import ClientFactory, FileSecretSource, SecretSource, secret_manager_source

SIGNATURE_HEADERS = ("X-Signature-256", "X-Hub-Signature-256")
TOKEN_HEADER = "X-Webhook-Token"  # noqa: S105 - a header name, not a secret
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


def _matches(token: bytes, headers: Mapping[str, str], body: bytes) -> bool | None:
    """True/False when a credential is present and right/wrong; None when there is none."""
    headers = {name.lower(): value for name, value in headers.items()}  # names are case-blind
    presented: list[bool] = []
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        presented.append(hmac.compare_digest(value.strip().encode(), token))
    token_header = headers.get(TOKEN_HEADER.lower())
    if token_header:
        presented.append(hmac.compare_digest(token_header.strip().encode(), token))
    for name in SIGNATURE_HEADERS:
        signature = headers.get(name.lower())
        if signature:
            expected = "sha256=" + hmac.new(token, body, hashlib.sha256).hexdigest()
            presented.append(
                hmac.compare_digest(signature.strip().lower().encode(), expected.encode())
            )
    if not presented:
        return None
    return any(presented)


def verify(store: TokenStore, headers: Mapping[str, str], body: bytes) -> None:
    """Raise WebhookUnauthorizedError / WebhookForbiddenError unless the request is authentic."""
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
