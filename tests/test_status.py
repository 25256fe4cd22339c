"""`GET /messages/<key>`: "did my email go out?" answered by the ledger (in process, memory store).

The same lookups across two function processes sharing Firestore are in
`tests/idempotency/test_status_shared.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from sender import instance
from sender.config import Settings
from sender.ledger import Claimed
from tests.support import pubsub
from tests.support.checks import assert_nothing_sent, log_records, records_at
from tests.support.env import SenderEnv
from tests.support.pubsub import PROJECT
from tests.support.smtp_server import SmtpTestServer

BODY_TEXT = "db-1: /var is 91% full (do not echo me)"
MESSAGE: dict[str, Any] = {
    "to": "ops@example.com",
    "subject": "Disk 91% on db-1",
    "text": BODY_TEXT,
}
TWO = {**MESSAGE, "to": ["ops@example.com", "busy@example.com"]}
BUSY = "450 4.2.1 Mailbox busy, try later"
UNKNOWN_USER = "550 5.1.1 No such user"
WEBHOOK_SECRET_NAME = f"projects/{PROJECT}/secrets/webhook-token"
TOKEN = "status-token-5521"


def send(client: Any, key: str, message: dict[str, Any] = MESSAGE) -> Any:
    return client.post("/", json={**message, "idempotency_key": key})


def status(client: Any, path: str, **headers: str) -> tuple[int, dict[str, Any], Any]:
    resp = client.get(path, headers=headers)
    return resp.status_code, resp.get_json(), resp


def when(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp  # RFC 3339, UTC
    return datetime.fromisoformat(stamp)


def test_unknown_key_is_404_not_found(http_client: Any, server: SmtpTestServer) -> None:
    code, body, _ = status(http_client, "/messages/never-sent")
    assert (code, body) == (404, {"error": "not_found"})


def test_sent_message_answers_its_record_and_never_its_body(
    http_client: Any, server: SmtpTestServer
) -> None:
    sent = send(http_client, "deploy-42").get_json()
    code, body, resp = status(http_client, "/messages/deploy-42")

    assert code == 200, body
    assert body["state"] == "sent"
    assert body["message_id"] == sent["message_id"]
    assert body["accepted"] == ["ops@example.com"]
    assert (body["refused"], body["owed"], body["attempts"]) == ({}, [], 1)
    assert body["first_attempt_at"] == body["last_attempt_at"]
    when(body["first_attempt_at"])
    assert "last_error" not in body
    assert resp.headers["Cache-Control"] == "no-store"
    assert BODY_TEXT not in resp.get_data(as_text=True)
    assert "Disk 91%" not in resp.get_data(as_text=True)  # nor the subject


def test_partial_send_shows_what_is_still_owed(http_client: Any, server: SmtpTestServer) -> None:
    server.reject_recipient("busy@example.com", BUSY)
    server.reject_recipient("nobody@example.com", UNKNOWN_USER)
    answer = send(http_client, "k-partial", {**TWO, "cc": "nobody@example.com"})
    assert answer.get_json()["status"] == "partial"

    _, body, _ = status(http_client, "/messages/k-partial")
    assert body["state"] == "partial"
    assert body["accepted"] == ["ops@example.com"]
    assert body["owed"] == ["busy@example.com"]
    assert body["refused"] == {"nobody@example.com": {"code": 550, "message": "5.1.1 No such user"}}

    # The caller repeats the request: only the owed recipient is sent to, and the record says so.
    server.clear_faults()
    assert send(http_client, "k-partial", {**TWO, "cc": "nobody@example.com"}).status_code == 200
    _, done, _ = status(http_client, "/messages/k-partial")
    assert (done["state"], done["owed"], done["attempts"]) == ("partial", [], 2)
    assert done["accepted"] == ["ops@example.com", "busy@example.com"]
    assert server.copies_for("ops@example.com") == 1
    assert server.copies_for("busy@example.com") == 1


def test_rejected_attempt_is_reported_and_a_retry_with_the_key_still_sends(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.reject_recipient("ops@example.com", UNKNOWN_USER)
    assert send(http_client, "k-rejected").status_code == 502

    _, body, _ = status(http_client, "/messages/k-rejected")
    assert body["state"] == "rejected"
    assert body["accepted"] == []
    assert body["refused"] == {"ops@example.com": {"code": 550, "message": "5.1.1 No such user"}}
    assert body["last_error"]["error"] == "rejected"
    assert body["message_id"] is None

    server.clear_faults()  # e.g. the mailbox was created meanwhile
    again = send(http_client, "k-rejected")
    assert again.get_json()["status"] == "sent"
    _, after, _ = status(http_client, "/messages/k-rejected")
    assert (after["state"], after["attempts"], after["refused"]) == ("sent", 2, {})
    assert "last_error" not in after
    assert when(after["first_attempt_at"]) <= when(after["last_attempt_at"])
    assert len(server.wait_for_messages(1)) == 1


def test_failed_attempt_is_reported_with_the_server_reply(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.fail_mail_from("451 4.3.0 Temporary local problem")
    assert send(http_client, "k-failed").status_code == 503

    _, body, _ = status(http_client, "/messages/k-failed")
    assert body["state"] == "failed"
    assert body["last_error"]["error"] == "unavailable"
    assert body["last_error"]["smtp_code"] == 451
    assert server.messages == []

    server.clear_faults()
    assert send(http_client, "k-failed").get_json()["status"] == "sent"
    assert status(http_client, "/messages/k-failed")[1]["state"] == "sent"


def test_message_in_flight_is_sending(http_client: Any, server: SmtpTestServer) -> None:
    holder = instance.ledger(Settings.from_env()).claim("http:k-flight")
    assert isinstance(holder, Claimed)
    _, body, _ = status(http_client, "/messages/k-flight")
    assert (body["state"], body["attempts"], body["accepted"]) == ("sending", 1, [])


def test_pubsub_keys_are_asked_for_with_trigger_pubsub(
    http_client: Any, event_client: Any, server: SmtpTestServer
) -> None:
    assert pubsub.post_event(event_client, MESSAGE, event_id="evt-77").status_code == 200
    assert status(http_client, "/messages/evt-77?trigger=pubsub")[1]["state"] == "sent"
    assert status(http_client, "/messages/evt-77")[0] == 404  # HTTP keys are another namespace
    assert status(http_client, "/messages/evt-77?trigger=smtp")[0] == 400


def test_keys_with_slashes_and_spaces_are_percent_encoded(
    http_client: Any, server: SmtpTestServer
) -> None:
    send(http_client, "grafana/alert 991?x")
    assert status(http_client, "/messages/grafana%2Falert%20991%3Fx")[1]["state"] == "sent"


@pytest.mark.parametrize("path", ["/messages/", "/messages/" + "k" * 257, "/messages/a%7Fb"])
def test_a_key_no_request_could_have_is_400(
    http_client: Any, server: SmtpTestServer, path: str
) -> None:
    code, body, _ = status(http_client, path)
    assert code == 400
    assert body["details"][0]["field"] == "key"


def test_a_body_key_with_blanks_around_it_is_found_as_the_status_route_reads_it(
    http_client: Any, server: SmtpTestServer
) -> None:
    """The body's key follows the rule of the header and the URL: blanks around it dropped."""
    assert send(http_client, "  padded-1 ").get_json()["status"] == "sent"
    assert status(http_client, "/messages/padded-1")[1]["state"] == "sent"
    assert status(http_client, "/messages/%20%20padded-1%20")[1]["state"] == "sent"
    again = http_client.post("/", json=MESSAGE, headers={"Idempotency-Key": "padded-1"})
    assert again.get_json()["status"] == "duplicate"
    assert len(server.messages) == 1


@pytest.mark.parametrize("bad", ["a\xa0b", "tab\tinside", "k" * 257, "   "])
def test_a_key_the_status_route_would_refuse_is_refused_when_sending(
    http_client: Any, server: SmtpTestServer, bad: str
) -> None:
    in_body = send(http_client, bad)
    assert in_body.status_code == 400, in_body.get_data(as_text=True)
    assert [d["field"] for d in in_body.get_json()["details"]] == ["idempotency_key"]
    in_header = http_client.post("/", json=MESSAGE, headers={"Idempotency-Key": bad})
    assert in_header.status_code == 400, in_header.get_data(as_text=True)
    assert [d["field"] for d in in_header.get_json()["details"]] == ["Idempotency-Key"]
    assert_nothing_sent(server)


def test_other_methods_are_405(http_client: Any, server: SmtpTestServer) -> None:
    for method, path, allowed in [
        ("PUT", "/messages/k", "GET, POST"),
        ("DELETE", "/messages/k", "GET, POST"),
        ("GET", "/", "POST"),
        ("GET", "/alertmanager", "POST"),
    ]:
        resp = http_client.open(path, method=method)
        assert resp.status_code == 405, (method, path)
        assert resp.headers["Allow"] == allowed
    assert_nothing_sent(server)


def test_status_needs_the_webhook_credential_when_one_is_set(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    send(http_client, "k-private")
    sender_env.secret_manager.put_secret(WEBHOOK_SECRET_NAME, TOKEN)
    sender_env.set(WEBHOOK_SECRET=WEBHOOK_SECRET_NAME)

    assert status(http_client, "/messages/k-private")[:2] == (401, {"error": "unauthorized"})
    wrong = status(http_client, "/messages/k-private", **{"X-Webhook-Token": "guess"})
    assert wrong[:2] == (403, {"error": "unauthorized"})
    code, body, _ = status(http_client, "/messages/k-private", Authorization=f"Bearer {TOKEN}")
    assert (code, body["state"]) == (200, "sent")
    # Unknown keys are only revealed as unknown to a caller holding the credential too.
    assert status(http_client, "/messages/nope")[0] == 401


# --- the Pub/Sub message attribute idempotency_key (a replayed dead letter) ------------------


def test_attribute_key_replaces_the_event_id(
    http_client: Any, event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    first = pubsub.post_event(
        event_client, MESSAGE, event_id="new-1", attributes={"idempotency_key": "orig-1"}
    )
    assert first.status_code == 200
    # Republished (a new message id) with the same attribute: recognised, nothing sent again.
    again = pubsub.post_event(
        event_client, MESSAGE, event_id="new-2", attributes={"idempotency_key": "orig-1"}
    )
    assert again.status_code == 200
    assert len(server.wait_for_messages(1)) == 1

    assert status(http_client, "/messages/orig-1?trigger=pubsub")[1]["state"] == "sent"
    assert status(http_client, "/messages/new-1?trigger=pubsub")[0] == 404
    [duplicate] = [
        r for r in log_records(capfd.readouterr().out) if r["message"].startswith("duplicate")
    ]
    assert (duplicate["event_id"], duplicate["idempotency_key"]) == ("new-2", "orig-1")
    assert len(server.messages) == 1


def test_attribute_key_counts_when_the_event_data_arrives_as_text(
    http_client: Any, event_client: Any, server: SmtpTestServer
) -> None:
    """An event whose data reaches the function as a JSON string (structured mode) is decoded
    once, and its attribute key is the key, as when the data is a parsed object."""
    for event_id in ("raw-1", "raw-2"):
        headers, body = pubsub.structured_request(
            MESSAGE, event_id=event_id, attributes={"idempotency_key": "orig-raw"}
        )
        resp = event_client.post("/", data=body, headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(server.wait_for_messages(1)) == 1
    assert status(http_client, "/messages/orig-raw?trigger=pubsub")[1]["state"] == "sent"
    assert status(http_client, "/messages/raw-1?trigger=pubsub")[0] == 404
    assert len(server.messages) == 1


@pytest.mark.parametrize("bad", ["", "   ", "x" * 257, "line\nbreak"])
def test_invalid_attribute_key_is_one_error_line_and_acked_without_sending(
    event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str], bad: str
) -> None:
    resp = pubsub.post_event(
        event_client, MESSAGE, event_id="evt-bad", attributes={"idempotency_key": bad}
    )
    assert resp.status_code == 200  # acked: redelivering it would loop
    [error] = records_at(log_records(capfd.readouterr().out), "ERROR")
    assert error["message"] == "invalid email request"
    assert error["details"][0]["field"] == "attributes.idempotency_key"
    assert_nothing_sent(server)
