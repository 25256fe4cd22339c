"""The SMTP profile read through the real Secret Manager client from the local gRPC stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.checks import (
    assert_misconfigured,
    assert_nothing_sent,
    assert_retryable,
    log_records,
    records_at,
)
from tests.support.constants import CANARY_PASSWORD, PROFILE_FROM, SECRET_ID, SECRET_NAME, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub
from tests.support.smtp_server import SmtpTestServer

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "s", "text": "t"}
ROTATED_PASSWORD = "rotated-Pässwort-2-🔐"


def _send(client: Any) -> Any:
    return client.post("/", json=MESSAGE)


def _send_ok(client: Any) -> None:
    resp = _send(client)
    assert resp.status_code == 200, resp.get_data(as_text=True)


def _send_expecting_misconfigured(client: Any, server: SmtpTestServer) -> None:
    """The send is refused as misconfigured and *server* saw no mail transaction."""
    assert_misconfigured(_send(client))
    assert_nothing_sent(server)


def test_profile_is_read_once_and_cached_on_a_warm_instance(
    http_client: Any, server: SmtpTestServer, secret_manager: SecretManagerStub
) -> None:
    for _ in range(3):
        _send_ok(http_client)

    assert len(server.wait_for_messages(3)) == 3
    assert secret_manager.call_count("AccessSecretVersion") == 1


def test_cache_ttl_zero_reads_every_time(
    http_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.set(SMTP_PROFILE_CACHE_TTL_S="0")
    for _ in range(2):
        _send_ok(http_client)

    assert secret_manager.call_count("AccessSecretVersion") == 2


def test_rotated_password_works_on_a_warm_instance_with_exactly_one_reread(
    http_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    # One session per message: a pooled session logged in before the rotation would carry on
    # (tests/test_session_pool.py covers rotation with a pool).
    sender_env.set(SMTP_POOL_SIZE="0")
    _send_ok(http_client)
    assert secret_manager.call_count() == 1

    # The operator rotates: the provider gets a new password, the secret a new version.
    server.set_password(SMTP_USER, ROTATED_PASSWORD)
    sender_env.use(server, password=ROTATED_PASSWORD)
    _send_ok(http_client)

    assert len(server.wait_for_messages(2)) == 2
    assert secret_manager.call_count() == 2
    assert [a.success for a in server.auth_attempts] == [True, False, True]
    # The new version is now cached: the next send reads nothing.
    _send_ok(http_client)
    assert secret_manager.call_count() == 2


def test_auth_failure_with_unchanged_secret_rereads_once_and_does_not_log_in_again(
    http_client: Any,
    server: SmtpTestServer,
    secret_manager: SecretManagerStub,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server.set_password(SMTP_USER, ROTATED_PASSWORD)  # provider rotated, secret did not
    _send_expecting_misconfigured(http_client, server)

    assert secret_manager.call_count() == 2
    assert [a.success for a in server.auth_attempts] == [False]
    assert records_at(log_records(capfd.readouterr().out), "ERROR")


@pytest.mark.parametrize(
    "smtp_secret",
    [f"projects/{PROJECT}/secrets/never-created", f"{SECRET_NAME}/versions/7", None],
    ids=["secret does not exist", "version does not exist", "no SMTP_SECRET configured"],
)
def test_secret_that_cannot_be_found_is_misconfigured(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv, smtp_secret: str | None
) -> None:
    sender_env.set(SMTP_SECRET=smtp_secret)

    _send_expecting_misconfigured(http_client, server)


def test_permission_denied_is_misconfigured(
    http_client: Any, server: SmtpTestServer, secret_manager: SecretManagerStub
) -> None:
    secret_manager.fail_next(None, grpc.StatusCode.PERMISSION_DENIED)

    _send_expecting_misconfigured(http_client, server)


def test_secret_manager_unavailable_is_503(
    http_client: Any, server: SmtpTestServer, secret_manager: SecretManagerStub
) -> None:
    secret_manager.fail_next(None, grpc.StatusCode.UNAVAILABLE)

    assert_retryable(_send(http_client))
    assert_nothing_sent(server)
    # It retried (a blip must not fail a send) and then gave up: the call returned.
    assert secret_manager.call_count() >= 2


def test_one_unavailable_blip_is_retried(
    http_client: Any, server: SmtpTestServer, secret_manager: SecretManagerStub
) -> None:
    secret_manager.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    _send_ok(http_client)

    assert secret_manager.call_count() == 2


def test_corrupt_checksum_is_never_used(
    http_client: Any, server: SmtpTestServer, secret_manager: SecretManagerStub
) -> None:
    secret_manager.corrupt_checksum = True
    resp = _send(http_client)

    # Corrupted in transit is worth another read later, never a profile to use now.
    assert_retryable(resp)
    assert_nothing_sent(server)
    assert server.auth_attempts == []


def test_bare_secret_name_uses_google_cloud_project(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_SECRET=SECRET_ID)
    _send_ok(http_client)

    assert len(server.wait_for_messages(1)) == 1


def test_named_version_is_used_instead_of_latest(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    # The `server` fixture stored version 1, which works; version 2 (latest) would fail.
    sender_env.use(server, password="wrong-on-purpose")
    sender_env.set(SMTP_SECRET=f"{SECRET_NAME}/versions/1")
    _send_ok(http_client)

    assert [a.success for a in server.auth_attempts] == [True]


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
    _send_ok(http_client)

    assert [a.success for a in smtp_starttls.auth_attempts] == [True]


@pytest.mark.parametrize(
    "payload",
    [
        '{"host": "127.0.0.1", "port": 465, "security": "rot13", "username": "u", "password": "p"}',
        '{"host": "127.0.0.1", "port": "not-a-port", "security": "ssl"}',
        '{"port": 465, "security": "ssl"}',
        # JSON numbers that int() turned into OverflowError (a 500 internal) or port 1.
        '{"host": "127.0.0.1", "port": 1e400, "security": "ssl"}',
        '{"host": "127.0.0.1", "port": true, "security": "ssl"}',
        '{"host": "127.0.0.1", "port": 1.5, "security": "ssl"}',
    ],
    ids=["unknown security", "bad port", "no host", "port 1e400", "port true", "port 1.5"],
)
def test_malformed_profile_is_misconfigured(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv, payload: str
) -> None:
    sender_env.store(payload)

    _send_expecting_misconfigured(http_client, smtp_ssl)


def test_profile_without_from_and_username_not_an_address_is_misconfigured(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    smtp_ssl.set_password("relay-user", CANARY_PASSWORD)
    sender_env.use(smtp_ssl, username="relay-user", sender=None)

    _send_expecting_misconfigured(http_client, smtp_ssl)


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
    _send_ok(http_client)

    assert len(smtp_ssl.wait_for_messages(1)) == 1
    assert secret_manager.call_count() == 0
