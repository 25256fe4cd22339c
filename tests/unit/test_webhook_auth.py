"""Webhook credentials: bearer token, X-Webhook-Token, or an HMAC of the body; rotation."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sender.errors import WebhookForbiddenError, WebhookUnauthorizedError
from sender.webhook_auth import TokenStore, verify
from tests.support.fakes import FakeClock, FakeSecretSource

BODY = b'{"to": "ops@example.com"}'


def signature(token: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(token, body, hashlib.sha256).hexdigest()


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
        {"X-Signature-256": signature(b"s3cret-token", BODY)},
        {"X-Hub-Signature-256": signature(b"s3cret-token", BODY)},
        # IAM's identity token in Authorization beside our own header: ours decides.
        {"Authorization": "Bearer eyJhbGciOi.identity", "X-Webhook-Token": "s3cret-token"},
    ],
)
def test_accepted(store: TokenStore, headers: dict[str, str]) -> None:
    verify(store, headers, BODY)


def test_missing_credential_is_401(store: TokenStore) -> None:
    with pytest.raises(WebhookUnauthorizedError):
        verify(store, {}, BODY)
    with pytest.raises(WebhookUnauthorizedError):
        verify(store, {"Authorization": "Basic abc"}, BODY)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"X-Webhook-Token": "s3cret-token-but-longer"},
        {"X-Signature-256": signature(b"s3cret-token", BODY + b" ")},  # body tampered with
    ],
)
def test_wrong_credential_is_403(store: TokenStore, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookForbiddenError):
        verify(store, headers, BODY)


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
