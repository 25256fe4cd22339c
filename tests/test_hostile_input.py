"""Input crafted to break out of a header or crash an encoder: a 400 (HTTP) or one ERROR line and
an ack (Pub/Sub), and never a sent message, a 500 or a redelivery loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.checks import assert_nothing_sent, log_records, records_at
from tests.support.constants import PROFILE_FROM
from tests.support.pubsub import post_event
from tests.support.smtp_server import SmtpTestServer

# A quoted-printable encoded word whose decoded text is CR LF "From: CEO <ceo@bank.example>".
FORGED_FROM = "=?utf-8?q?hi=0D=0AFrom=3A_CEO_=3Cceo=40bank=2Eexample=3E?="
BASE: dict[str, Any] = {"to": "ops@example.com", "subject": "s", "text": "t"}
# What an alert email carries, and nothing else.
ALERT_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "In-Reply-To", "References",
    "Thread-Topic", "Thread-Index", "Content-Type", "MIME-Version",
]  # fmt: skip


def _deep(levels: int) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        data = {"d": data}
    return data


HOSTILE: dict[str, bytes] = {
    "encoded word in subject": json.dumps({**BASE, "subject": FORGED_FROM}).encode(),
    "encoded word in a header": json.dumps({**BASE, "headers": {"X-A": FORGED_FROM}}).encode(),
    "encoded word in a display name": json.dumps(
        {**BASE, "to": f"{FORGED_FROM} <ops@example.com>"}
    ).encode(),
    "encoded word in a filename": json.dumps(
        {**BASE, "attachments": [{"filename": f"{FORGED_FROM}.txt", "content": ""}]}
    ).encode(),
    "encoded word through template data": json.dumps(
        {"to": "ops@example.com", "template": "alert", "data": {"title": FORGED_FROM}}
    ).encode(),
    "NEL in subject": json.dumps({**BASE, "subject": "a\u0085b"}).encode(),
    "line separator in subject": json.dumps({**BASE, "subject": "a\u2028b"}).encode(),
    # json.dumps would refuse a lone surrogate; a caller's JSON can still carry the escape.
    "lone surrogate in text": b'{"to": "ops@example.com", "subject": "s", "text": "x\\ud800y"}',
    "nested 100000 levels deep": b'{"to": "ops@example.com", "data": '
    + b'{"d": ' * 100_000
    + b"1"
    + b"}" * 100_001,
    "nested data beyond the limit": json.dumps(
        {"to": "ops@example.com", "template": "alert", "data": _deep(40)}
    ).encode(),
    "template data of the wrong shape": json.dumps(
        {"to": "ops@example.com", "template": "alert", "data": {"title": "x", "details": "abc"}}
    ).encode(),
    # A lone surrogate in a key ends up in the problem's field path: the log line and the answer
    # must still be written (and the path must not carry the raw key).
    "lone surrogate in a repeated key": b'{"\\ud800": 1, "\\ud800": 2}',
    "lone surrogate in a data key": b'{"to": "ops@example.com", "template": "alert", '
    + b'"data": {"\\ud800": "\\udc00"}}',
    "percent-hack recipient": json.dumps({**BASE, "to": "victim%evil.test@example.com"}).encode(),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_http_answers_400_and_sends_nothing(
    http_client: Any, server: SmtpTestServer, body: bytes
) -> None:
    response = http_client.post("/", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_request"
    assert_nothing_sent(server)


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_pubsub_acks_with_one_error_line_and_sends_nothing(
    event_client: Any, server: SmtpTestServer, body: bytes, capsys: Any
) -> None:
    for _ in range(2):  # a redelivery must not be needed: the first answer is the final one
        response = post_event(event_client, body, event_id="hostile-1")
        assert response.status_code == 200, response.get_data(as_text=True)
    errors = records_at(log_records(capsys.readouterr().out), "ERROR")
    assert [e["message"] for e in errors] == ["invalid email request"] * 2
    assert_nothing_sent(server)


def test_alertmanager_labels_cannot_forge_headers(http_client: Any, server: SmtpTestServer) -> None:
    """A hostile label is the alert's data, not the caller's mistake: the alert still goes out
    (refusing it would lose the page), its subject shows the value defused, and the message has
    exactly the headers the function writes."""
    payload = {
        "status": "firing",
        "groupLabels": {"alertname": "Disk", "instance": FORGED_FROM},
        "commonLabels": {"alertname": "Disk"},
        "alerts": [{"status": "firing", "labels": {"alertname": "Disk", "instance": FORGED_FROM}}],
    }
    response = http_client.post("/alertmanager?to=ops@example.com", json=payload)
    assert response.status_code == 200, response.get_data(as_text=True)
    [delivered] = server.wait_for_messages(1)
    message = delivered.message
    assert message.get_all("From") == [PROFILE_FROM]
    assert "CEO" not in str(message["From"])
    defused = FORGED_FROM.replace("=?", "= ?")  # never decoded back into a line break
    assert message["Subject"] == f"[FIRING:1] Disk instance={defused}"
    assert sorted(message.keys()) == sorted(ALERT_HEADERS)
    text = message.get_body(("plain",))
    assert text is not None
    assert FORGED_FROM in text.get_content()  # the body shows the label as it is


def test_template_data_may_use_any_key_name(http_client: Any, server: SmtpTestServer) -> None:
    data = {"title": "x", "self": 1, "template": 2}  # names that clash with render()'s own
    response = http_client.post(
        "/", json={"to": "ops@example.com", "template": "alert", "data": data}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(server.wait_for_messages(1)) == 1


def test_a_key_with_a_lone_surrogate_is_named_without_it(
    http_client: Any, server: SmtpTestServer, capsys: Any
) -> None:
    """The answer and the log line name the problem; the key is quoted with U+FFFD, never raw."""
    body = HOSTILE["lone surrogate in a data key"]
    response = http_client.post("/", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    details = response.get_json()["details"]
    assert {"field": "data", "problem": "has a key with an unpaired surrogate"} in details
    assert {"field": "data.\ufffd", "problem": "contains an unpaired surrogate"} in details
    [line] = log_records(capsys.readouterr().out)
    assert line["message"] == "invalid email request"
    assert line["details"] == details
    repeated = http_client.post(
        "/", data=HOSTILE["lone surrogate in a repeated key"], content_type="application/json"
    )
    assert repeated.get_json()["details"] == [
        {"field": "\ufffd", "problem": "appears more than once in the same object"}
    ]
    assert_nothing_sent(server)
