"""Webhook credentials as the callers send them: an HMAC-SHA256 of the body (GitHub-style
``sha256=<hex>``), Grafana's signature headers (bare hex, optionally over ``timestamp:body``) and
HTTP Basic with the token as the password (Cloud Monitoring). Built here from the standard
library, independently of `sender.webhook_auth`, which the tests check against them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

GRAFANA_SIGNATURE = "X-Grafana-Alerting-Signature"
GRAFANA_TIMESTAMP = "X-Grafana-Alerting-Timestamp"


def _key(token: str | bytes) -> bytes:
    return token.encode() if isinstance(token, str) else token


def _hex_hmac(token: str | bytes, data: bytes) -> str:
    return hmac.new(_key(token), data, hashlib.sha256).hexdigest()


def hmac_sha256_signature(token: str | bytes, body: bytes) -> str:
    """The ``X-Signature-256`` / ``X-Hub-Signature-256`` value: ``sha256=`` and the hex HMAC."""
    return "sha256=" + _hex_hmac(token, body)


def grafana_signature_headers(
    token: str | bytes, body: bytes, timestamp: int | str | None = None
) -> dict[str, str]:
    """Grafana's headers: the bare hex HMAC of the body or, given a *timestamp* (sent as is,
    even when it is not a number), of ``timestamp:body`` with the timestamp header."""
    if timestamp is None:
        return {GRAFANA_SIGNATURE: _hex_hmac(token, body)}
    signed = f"{timestamp}:".encode() + body
    return {GRAFANA_SIGNATURE: _hex_hmac(token, signed), GRAFANA_TIMESTAMP: str(timestamp)}


def basic_auth_header(password: str, *, user: str = "cloud-monitoring") -> dict[str, str]:
    """``Authorization: Basic`` for *user*:*password* (any user name; the token is the password)."""
    credential = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credential}"}
