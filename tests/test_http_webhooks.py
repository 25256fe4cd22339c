"""Webhook callers: the WEBHOOK_SECRET credential in each form; Alertmanager's native payload."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.checks import log_records
from tests.support.env import SenderEnv
from tests.support.payloads import incident, load
from tests.support.pubsub import PROJECT
from tests.support.smtp_server import SmtpTestServer
from tests.support.webhook_credentials import (
    basic_auth_header,
    grafana_signature_headers,
    hmac_sha256_signature,
)

WEBHOOK_SECRET_NAME = f"projects/{PROJECT}/secrets/webhook-token"
TOKEN = "wh-token-4412-b7c1"
MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "ping", "text": "hello"}
JSON = "application/json"

ALERTMANAGER_PAYLOAD: dict[str, Any] = {
    "version": "4",
    "status": "firing",
    "receiver": "email",
    "groupLabels": {"alertname": "DiskFull"},
    "commonLabels": {"alertname": "DiskFull", "instance": "db-1"},
    "commonAnnotations": {"summary": "Disk 91% on db-1"},
    "externalURL": "http://alertmanager.internal:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": "db-1"},
            "annotations": {"summary": "Disk 91% on db-1"},
            "startsAt": "2026-11-26T17:00:00Z",
            "generatorURL": "http://prometheus.internal/graph",
        }
    ],
}


def _protect(sender_env: SenderEnv, server: SmtpTestServer) -> None:
    sender_env.use(server)
    sender_env.secret_manager.put_secret(WEBHOOK_SECRET_NAME, TOKEN + "\n")
    sender_env.set(WEBHOOK_SECRET=WEBHOOK_SECRET_NAME)


def test_no_credential_is_401_and_nothing_sent(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv, capsys: Any
) -> None:
    _protect(sender_env, smtp_starttls)
    response = http_client.post("/", json=MESSAGE)
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert smtp_starttls.messages == []
    assert TOKEN not in capsys.readouterr().out


def test_wrong_token_is_403_and_nothing_sent(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    _protect(sender_env, smtp_starttls)
    response = http_client.post("/", json=MESSAGE, headers={"X-Webhook-Token": "guess"})
    assert response.status_code == 403
    assert response.get_json() == {"error": "unauthorized"}
    assert smtp_starttls.messages == []


def test_bearer_token_sends(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    _protect(sender_env, smtp_starttls)
    response = http_client.post("/", json=MESSAGE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(smtp_starttls.wait_for_messages(1)) == 1


def test_hmac_signature_over_the_exact_body_sends(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    _protect(sender_env, smtp_starttls)
    body = json.dumps(MESSAGE).encode()
    signature = hmac_sha256_signature(TOKEN, body)
    response = http_client.post(
        "/", data=body, content_type="application/json", headers={"X-Signature-256": signature}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    tampered = http_client.post(
        "/",
        data=body.replace(b"ops@", b"evil@"),
        content_type="application/json",
        headers={"X-Signature-256": signature},
    )
    assert tampered.status_code == 403
    assert [list(m.rcpt_tos) for m in smtp_starttls.wait_for_messages(1)] == [["ops@example.com"]]


def test_alertmanager_payload_arrives_as_a_readable_email(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv, capsys: Any
) -> None:
    sender_env.use(smtp_starttls)
    response = http_client.post(
        "/alertmanager?to=ops@example.com,oncall@example.com", json=ALERTMANAGER_PAYLOAD
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["accepted"] == ["ops@example.com", "oncall@example.com"]
    [delivered] = smtp_starttls.wait_for_messages(1)
    assert delivered.message["Subject"] == "[FIRING:1] DiskFull"
    text = delivered.message.get_body(("plain",))
    assert text is not None
    assert "Disk 91% on db-1" in text.get_content()
    assert any(r.get("message") == "email sent" for r in log_records(capsys.readouterr().out))


def test_alertmanager_without_recipients_is_400(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_starttls)
    response = http_client.post("/alertmanager", json=ALERTMANAGER_PAYLOAD)
    assert response.status_code == 400
    assert response.get_json()["details"][0]["field"] == "to"
    bad = http_client.post("/alertmanager?to=ops@example.com", json={"status": "firing"})
    assert bad.status_code == 400
    assert "alerts" in {d["field"] for d in bad.get_json()["details"]}
    assert smtp_starttls.messages == []


def test_unreadable_webhook_secret_tells_the_caller_nothing_about_it(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv, capsys: Any
) -> None:
    sender_env.use(smtp_starttls)
    sender_env.set(WEBHOOK_SECRET=f"projects/{PROJECT}/secrets/never-created")
    response = http_client.post("/", json=MESSAGE)
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "misconfigured",
        "detail": "the webhook credential cannot be checked",
    }
    assert smtp_starttls.messages == []
    # The operator still learns which secret is wrong, from the log.
    assert "never-created" in capsys.readouterr().out


# --- the credential forms of alert sources ----------------------------------------------------


def test_basic_auth_with_the_token_as_password_sends(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    _protect(sender_env, smtp_starttls)
    path = "/cloud-monitoring?to=ops@example.com"
    response = http_client.post(path, json=incident("open"), headers=basic_auth_header(TOKEN))
    assert response.status_code == 200, response.get_data(as_text=True)
    wrong = http_client.post(path, json=incident("closed"), headers=basic_auth_header("not-it"))
    assert wrong.status_code == 403
    assert wrong.get_json() == {"error": "unauthorized"}
    assert len(smtp_starttls.wait_for_messages(1)) == 1


def test_401_offers_both_challenges(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    _protect(sender_env, smtp_starttls)
    response = http_client.post("/cloud-monitoring?to=ops@example.com", json=incident("open"))
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert "Bearer" in challenge
    assert "Basic" in challenge


@pytest.mark.parametrize("timestamped", [False, True])
def test_grafana_signature_sends_and_a_tampered_body_does_not(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv, timestamped: bool
) -> None:
    _protect(sender_env, smtp_starttls)
    body = json.dumps(load("grafana")).encode()
    stamp = int(time.time()) if timestamped else None
    path = "/grafana?to=ops@example.com"
    signed = grafana_signature_headers(TOKEN, body, timestamp=stamp)
    ok = http_client.post(path, data=body, content_type=JSON, headers=signed)
    assert ok.status_code == 200, ok.get_data(as_text=True)
    tampered = body.replace(b"High memory usage", b"All is fine")
    bad = http_client.post(path, data=tampered, content_type=JSON, headers=signed)
    assert bad.status_code == 403
    wrong_key = grafana_signature_headers("guess", body, timestamp=stamp)
    assert (
        http_client.post(path, data=body, content_type=JSON, headers=wrong_key).status_code == 403
    )
    assert len(smtp_starttls.wait_for_messages(1)) == 1


def test_stale_grafana_timestamp_is_403_and_logged_as_such(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv, capsys: Any
) -> None:
    _protect(sender_env, smtp_starttls)
    body = json.dumps(load("grafana")).encode()
    # Correctly signed, 5 min + 1 s old.
    replayed = grafana_signature_headers(TOKEN, body, timestamp=int(time.time()) - 301)
    response = http_client.post(
        "/grafana?to=ops@example.com", data=body, content_type=JSON, headers=replayed
    )
    assert response.status_code == 403
    assert response.get_json() == {"error": "unauthorized"}
    assert smtp_starttls.messages == []
    [refused] = [
        r for r in log_records(capsys.readouterr().out) if r["message"].startswith("webhook")
    ]
    assert refused["reason"] == "signature timestamp too far from now"
    assert TOKEN not in json.dumps(refused)
