"""The SMTP profile read through the real Secret Manager client from the local gRPC stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.checks import assert_nothing_sent, log_records
from tests.support.constants import CANARY_PASSWORD, PROFILE_FROM, SECRET_ID, SECRET_NAME, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.secret_manager_stub import SecretManagerStub
from tests.support.smtp_server import SmtpTestServer

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "s", "text": "t"}
ROTATED_PASSWORD = "rotated-Pässwort-2-🔐"


def _assert_misconfigured(resp: Any) -> None:
    assert resp.status_code == 500, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "misconfigured"
    assert isinstance(body.get("detail"), str)


def test_profile_is_read_once_and_cached_on_a_warm_instance(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.use(smtp_ssl)
    for _ in range(3):
        resp = http_client.post("/", json=MESSAGE)
        assert resp.status_code == 200, resp.get_data(as_text=True)

    assert len(smtp_ssl.wait_for_messages(3)) == 3
    assert secret_manager.call_count("AccessSecretVersion") == 1


def test_cache_ttl_zero_reads_every_time(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.use(smtp_ssl)
    sender_env.set(SMTP_PROFILE_CACHE_TTL_S="0")
    for _ in range(2):
        assert http_client.post("/", json=MESSAGE).status_code == 200

    assert secret_manager.call_count("AccessSecretVersion") == 2


def test_rotated_password_works_on_a_warm_instance_with_exactly_one_reread(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.use(smtp_ssl)
    assert http_client.post("/", json=MESSAGE).status_code == 200
    assert secret_manager.call_count() == 1

    # The operator rotates: the provider gets a new password, the secret a new version.
    smtp_ssl.set_password(SMTP_USER, ROTATED_PASSWORD)
    sender_env.use(smtp_ssl, password=ROTATED_PASSWORD)
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(smtp_ssl.wait_for_messages(2)) == 2
    assert secret_manager.call_count() == 2
    outcomes = [a.success for a in smtp_ssl.auth_attempts]
    assert outcomes == [True, False, True]
    # The new version is now cached: the next send reads nothing.
    assert http_client.post("/", json=MESSAGE).status_code == 200
    assert secret_manager.call_count() == 2


def test_auth_failure_with_unchanged_secret_rereads_once_and_does_not_log_in_again(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sender_env.use(smtp_ssl)
    smtp_ssl.set_password(SMTP_USER, ROTATED_PASSWORD)  # provider rotated, secret did not
    resp = http_client.post("/", json=MESSAGE)

    _assert_misconfigured(resp)
    assert secret_manager.call_count() == 2
    assert [a.success for a in smtp_ssl.auth_attempts] == [False]
    assert smtp_ssl.messages == []
    errors = [r for r in log_records(capfd.readouterr().out) if r["severity"] == "ERROR"]
    assert errors


def test_missing_secret_is_misconfigured(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    # No profile stored: the secret does not exist.
    resp = http_client.post("/", json=MESSAGE)

    _assert_misconfigured(resp)
    assert_nothing_sent(smtp_ssl)


def test_missing_version_is_misconfigured(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_ssl)
    sender_env.set(SMTP_SECRET=f"{SECRET_NAME}/versions/7")
    resp = http_client.post("/", json=MESSAGE)

    _assert_misconfigured(resp)
    assert_nothing_sent(smtp_ssl)


def test_permission_denied_is_misconfigured(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.use(smtp_ssl)
    secret_manager.fail_next(None, grpc.StatusCode.PERMISSION_DENIED)
    resp = http_client.post("/", json=MESSAGE)

    _assert_misconfigured(resp)
    assert_nothing_sent(smtp_ssl)


def test_secret_manager_unavailable_is_503(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.use(smtp_ssl)
    secret_manager.fail_next(None, grpc.StatusCode.UNAVAILABLE)
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code == 503, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "unavailable"
    assert body["retryable"] is True
    assert resp.headers.get("Retry-After")
    assert_nothing_sent(smtp_ssl)
    # It retried (a blip must not fail a send) and then gave up: the call returned.
    assert secret_manager.call_count() >= 2


def test_one_unavailable_blip_is_retried(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.use(smtp_ssl)
    secret_manager.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert secret_manager.call_count() == 2


def test_corrupt_checksum_is_never_used(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.use(smtp_ssl)
    secret_manager.corrupt_checksum = True
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code in {500, 503}, resp.get_data(as_text=True)
    assert_nothing_sent(smtp_ssl)
    assert smtp_ssl.auth_attempts == []


def test_bare_secret_name_uses_google_cloud_project(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_ssl)
    sender_env.set(SMTP_SECRET=SECRET_ID)
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(smtp_ssl.wait_for_messages(1)) == 1


def test_named_version_is_used_instead_of_latest(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_ssl)  # version 1: works
    sender_env.use(smtp_ssl, password="wrong-on-purpose")  # version 2 (latest): would fail
    sender_env.set(SMTP_SECRET=f"{SECRET_NAME}/versions/1")
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert [a.success for a in smtp_ssl.auth_attempts] == [True]


def test_bare_password_secret_with_settings_from_the_environment(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.store(CANARY_PASSWORD + "\n")  # as `echo ... | gcloud secrets create` would
    sender_env.set(
        SMTP_HOST=smtp_starttls.host,
        SMTP_PORT=str(smtp_starttls.port),
        SMTP_USERNAME=SMTP_USER,
        SMTP_SECURITY="starttls",
        SMTP_FROM=PROFILE_FROM,
    )
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert [a.success for a in smtp_starttls.auth_attempts] == [True]


@pytest.mark.parametrize(
    "payload",
    [
        '{"host": "127.0.0.1", "port": 465, "security": "rot13", "username": "u", "password": "p"}',
        '{"host": "127.0.0.1", "port": "not-a-port", "security": "ssl"}',
        '{"port": 465, "security": "ssl"}',
    ],
    ids=["unknown security", "bad port", "no host"],
)
def test_malformed_profile_is_misconfigured(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv, payload: str
) -> None:
    sender_env.store(payload)
    resp = http_client.post("/", json=MESSAGE)

    _assert_misconfigured(resp)
    assert_nothing_sent(smtp_ssl)


def test_profile_without_from_and_username_not_an_address_is_misconfigured(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    smtp_ssl.set_password("relay-user", CANARY_PASSWORD)
    sender_env.use(smtp_ssl, username="relay-user", sender=None)
    resp = http_client.post("/", json=MESSAGE)

    _assert_misconfigured(resp)
    assert smtp_ssl.messages == []


def test_local_profile_file_skips_secret_manager(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
    tmp_path: Path,
) -> None:
    profile_file = tmp_path / "profile.json"
    profile_file.write_text(
        json.dumps(smtp_ssl.profile(username=SMTP_USER, password=CANARY_PASSWORD)), "utf-8"
    )
    sender_env.set(SMTP_SECRET=None, SMTP_SECRET_FILE=str(profile_file))
    resp = http_client.post("/", json=MESSAGE)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(smtp_ssl.wait_for_messages(1)) == 1
    assert secret_manager.call_count() == 0


def test_no_secret_configured_is_misconfigured(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_SECRET=None)
    resp = http_client.post("/", json=MESSAGE)

    _assert_misconfigured(resp)
