"""Alert sources in process, against the aiosmtpd server: each system's documented body arrives
as an email, notifications of one group form one conversation, a retry sends nothing, `/hook`
renders the user's own template, and Cloud Monitoring's Pub/Sub channel reaches ALERT_RECIPIENTS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import pubsub
from tests.support.checks import (
    assert_misconfigured,
    assert_nothing_sent,
    assert_one_conversation,
    log_records,
)
from tests.support.env import SenderEnv
from tests.support.payloads import EXAMPLE_TEMPLATES, incident, load, resolved
from tests.support.smtp_server import SmtpTestServer

# path, the documented body, its other-status twin, the subject it gets, a line of its text body
SOURCES: dict[str, tuple[str, Callable[[], dict[str, Any]], Callable[[], dict[str, Any]], str, str]]
SOURCES = {
    "alertmanager": (
        "/alertmanager",
        lambda: load("alertmanager-v4"),
        lambda: resolved(load("alertmanager-v4")),
        "[FIRING:2] DiskFull instance=db-1",
        "  /var on db-1 is 91% full (threshold 90%).",
    ),
    "grafana": (
        "/grafana",
        lambda: load("grafana"),
        lambda: resolved(load("grafana")),
        "[FIRING:2] (blue)",
        "  values: B=44.23943737541908, C=1",
    ),
    "cloud-monitoring": (
        "/cloud-monitoring",
        lambda: incident("open"),
        lambda: incident("closed"),
        "[OPEN] ALERT - No severity",
        "Observed value: 0.835",
    ),
}


def _text_and_html(message: Any) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("source", SOURCES)
def test_documented_body_arrives_with_subject_and_both_bodies(
    http_client: Any, server: SmtpTestServer, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    path, body, _, subject, line = SOURCES[source]
    response = http_client.post(f"{path}?to=ops@example.com,oncall@example.com", json=body())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "sent"
    [delivered] = server.wait_for_messages(1)
    assert sorted(delivered.rcpt_tos) == ["oncall@example.com", "ops@example.com"]
    assert delivered.message["Subject"] == subject
    text, html = _text_and_html(delivered.message)
    assert line in text.splitlines()
    assert html.startswith("<!doctype html>")
    assert delivered.message["Auto-Submitted"] == "auto-generated"
    [received] = [
        r for r in log_records(capsys.readouterr().out) if r["message"] == "notification received"
    ]
    assert received["source"] == source
    assert received["thread"].startswith(f"{source}:")  # a hash: no label value in the log


@pytest.mark.parametrize("source", SOURCES)
def test_firing_then_resolved_share_one_conversation(
    http_client: Any, server: SmtpTestServer, source: str
) -> None:
    path, firing, done, _, _ = SOURCES[source]
    for body in (firing(), done()):
        response = http_client.post(f"{path}?to=ops@example.com", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
    first, second = server.wait_for_messages(2)
    assert_one_conversation(first.message, second.message)
    assert first.message["Subject"] != second.message["Subject"]


@pytest.mark.parametrize("source", SOURCES)
def test_the_same_notification_twice_is_one_email_and_a_duplicate(
    http_client: Any, server: SmtpTestServer, source: str
) -> None:
    path, body, _, _, _ = SOURCES[source]
    first = http_client.post(f"{path}?to=ops@example.com", json=body())
    again = http_client.post(f"{path}?to=ops@example.com", json=body())
    assert first.status_code == again.status_code == 200, again.get_data(as_text=True)
    assert first.get_json()["status"] == "sent"
    assert again.get_json()["status"] == "duplicate"
    assert again.get_json()["message_id"] == first.get_json()["message_id"]
    assert len(server.messages) == 1  # the answer came after the SMTP transaction: none pending
    # Other recipients for the same body are another email, not a duplicate.
    other = http_client.post(f"{path}?to=db-team@example.com", json=body())
    assert other.get_json()["status"] == "sent"
    assert len(server.messages) == 2


def test_alert_recipients_stand_in_for_a_missing_to(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    refused = http_client.post("/grafana", json=load("grafana"))
    assert refused.status_code == 400
    assert refused.get_json()["details"][0]["field"] == "to"
    sender_env.set(ALERT_RECIPIENTS="oncall@example.com, db@example.com")
    response = http_client.post("/grafana", json=load("grafana"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert sorted(server.wait_for_messages(1)[0].rcpt_tos) == [
        "db@example.com",
        "oncall@example.com",
    ]


TYPO = "oncall@example.com, db@@example.com"  # an operator's typo in the second address


@pytest.mark.parametrize("source", SOURCES)
def test_a_typo_in_alert_recipients_is_misconfigured_not_the_callers_fault(
    http_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    source: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 400 would make Alertmanager and Grafana drop the alert; a 500 makes them retry while
    the operator fixes the setting. The answer names the setting, not its value."""
    sender_env.set(ALERT_RECIPIENTS=TYPO)
    path, body, *_ = SOURCES[source]
    response = http_client.post(path, json=body())
    assert_misconfigured(response)
    detail = response.get_json()["detail"]
    assert "ALERT_RECIPIENTS" in detail
    assert "entry 2" in detail
    assert "example.com" not in detail
    errors = [r for r in log_records(capsys.readouterr().out) if r["severity"] == "ERROR"]
    assert [e["error"] for e in errors] == ["misconfigured"]
    assert_nothing_sent(server)
    # ?to= still wins: the caller's own recipients need no setting.
    given = http_client.post(f"{path}?to=ops@example.com", json=body())
    assert given.status_code == 200, given.get_data(as_text=True)


def test_a_callers_idempotency_key_wins_over_the_derived_one(
    http_client: Any, server: SmtpTestServer
) -> None:
    headers = {"Idempotency-Key": "am-retry-1"}
    first = http_client.post(
        "/alertmanager?to=ops@example.com", json=load("alertmanager-v4"), headers=headers
    )
    second = http_client.post(
        "/alertmanager?to=ops@example.com", json=resolved(load("alertmanager-v4")), headers=headers
    )
    assert first.get_json()["status"] == "sent"
    assert second.get_json()["status"] == "duplicate"
    assert len(server.messages) == 1


# --- /hook/<template> ---------------------------------------------------------------------------


def test_hook_renders_the_example_template(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(TEMPLATES_DIR=str(EXAMPLE_TEMPLATES))
    response = http_client.post("/hook/ci-build?to=dev@example.com", json=load("ci-build"))
    assert response.status_code == 200, response.get_data(as_text=True)
    [delivered] = server.wait_for_messages(1)
    assert delivered.message["Subject"] == "[FAILED] deploy-web on main"
    text, html = _text_and_html(delivered.message)
    assert "Commit 9f2c1ab by Ana Kim:" in text
    assert "  - integration-tests: https://ci.example.com/jobs/88120" in text.splitlines()
    assert '<a href="https://ci.example.com/jobs/88120">integration-tests</a>' in html
    assert delivered.message["In-Reply-To"] is None  # not an alert group: no conversation


def test_hook_escapes_the_payload_in_html(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(TEMPLATES_DIR=str(EXAMPLE_TEMPLATES))
    payload = load("ci-build")
    payload["commit"]["message"] = "<img src=x onerror=alert(1)> fix"
    response = http_client.post("/hook/ci-build?to=dev@example.com", json=payload)
    assert response.status_code == 200, response.get_data(as_text=True)
    text, html = _text_and_html(server.wait_for_messages(1)[0].message)
    assert "<img src=x onerror=alert(1)> fix" in text
    assert "&lt;img src=x onerror=alert(1)&gt; fix" in html
    assert "<img" not in html


@pytest.mark.parametrize(
    "case",
    [
        ("/hook/no-such-template", load("ci-build"), "template", "'no-such-template'"),
        ("/hook/Bad..Name", load("ci-build"), "template", "template name"),
        ("/hook", load("ci-build"), "template", "template name"),
        ("/hook/ci-build", {"pipeline": "p", "status": "failed"}, "data", "branch"),
        ("/hook/ci-build", ["not", "an", "object"], "body", "JSON object"),
    ],
)
def test_hook_refusals_name_the_template_or_variable(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv, case: tuple[str, Any, str, str]
) -> None:
    path, body, field, words = case  # the problem names `field`, and says `words`
    sender_env.set(TEMPLATES_DIR=str(EXAMPLE_TEMPLATES))
    response = http_client.post(f"{path}?to=dev@example.com", json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    [problem] = response.get_json()["details"]
    assert problem["field"] == field
    assert words in problem["problem"]
    assert_nothing_sent(server)


def test_hook_without_templates_dir_is_misconfigured_and_never_uses_a_builtin(
    http_client: Any, server: SmtpTestServer
) -> None:
    """The caller cannot fix a missing setting: 500 misconfigured (webhook senders retry)."""
    response = http_client.post(
        "/hook/alertmanager?to=dev@example.com", json=load("alertmanager-v4")
    )
    assert_misconfigured(response)
    assert "TEMPLATES_DIR" in response.get_json()["detail"]
    assert_nothing_sent(server)


BROKEN_TEXT = "Build {{ payload.status }}\n{% for job in payload.jobs %}\n  - {{ job.name }\n"


@pytest.mark.parametrize("route", ["hook", "message"])
def test_a_template_with_a_syntax_error_is_misconfigured_naming_file_and_line(
    http_client: Any,
    *,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    tmp_path: Path,
    route: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The operator's template is broken, not the caller's request: 500 misconfigured naming the
    file and the line, and never the template's text."""
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "subject.txt").write_text("CI {{ payload.status }}")
    (tmp_path / "broken" / "text.txt").write_text(BROKEN_TEXT)
    sender_env.set(TEMPLATES_DIR=str(tmp_path))
    if route == "hook":
        response = http_client.post("/hook/broken?to=dev@example.com", json={"status": "ok"})
    else:
        data = {"payload": {"status": "ok"}}
        body = {"to": "dev@example.com", "template": "broken", "data": data}
        response = http_client.post("/", json=body)
    assert_misconfigured(response)
    detail = response.get_json()["detail"]
    assert "broken/text.txt" in detail
    assert "line 3" in detail
    assert "job.name" not in detail
    [error] = [r for r in log_records(capsys.readouterr().out) if r["severity"] == "ERROR"]
    assert (error["error"], error["reason"]) == ("misconfigured", detail)
    assert_nothing_sent(server)


# --- Cloud Monitoring's Pub/Sub channel -----------------------------------------------------------


def test_pubsub_channel_notification_goes_to_alert_recipients(
    event_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(ALERT_RECIPIENTS="oncall@example.com")
    for state in ("open", "closed"):
        response = pubsub.post_event(event_client, incident(state))
        assert response.status_code == 200, response.get_data(as_text=True)
    opened, closed = server.wait_for_messages(2)
    assert opened.rcpt_tos == closed.rcpt_tos == ("oncall@example.com",)
    assert opened.message["Subject"] == "[OPEN] ALERT - No severity"
    assert closed.message["Subject"] == "[CLOSED] ALERT - No severity"
    assert_one_conversation(opened.message, closed.message)


@pytest.mark.parametrize("setting", [None, TYPO], ids=["unset", "typo"])
def test_pubsub_channel_with_no_usable_alert_recipients_waits_for_the_operator(
    event_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    capsys: pytest.CaptureFixture[str],
    setting: str | None,
) -> None:
    """A valid alert and a missing or mistyped setting: misconfiguration, so the event is
    redelivered (as for a missing secret) instead of being acked away; once the operator fixes
    the setting, it is sent."""
    sender_env.set(ALERT_RECIPIENTS=setting)
    first = pubsub.post_event(event_client, incident("open"), event_id="cm-1")
    assert first.status_code == 500  # raised: Pub/Sub redelivers
    errors = [r for r in log_records(capsys.readouterr().out) if r["severity"] == "ERROR"]
    assert [e["error"] for e in errors] == ["misconfigured"]
    assert "ALERT_RECIPIENTS" in errors[0]["reason"]
    assert_nothing_sent(server)
    sender_env.set(ALERT_RECIPIENTS="oncall@example.com, db@example.com")
    again = pubsub.post_event(event_client, incident("open"), event_id="cm-1")
    assert again.status_code == 200, again.get_data(as_text=True)
    assert len(server.wait_for_messages(1)) == 1


def test_a_malformed_pubsub_notification_is_acked_with_one_error(
    event_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sender_env.set(ALERT_RECIPIENTS="oncall@example.com")
    broken = incident("open")
    broken["incident"]["state"] = "melting"
    response = pubsub.post_event(event_client, broken)
    assert response.status_code == 200
    errors = [r for r in log_records(capsys.readouterr().out) if r["severity"] == "ERROR"]
    assert [e["message"] for e in errors] == ["invalid email request"]
    assert errors[0]["details"][0]["field"] == "incident.state"
    assert_nothing_sent(server)


@pytest.mark.parametrize("source", ["alertmanager", "grafana"])
def test_a_label_with_a_lone_surrogate_is_a_400_naming_it(
    http_client: Any, server: SmtpTestServer, source: str
) -> None:
    """A label no email can carry (and no fingerprint to stand in for the label set): the
    caller's own field is named, before anything is hashed or rendered."""
    path, body, *_ = SOURCES[source]
    payload = body()
    for alert in payload["alerts"]:
        alert.pop("fingerprint", None)
    payload["alerts"][0]["labels"]["instance"] = "db-\ud800"
    response = http_client.post(
        f"{path}?to=ops@example.com", data=json.dumps(payload), content_type="application/json"
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["details"] == [
        {"field": "alerts[0].labels.instance", "problem": "contains an unpaired surrogate"}
    ]
    assert_nothing_sent(server)
