"""Alert sources end to end: functions-framework as a process, each system's documented body with
its own credential form, through real Postfix into the Maildir a mail client would read.

Every test sends to recipients carrying its own token, so the shared Maildir is filtered by the
envelope recipient (virtual(8)'s X-Original-To) and the idempotency keys never meet.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.checks import assert_no_secret, assert_one_conversation
from tests.support.env import function_env
from tests.support.ff_process import FunctionsFrameworkProcess, HttpResult
from tests.support.maildir import Delivered
from tests.support.mta import MtaTier
from tests.support.payloads import EXAMPLE_TEMPLATES, incident, load, resolved, with_labels
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub
from tests.support.webhook_credentials import basic_auth_header, grafana_signature_headers

pytestmark = [pytest.mark.mta, pytest.mark.process]

SECRET_NAME = f"projects/{PROJECT}/secrets/mta-webhook-profile"
PROFILE_FROM = "Alerts <alerts@mta.test>"
TOKEN = "mta-webhook-token-5c1e"
SUBJECT_LIKE = {"Subject", "Thread-Topic"}
FORGED = "<script>alert(1)</script> =?utf-8?q?x=0D=0ABcc=3A_evil=40x.test?=\r\nBcc: evil@x.test"


@pytest.fixture(scope="module")
def secret_manager() -> Iterator[SecretManagerStub]:
    with SecretManagerStub() as stub:
        yield stub


def _env(mta: MtaTier, secrets: SecretManagerStub, workdir: Path, **extra: str) -> dict[str, str]:
    token_file = workdir / "webhook-token"
    token_file.write_text(TOKEN + "\n")
    env = function_env(
        secret_manager=secrets.address,
        ca_file=mta.ca_file,
        gcloud_config=workdir / "gcloud",
        smtp_secret=SECRET_NAME,
        smtp_timeout_s="15",
    )
    return {**env, "WEBHOOK_SECRET": f"file:{token_file}", "SMTP_PROFILE_CACHE_TTL_S": "0", **extra}


def _store_profile(secrets: SecretManagerStub, mta: MtaTier) -> None:
    profile = {
        "host": "127.0.0.1",
        "port": mta.ports.starttls,
        "security": "starttls",
        "username": mta.user,
        "password": mta.password,
        "from": PROFILE_FROM,
    }
    secrets.put_secret(SECRET_NAME, json.dumps(profile))


@pytest.fixture(scope="module")
def function(
    mta_tier: MtaTier, secret_manager: SecretManagerStub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionsFrameworkProcess]:
    """The HTTP function as deployed public: webhook token required, the example templates."""
    workdir = tmp_path_factory.mktemp("ff-mta-webhooks")
    env = _env(mta_tier, secret_manager, workdir, TEMPLATES_DIR=str(EXAMPLE_TEMPLATES))
    _store_profile(secret_manager, mta_tier)
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=workdir) as ff:
        yield ff


# --- each source's own credential form -------------------------------------------------------


def _bearer(_body: bytes) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}  # Alertmanager's http_config.authorization


def _grafana_signed(body: bytes, token: str = TOKEN, age_s: int = 0) -> dict[str, str]:
    return grafana_signature_headers(token, body, timestamp=int(time.time()) - age_s)


def _basic(_body: bytes, password: str = TOKEN) -> dict[str, str]:
    return basic_auth_header(password)  # Cloud Monitoring's user name, the token as password


Credential = Callable[[bytes], dict[str, str]]
# path, body, its other-status twin, credential form, subject, a line of the text body
SOURCES: dict[str, tuple[str, Any, Any, Credential, str, str]] = {
    "alertmanager": (
        "/alertmanager",
        lambda: load("alertmanager-v4"),
        lambda: resolved(load("alertmanager-v4")),
        _bearer,
        "[FIRING:2] DiskFull instance=db-1",
        "  /var on db-1 is 91% full (threshold 90%).",
    ),
    "grafana": (
        "/grafana",
        lambda: load("grafana"),
        lambda: resolved(load("grafana")),
        _grafana_signed,
        "[FIRING:2] (blue)",
        "  values: B=44.23943737541908, C=1",
    ),
    "cloud-monitoring": (
        "/cloud-monitoring",
        lambda: incident("open"),
        lambda: incident("closed"),
        _basic,
        "[OPEN] ALERT - No severity",
        "Observed value: 0.835",
    ),
}


def _post(
    ff: FunctionsFrameworkProcess, path: str, payload: Any, credential: Credential
) -> HttpResult:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **credential(body)}
    return ff.request("POST", path, body, headers)


def _for(address: str) -> Callable[[Delivered], bool]:
    return lambda m: m.original_recipient == address


def _address(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}@example.net"


@pytest.mark.parametrize("source", SOURCES)
def test_documented_body_arrives_readable_with_its_own_credential(
    mta: MtaTier, function: FunctionsFrameworkProcess, source: str
) -> None:
    path, body, _, credential, subject, line = SOURCES[source]
    to = _address(source)
    result = _post(function, f"{path}?to={to}", body(), credential)
    assert result.status == 200, result.text
    assert result.json()["status"] == "sent"
    [got] = mta.wait_for_messages(_for(to))
    assert got.subject == subject
    assert got.header("From") == PROFILE_FROM
    assert got.header("Message-ID") == result.json()["message_id"]
    assert line in (got.body("plain") or "").splitlines()
    assert (got.body("html") or "").startswith("<!doctype html>")
    assert_no_secret(function.output(), result.text, secrets=[TOKEN])


@pytest.mark.parametrize("source", SOURCES)
def test_firing_then_resolved_are_one_conversation_in_the_mailbox(
    mta: MtaTier, function: FunctionsFrameworkProcess, source: str
) -> None:
    path, firing, done, credential, _, _ = SOURCES[source]
    to = _address(source)
    for body in (firing(), done()):
        result = _post(function, f"{path}?to={to}", body, credential)
        assert result.status == 200, result.text
    first, second = mta.wait_for_messages(_for(to), count=2)
    assert_one_conversation(first.message, second.message)
    assert {first.subject[:4], second.subject[:4]} in ({"[FIR", "[RES"}, {"[OPE", "[CLO"})


def test_a_retried_notification_is_one_email_and_a_duplicate(
    mta: MtaTier, function: FunctionsFrameworkProcess
) -> None:
    to = _address("retry")
    first = _post(function, f"/grafana?to={to}", load("grafana"), _grafana_signed)
    again = _post(function, f"/grafana?to={to}", load("grafana"), _grafana_signed)
    assert first.status == again.status == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert again.json()["message_id"] == first.json()["message_id"]
    assert len(mta.delivered_now(_for(to))) == 1


@pytest.mark.parametrize(
    ("path", "credential", "status"),
    [
        ("/alertmanager", lambda body: {}, 401),
        ("/alertmanager", lambda body: {"Authorization": "Bearer not-the-token"}, 403),
        ("/grafana", lambda body: _grafana_signed(body, token="not-the-token"), 403),
        ("/grafana", lambda body: _grafana_signed(body, age_s=301), 403),  # a replay
        ("/cloud-monitoring", lambda body: _basic(body, password="not-the-token"), 403),
    ],
)
def test_missing_wrong_or_stale_credentials_send_nothing(
    mta: MtaTier,
    function: FunctionsFrameworkProcess,
    path: str,
    credential: Credential,
    status: int,
) -> None:
    to = _address("refused")
    body = {"/alertmanager": load("alertmanager-v4"), "/grafana": load("grafana")}.get(
        path, incident("open")
    )
    result = _post(function, f"{path}?to={to}", body, credential)
    assert result.status == status, result.text
    assert result.json() == {"error": "unauthorized"}
    assert mta.delivered_now(_for(to)) == []


def test_hostile_labels_are_escaped_in_html_verbatim_in_text_and_never_a_header(
    mta: MtaTier, function: FunctionsFrameworkProcess
) -> None:
    to = _address("hostile")
    payload = with_labels(load("alertmanager-v4"), instance=FORGED)
    payload["groupLabels"]["instance"] = FORGED
    result = _post(function, f"/alertmanager?to={to}", payload, _bearer)
    assert result.status == 200, result.text
    [got] = mta.wait_for_messages(_for(to))
    message = got.message
    assert message.get_all("From") == [PROFILE_FROM]
    assert message.get_all("Bcc") is None
    assert message.get_all("To") == [to]
    assert "=?" not in got.subject
    assert "evil@x.test" in got.subject  # defused, still readable
    # The defused subject and its Thread-Topic name the value; no other header does.
    assert message["Thread-Topic"] == got.subject.removeprefix("[FIRING:2] ")
    assert all("evil" not in str(message[h]) for h in message if h not in SUBJECT_LIKE)
    text, html = got.body("plain") or "", got.body("html") or ""
    # Verbatim (a line break in a body is a line break: CR LF on the wire, LF once decoded).
    assert f"  instance: {FORGED}".replace("\r\n", "\n") in text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_hook_renders_the_example_ci_template(
    mta: MtaTier, function: FunctionsFrameworkProcess
) -> None:
    to = _address("ci")
    result = _post(function, f"/hook/ci-build?to={to}", load("ci-build"), _bearer)
    assert result.status == 200, result.text
    [got] = mta.wait_for_messages(_for(to))
    assert got.subject == "[FAILED] deploy-web on main"
    assert "Commit 9f2c1ab by Ana Kim:" in (got.body("plain") or "")
    assert '<a href="https://ci.example.com/pipelines/4512">' in (got.body("html") or "")


def test_text_attachments_arrive_with_a_charset_or_as_bytes(
    mta: MtaTier, function: FunctionsFrameworkProcess
) -> None:
    to = _address("attach")
    csv = "이름,사용률\ndb-1,91%\nserveur-é,88%\n".encode()
    blob = bytes(range(256))
    message = {
        "to": to,
        "subject": f"report {to}",
        "text": "attached",
        "attachments": [
            {"filename": "report.csv", "content": base64.b64encode(csv).decode()},
            {"filename": "dump.txt", "content": base64.b64encode(blob).decode()},
            {
                "filename": "legacy.txt",
                "content": base64.b64encode("café".encode("cp1252")).decode(),
                "content_type": 'text/plain; charset="windows-1252"',
            },
        ],
    }
    result = _post(function, "/", message, _bearer)
    assert result.status == 200, result.text
    [got] = mta.wait_for_messages(_for(to))
    report, dump, legacy = got.message.iter_attachments()
    assert (report.get_content_type(), report.get_param("charset")) == ("text/csv", "utf-8")
    assert report.get_content() == csv.decode()
    assert dump.get_content_type() == "application/octet-stream"
    assert dump.get_content() == blob
    assert legacy.get_param("charset") == "windows-1252"
    assert legacy.get_content() == "café"


# --- Cloud Monitoring's Pub/Sub channel -----------------------------------------------------------


@pytest.fixture(scope="module")
def recipients() -> str:
    return _address("pubsub")


@pytest.fixture(scope="module")
def event_function(
    mta_tier: MtaTier,
    secret_manager: SecretManagerStub,
    tmp_path_factory: pytest.TempPathFactory,
    recipients: str,
) -> Iterator[FunctionsFrameworkProcess]:
    workdir = tmp_path_factory.mktemp("ff-mta-channel")
    env = _env(mta_tier, secret_manager, workdir, ALERT_RECIPIENTS=recipients)
    _store_profile(secret_manager, mta_tier)
    with FunctionsFrameworkProcess("send_pubsub", "cloudevent", env=env, log_dir=workdir) as ff:
        yield ff


def test_pubsub_channel_notifications_reach_alert_recipients_in_one_conversation(
    mta: MtaTier, event_function: FunctionsFrameworkProcess, recipients: str
) -> None:
    for state in ("open", "closed"):
        result = event_function.post_cloudevent(incident(state))
        assert result.status == 200, result.text
    opened, closed = mta.wait_for_messages(_for(recipients), count=2)
    assert opened.subject == "[OPEN] ALERT - No severity"
    assert closed.subject == "[CLOSED] ALERT - No severity"
    assert_one_conversation(opened.message, closed.message)
    # Redelivered (same event id): acked, nothing new.
    again = event_function.post_push_envelope(incident("closed"), message_id="cm-redelivered")
    assert again.status == 200
    again = event_function.post_push_envelope(incident("closed"), message_id="cm-redelivered")
    assert again.status == 200
    assert len(mta.delivered_now(_for(recipients))) == 3
