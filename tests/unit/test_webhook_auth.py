"""Webhook credentials: bearer, X-Webhook-Token, Basic, an HMAC of the body (GitHub-style or
Grafana's, with its replay window); rotation."""

from __future__ import annotations

import pytest

from sender.errors import (
    WebhookForbiddenError,
    WebhookStaleTimestampError,
    WebhookUnauthorizedError,
)
from sender.webhook_auth import MAX_TIMESTAMP_SKEW_S, TokenStore, verify
from tests.support.fakes import FakeClock, FakeSecretSource
from tests.support.webhook_credentials import (
    GRAFANA_SIGNATURE,
    GRAFANA_TIMESTAMP,
    basic_auth_header,
    grafana_signature_headers,
    hmac_sha256_signature,
)

BODY = b'{"to": "ops@example.com"}'
KEY = b"s3cret-token"  # the webhook token, as the HMAC key
NOW = 1_800_000_000


@pytest.fixture
def source() -> FakeSecretSource:
    return FakeSecretSource(b"s3cret-token\n")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(source: FakeSecretSource, clock: FakeClock) -> TokenStore:
    return TokenStore(source, clock)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer s3cret-token"},
        {"X-Webhook-Token": "s3cret-token"},
        {"X-Signature-256": hmac_sha256_signature(KEY, BODY)},
        {"X-Hub-Signature-256": hmac_sha256_signature(KEY, BODY)},
        # IAM's identity token in Authorization beside our own header: ours decides.
        {"Authorization": "Bearer eyJhbGciOi.identity", "X-Webhook-Token": "s3cret-token"},
        # Any user name; the token is the password.
        basic_auth_header("s3cret-token", user="cloud-monitoring"),
        basic_auth_header("s3cret-token", user=""),
        grafana_signature_headers(KEY, BODY),
        grafana_signature_headers(KEY, BODY, timestamp=NOW),
        grafana_signature_headers(KEY, BODY, timestamp=NOW - MAX_TIMESTAMP_SKEW_S),  # just in time
        {
            "x-grafana-alerting-signature": grafana_signature_headers(KEY, BODY)[
                GRAFANA_SIGNATURE
            ].upper()
        },  # header names and hex digits are case-blind
    ],
)
def test_accepted(store: TokenStore, headers: dict[str, str]) -> None:
    verify(store, headers, BODY, clock=lambda: NOW)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic "}, {"Authorization": "Bearer  "}, {"X-Other": "x"}]
)
def test_missing_credential_is_401(store: TokenStore, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookUnauthorizedError):
        verify(store, headers, BODY)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"X-Webhook-Token": "s3cret-token-but-longer"},
        {"X-Signature-256": hmac_sha256_signature(KEY, BODY + b" ")},  # body tampered with
        {"Authorization": "Basic abc"},  # not base64 of user:password
        # The token as the user name is not the password.
        basic_auth_header("wrong", user="s3cret-token"),
        basic_auth_header("s3cret-token-but-longer", user="user"),
        grafana_signature_headers(b"wrong", BODY),
        grafana_signature_headers(KEY, BODY + b" "),
        # Signed over the body alone, but a timestamp header says it was signed with one.
        {
            **grafana_signature_headers(KEY, BODY),
            GRAFANA_TIMESTAMP: str(NOW),
        },
        # GitHub-style prefix on Grafana's header: Grafana sends bare hex.
        {GRAFANA_SIGNATURE: hmac_sha256_signature(KEY, BODY)},
    ],
)
def test_wrong_credential_is_403(store: TokenStore, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookForbiddenError):
        verify(store, headers, BODY, clock=lambda: NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        str(NOW - MAX_TIMESTAMP_SKEW_S - 1),  # a replay
        str(NOW + MAX_TIMESTAMP_SKEW_S + 1),  # from the future
        "yesterday",
        "",
    ],
)
def test_stale_or_unreadable_grafana_timestamp_is_403_even_when_signed(
    store: TokenStore, source: FakeSecretSource, timestamp: str
) -> None:
    headers = grafana_signature_headers(KEY, BODY, timestamp=timestamp)
    with pytest.raises(WebhookStaleTimestampError):
        verify(store, headers, BODY, clock=lambda: NOW)
    assert source.reads == 0  # refused before the secret is even needed


def test_rotated_token_is_picked_up_without_hammering_the_secret(
    store: TokenStore, source: FakeSecretSource, clock: FakeClock
) -> None:
    verify(store, {"X-Webhook-Token": "s3cret-token"}, BODY)
    source.payload = b"rotated-token\n"
    clock.advance(60)  # past the re-read interval, inside the cache TTL
    verify(store, {"X-Webhook-Token": "rotated-token"}, BODY)
    assert source.reads == 2
    for _ in range(20):  # a burst of bad requests re-reads nothing
        with pytest.raises(WebhookForbiddenError):
            verify(store, {"X-Webhook-Token": "guess"}, BODY)
    assert source.reads == 2
