"""Pub/Sub trigger in process: ack (2xx) or redeliver (500), and what was logged and sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support import pubsub
from tests.support.checks import assert_nothing_sent, log_records, records_at
from tests.support.env import SenderEnv
from tests.support.smtp_server import SmtpTestServer

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "Disk 91% on db-1", "text": "t"}


def test_valid_event_delivers_and_logs_one_outcome_line(
    event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    resp = pubsub.post_event(event_client, MESSAGE, event_id="evt-1001")

    assert resp.status_code == 200, resp.get_data(as_text=True)
    [delivered] = server.wait_for_messages(1)
    assert delivered.message["Subject"] == "Disk 91% on db-1"
    records = log_records(capfd.readouterr().out)
    outcome = [r for r in records if r.get("message_id") == delivered.message["Message-ID"]]
    assert len(outcome) == 1, records
    assert outcome[0]["accepted_count"] == 1
    assert outcome[0]["refused"] == {}
    assert outcome[0]["event_id"] == "evt-1001"


def test_raw_pubsub_push_envelope_is_converted_and_delivered(
    event_client: Any, server: SmtpTestServer
) -> None:
    resp = pubsub.post_push(event_client, MESSAGE, message_id="push-77")

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(server.wait_for_messages(1)) == 1


def test_partial_refusal_is_acked_and_logged_with_the_refused_dict(
    event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    message = {**MESSAGE, "to": ["ops@example.com", "gone@example.com"]}
    resp = pubsub.post_event(event_client, message)

    assert resp.status_code == 200
    assert len(server.wait_for_messages(1)) == 1
    records = log_records(capfd.readouterr().out)
    [outcome] = [r for r in records if "refused" in r and r.get("message_id")]
    assert outcome["refused"]["gone@example.com"]["code"] == 550
    assert outcome["accepted_count"] == 1


@pytest.mark.parametrize(
    "data",
    [
        {"subject": "no recipient", "text": "t"},
        {**MESSAGE, "to": "not-an-address"},
        {**MESSAGE, "subject": "evil\r\nBcc: x@example.org"},
        b"this is not JSON",
        b"\xff\xfe\x00 not utf-8",
        b'["a", "list"]',
    ],
    ids=["no to", "bad address", "CRLF subject", "not JSON", "not UTF-8", "JSON list"],
)
def test_invalid_message_is_acked_with_one_error_line(
    event_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
    data: dict[str, Any] | bytes,
) -> None:
    resp = pubsub.post_event(event_client, data)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    out, err = capfd.readouterr()
    assert len(records_at(log_records(out), "ERROR")) == 1, out
    assert "Traceback" not in out + err
    assert_nothing_sent(server)


def test_permanent_rejection_is_acked_with_one_error_line(
    event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.fail_data("554 5.7.1 Rejected as spam")
    resp = pubsub.post_event(event_client, MESSAGE)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(records_at(log_records(capfd.readouterr().out), "ERROR")) == 1
    assert server.messages == []


@pytest.mark.parametrize(
    ("where", "reply"),
    [("mail", "421 4.7.0 Try again later"), ("data", "451 4.3.0 Temporary failure")],
)
def test_transient_failure_raises_so_pubsub_redelivers(
    event_client: Any, server: SmtpTestServer, where: str, reply: str
) -> None:
    if where == "mail":
        server.fail_mail_from(reply)
    else:
        server.fail_data(reply)
    resp = pubsub.post_event(event_client, MESSAGE)

    assert resp.status_code == 500
    assert server.messages == []


def test_redelivered_event_after_a_transient_failure_is_sent_once(
    event_client: Any, server: SmtpTestServer
) -> None:
    server.fail_mail_from("451 4.3.0 Temporary failure", times=1)
    first = pubsub.post_event(event_client, MESSAGE, event_id="evt-retry")
    second = pubsub.post_event(event_client, MESSAGE, event_id="evt-retry")

    assert first.status_code == 500
    assert second.status_code == 200, second.get_data(as_text=True)
    assert len(server.wait_for_messages(1)) == 1


def test_a_server_closing_mid_recipients_leaves_every_untried_recipient_owed(
    event_client: Any, server: SmtpTestServer
) -> None:
    # gone@ is refused for good, then the server closes the session at closing@'s RCPT: the
    # recipients after it were never tried and must not be forgotten by the redelivery.
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    server.reject_recipient("closing@example.com", "421 4.3.2 Shutting down")
    to = ["gone@example.com", "closing@example.com", "later1@example.com", "later2@example.com"]
    message = {**MESSAGE, "to": to}
    first = pubsub.post_event(event_client, message, event_id="evt-421")
    server.clear_faults()  # (gone@ is not asked again: its 550 was final)
    second = pubsub.post_event(event_client, message, event_id="evt-421")

    assert first.status_code == 500  # redeliver: recipients are owed
    assert second.status_code == 200, second.get_data(as_text=True)
    [delivered] = server.wait_for_messages(1)
    assert sorted(delivered.rcpt_tos) == to[1:]


def test_same_event_delivered_twice_sends_one_email(
    event_client: Any, server: SmtpTestServer
) -> None:
    first = pubsub.post_event(event_client, MESSAGE, event_id="evt-dup")
    second = pubsub.post_event(event_client, MESSAGE, event_id="evt-dup")

    assert first.status_code == 200
    assert second.status_code == 200
    server.wait_for_messages(1)
    assert len(server.messages) == 1


def test_missing_secret_raises_and_logs_an_error(
    event_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # No profile stored at all: the valid message must not be acked and lost.
    resp = pubsub.post_event(event_client, MESSAGE)

    assert resp.status_code == 500
    assert records_at(log_records(capfd.readouterr().out), "ERROR")
    assert_nothing_sent(smtp_ssl)


@pytest.mark.parametrize("form", ["cloudevent", "push envelope"])
def test_event_older_than_max_age_is_acked_and_dropped_with_a_warning_naming_it(
    event_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
    form: str,
) -> None:
    sender_env.set(MAX_EVENT_AGE_S="3600")
    old = datetime.now(UTC) - timedelta(hours=2)
    if form == "cloudevent":
        resp = pubsub.post_event(event_client, MESSAGE, event_id="evt-old", time=old)
    else:  # functions-framework makes the push's messageId / publishTime the event's id / time
        resp = pubsub.post_push(event_client, MESSAGE, message_id="evt-old", time=old)

    assert resp.status_code == 200, resp.get_data(as_text=True)  # redelivery would not help
    [warning] = records_at(log_records(capfd.readouterr().out), "WARNING")
    assert warning["message"] == "stale Pub/Sub event dropped"
    assert warning["event_id"] == "evt-old"
    assert 7100 < warning["age_s"] < 7300
    assert_nothing_sent(server)


def test_recent_event_is_not_stale(event_client: Any, server: SmtpTestServer) -> None:
    recent = datetime.now(UTC) - timedelta(minutes=5)
    resp = pubsub.post_event(event_client, MESSAGE, time=recent)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(server.wait_for_messages(1)) == 1


@pytest.mark.parametrize(("hours", "sent"), [(25, 0), (23, 1)])
def test_default_max_age_is_one_day(
    event_client: Any, server: SmtpTestServer, hours: int, sent: int
) -> None:
    # MAX_EVENT_AGE_S unset: README promises a day.
    when = datetime.now(UTC) - timedelta(hours=hours)
    resp = pubsub.post_event(event_client, MESSAGE, event_id=f"evt-{hours}h", time=when)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    if sent:
        assert len(server.wait_for_messages(1)) == 1
    else:
        assert_nothing_sent(server)
