"""Regional secrets (`projects/P/locations/L/secrets/S`) through the real Secret Manager client.

The stand-in serves global and regional names alike (as if it were every endpoint) and records
which names were asked for; which endpoint the real client would use is covered offline in
`tests/unit/test_secrets.py`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.checks import assert_misconfigured, assert_nothing_sent
from tests.support.constants import CANARY_PASSWORD, PROFILE_FROM, SECRET_NAME, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub
from tests.support.smtp_server import SmtpTestServer

REGION = "europe-west1"
REGIONAL_PROFILE = f"projects/{PROJECT}/locations/{REGION}/secrets/smtp-profile"
REGIONAL_TOKEN = f"projects/{PROJECT}/locations/{REGION}/secrets/webhook-token"
TOKEN = "regional-token-8812"
MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "s", "text": "t"}


@pytest.fixture
def regional_profile(
    smtp_ssl: SmtpTestServer, sender_env: SenderEnv, secret_manager: SecretManagerStub
) -> SmtpTestServer:
    """The profile stored only as a regional secret, and SMTP_SECRET naming it."""
    profile = smtp_ssl.profile(username=SMTP_USER, password=CANARY_PASSWORD, sender=PROFILE_FROM)
    secret_manager.put_secret(REGIONAL_PROFILE, json.dumps(profile))
    sender_env.set(SMTP_SECRET=REGIONAL_PROFILE)
    return smtp_ssl


def test_regional_smtp_secret_is_read_by_its_regional_name(
    http_client: Any, regional_profile: SmtpTestServer, secret_manager: SecretManagerStub
) -> None:
    resp = http_client.post("/", json=MESSAGE)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(regional_profile.wait_for_messages(1)) == 1
    assert secret_manager.names_asked() == [f"{REGIONAL_PROFILE}/versions/latest"]


def test_regional_secret_version_is_read_as_named(
    http_client: Any,
    regional_profile: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    secret_manager.add_version(REGIONAL_PROFILE, "not the profile")  # version 2 = latest
    sender_env.set(SMTP_SECRET=f"{REGIONAL_PROFILE}/versions/1")
    assert http_client.post("/", json=MESSAGE).status_code == 200
    assert secret_manager.names_asked() == [f"{REGIONAL_PROFILE}/versions/1"]


def test_regional_webhook_secret_guards_sending_and_status(
    http_client: Any,
    regional_profile: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    secret_manager.put_secret(REGIONAL_TOKEN, TOKEN + "\n")
    sender_env.set(WEBHOOK_SECRET=REGIONAL_TOKEN)

    assert http_client.post("/", json=MESSAGE).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    sent = http_client.post("/", json={**MESSAGE, "idempotency_key": "r-1"}, headers=bearer)
    assert sent.status_code == 200, sent.get_data(as_text=True)
    assert http_client.get("/messages/r-1", headers=bearer).get_json()["state"] == "sent"
    assert f"{REGIONAL_TOKEN}/versions/latest" in secret_manager.names_asked()


@pytest.mark.parametrize(
    "name",
    [
        f"projects/{PROJECT}/locations/us-east4/secrets/smtp-profile",  # another region's
        SECRET_NAME.replace("/secrets/", f"/locations/{REGION}/secrets/") + "-missing",
    ],
    ids=["same secret id, other region", "no such regional secret"],
)
def test_regional_secret_that_does_not_exist_is_misconfigured(
    http_client: Any, regional_profile: SmtpTestServer, sender_env: SenderEnv, name: str
) -> None:
    sender_env.set(SMTP_SECRET=name)
    resp = http_client.post("/", json=MESSAGE)
    assert_misconfigured(resp)
    assert name in resp.get_json()["detail"]
    assert_nothing_sent(regional_profile)


def test_malformed_regional_name_is_misconfigured_before_any_call(
    http_client: Any,
    regional_profile: SmtpTestServer,
    sender_env: SenderEnv,
    secret_manager: SecretManagerStub,
) -> None:
    sender_env.set(SMTP_SECRET=f"projects/{PROJECT}/locations/{REGION}/smtp-profile")
    assert_misconfigured(http_client.post("/", json=MESSAGE))
    assert secret_manager.call_count() == 0
