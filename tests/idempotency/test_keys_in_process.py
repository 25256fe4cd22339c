"""Idempotency through both triggers in process (memory ledger, real SMTP server)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sender import instance
from sender.config import Settings
from sender.ledger import Claimed
from tests.support import pubsub
from tests.support.checks import assert_nothing_sent, log_records
from tests.support.env import SenderEnv
from tests.support.fakes import FakeClock
from tests.support.smtp_server import SmtpTestServer

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "Disk 91% on db-1", "text": "t"}
DEFERRED = "450 4.2.1 Mailbox busy, try later"


def test_repeated_http_key_is_answered_duplicate_and_sends_once(
    http_client: Any, server: SmtpTestServer
) -> None:
    first = http_client.post("/", json={**MESSAGE, "idempotency_key": "deploy-42"})
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.get_json()["status"] == "sent"

    again = http_client.post("/", json={**MESSAGE, "idempotency_key": "deploy-42"})
    assert again.status_code == 200
    body = again.get_json()
    assert body["status"] == "duplicate"
    assert body["message_id"] == first.get_json()["message_id"]
    assert body["accepted"] == ["ops@example.com"]
    [delivered] = server.wait_for_messages(1)
    assert delivered.message["Message-ID"] == body["message_id"]
    assert len(server.messages) == 1


def test_header_key_deduplicates_too_and_keys_without_one_do_not(
    http_client: Any, server: SmtpTestServer
) -> None:
    for _ in range(2):
        resp = http_client.post("/", json=MESSAGE, headers={"Idempotency-Key": "hdr-7"})
        assert resp.status_code == 200
    assert resp.get_json()["status"] == "duplicate"
    for _ in range(2):
        assert http_client.post("/", json=MESSAGE).get_json()["status"] == "sent"
    assert len(server.wait_for_messages(3)) == 3


def test_message_id_follows_the_key_and_the_message(
    http_client: Any, server: SmtpTestServer
) -> None:
    a = http_client.post("/", json={**MESSAGE, "idempotency_key": "k-a"}).get_json()
    a_dup = http_client.post("/", json={**MESSAGE, "idempotency_key": "k-a"}).get_json()
    assert a_dup["status"] == "duplicate"
    assert a_dup["message_id"] == a["message_id"]

    # A new instance whose memory ledger never heard of k-a sends it again (the memory store's
    # limit), but with the same Message-ID: mailboxes that deduplicate show one email.
    instance.reset()
    a_again = http_client.post("/", json={**MESSAGE, "idempotency_key": "k-a"}).get_json()
    b = http_client.post("/", json={**MESSAGE, "idempotency_key": "k-b"}).get_json()
    assert a_again["status"] == b["status"] == "sent"
    assert a_again["message_id"] == a["message_id"]
    assert b["message_id"] != a["message_id"]
    ids = [m.message["Message-ID"] for m in server.wait_for_messages(3)]
    assert ids == [a["message_id"], a_again["message_id"], b["message_id"]]


@pytest.fixture
def service_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of every ledger the service builds from here on (expiry without sleeping)."""
    fake = FakeClock(time.time())  # starts at the real time, like the clock it stands in for
    factory = instance.new_ledger
    monkeypatch.setattr(instance, "new_ledger", lambda settings: factory(settings, clock=fake))
    return fake


def test_key_reused_after_its_record_expired_for_another_message_gets_a_new_message_id(
    http_client: Any, server: SmtpTestServer, service_clock: FakeClock
) -> None:
    first = http_client.post("/", json={**MESSAGE, "idempotency_key": "nightly-report"}).get_json()
    service_clock.advance(Settings.from_env().idempotency_ttl_s + 1)
    tonight = {**MESSAGE, "text": "tonight's numbers", "idempotency_key": "nightly-report"}
    second = http_client.post("/", json=tonight).get_json()

    assert first["status"] == second["status"] == "sent"
    delivered = server.wait_for_messages(2)
    # Same Message-ID would make Gmail drop the second email silently as a duplicate.
    assert delivered[0].message["Message-ID"] == first["message_id"]
    assert delivered[1].message["Message-ID"] == second["message_id"]
    assert first["message_id"] != second["message_id"]


def test_http_key_equal_to_an_event_id_is_another_email_with_another_message_id(
    http_client: Any, event_client: Any, server: SmtpTestServer
) -> None:
    sent = http_client.post("/", json={**MESSAGE, "idempotency_key": "abc"})
    assert sent.get_json()["status"] == "sent"
    assert pubsub.post_event(event_client, MESSAGE, event_id="abc").status_code == 200

    by_http, by_event = server.wait_for_messages(2)
    assert by_http.message["Message-ID"] == sent.get_json()["message_id"]
    assert by_event.message["Message-ID"] != by_http.message["Message-ID"]


def test_takeover_of_a_crashed_attempt_resends_with_the_same_message_id(
    event_client: Any,
    server: SmtpTestServer,
    service_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ledger = instance.ledger(Settings.from_env())
    recorded = ledger.record_progress

    def crash_once(*args: Any, **kwargs: Any) -> Any:
        # The instance dies after DATA and before the ledger heard of it: the claim stays held.
        monkeypatch.setattr(ledger, "record_progress", recorded)
        raise ConnectionError("instance gone")

    monkeypatch.setattr(ledger, "record_progress", crash_once)
    assert pubsub.post_event(event_client, MESSAGE, event_id="evt-crash").status_code == 200

    service_clock.advance(Settings.from_env().idempotency_lease_s + 1)
    assert pubsub.post_event(event_client, MESSAGE, event_id="evt-crash").status_code == 200

    first, second = server.wait_for_messages(2)  # the crash window's duplicate ...
    # ... carries the first attempt's Message-ID, so the recipient's mailbox shows one email.
    assert second.message["Message-ID"] == first.message["Message-ID"]
    records = log_records(capfd.readouterr().out)
    assert any(r["message"].startswith("took over an expired claim") for r in records)


def test_http_request_while_another_holds_the_key_is_503_with_retry_after(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SEND_DEADLINE_S="4")  # lease 19 s: 4 s of send deadline + 15 s of margin
    holder = instance.ledger(Settings.from_env()).claim("http:busy-1")
    assert isinstance(holder, Claimed)  # ... and it never finishes

    resp = http_client.post("/", json={**MESSAGE, "idempotency_key": "busy-1"})
    assert resp.status_code == 503
    assert resp.get_json()["retryable"] is True
    # What the holder's send deadline may still run, not the whole 19 s lease.
    assert 1 <= int(resp.headers["Retry-After"]) <= 4
    assert_nothing_sent(server)


def test_a_repeat_while_the_first_is_still_sending_waits_and_answers_duplicate(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.stall("data", 1.0)  # the first delivery is mid-DATA when the repeat arrives
    answers: dict[str, Any] = {}

    def first() -> None:
        answers["first"] = http_client.post("/", json={**MESSAGE, "idempotency_key": "k-race"})

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    repeat = http_client.post("/", json={**MESSAGE, "idempotency_key": "k-race"})
    thread.join(timeout=30)

    assert answers["first"].get_json()["status"] == "sent"
    assert repeat.status_code == 200
    assert repeat.get_json()["status"] == "duplicate"
    assert repeat.get_json()["message_id"] == answers["first"].get_json()["message_id"]
    assert len(server.wait_for_messages(1)) == 1
    assert len(server.messages) == 1


def test_a_failure_that_sent_nothing_frees_the_key_for_the_retry(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.fail_mail_from("451 4.3.0 try again later", times=1)
    first = http_client.post("/", json={**MESSAGE, "idempotency_key": "retry-1"})
    assert first.status_code == 503
    again = http_client.post("/", json={**MESSAGE, "idempotency_key": "retry-1"})
    assert again.get_json()["status"] == "sent"
    assert len(server.wait_for_messages(1)) == 1


def test_redelivered_event_is_acked_with_an_info_line_and_not_sent_again(
    event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert pubsub.post_event(event_client, MESSAGE, event_id="evt-dup").status_code == 200
    [delivered] = server.wait_for_messages(1)
    records = log_records(capfd.readouterr().out)
    [dup] = [r for r in records if r["message"].startswith("duplicate")]
    assert dup["severity"] == "INFO"
    assert dup["event_id"] == "evt-dup"
    assert dup["message_id"] == delivered.message["Message-ID"]
    assert len(server.messages) == 1


def test_partial_4xx_is_redelivered_and_only_the_owed_recipient_gets_the_retry(
    event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.reject_recipient("busy@example.com", DEFERRED)
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    message = {**MESSAGE, "to": ["ops@example.com", "busy@example.com", "gone@example.com"]}

    first = pubsub.post_event(event_client, message, event_id="evt-partial")
    assert first.status_code == 500  # raised: Pub/Sub must deliver it again
    server.wait_for_messages(1)
    assert server.messages[0].rcpt_tos == ("ops@example.com",)

    server.clear_faults()
    second = pubsub.post_event(event_client, message, event_id="evt-partial")
    assert second.status_code == 200
    server.wait_for_messages(2)
    assert server.messages[1].rcpt_tos == ("busy@example.com",)  # not ops, not gone (final 5xx)
    assert server.messages[1].message["Message-ID"] == server.messages[0].message["Message-ID"]

    assert pubsub.post_event(event_client, message, event_id="evt-partial").status_code == 200
    assert server.copies_for("ops@example.com") == 1
    assert server.copies_for("busy@example.com") == 1
    assert server.copies_for("gone@example.com") == 0

    records = log_records(capfd.readouterr().out)
    [deferred] = [r for r in records if r.get("owed") and r["severity"] == "WARNING"]
    assert deferred["owed"] == ["busy@example.com"]
    [final] = [r for r in records if r["message"] == "email partially sent" and "owed" not in r][
        -1:
    ]
    assert final["accepted"] == ["ops@example.com", "busy@example.com"]
    assert list(final["refused"]) == ["gone@example.com"]


def test_http_partial_4xx_retry_with_the_same_key_sends_only_to_the_owed(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.reject_recipient("busy@example.com", DEFERRED)
    message = {**MESSAGE, "to": ["ops@example.com", "busy@example.com"], "idempotency_key": "p-1"}
    first = http_client.post("/", json=message).get_json()
    assert first["status"] == "partial"
    assert first["refused"]["busy@example.com"]["code"] == 450

    server.clear_faults()
    second = http_client.post("/", json=message).get_json()
    assert second["status"] == "sent"
    assert second["accepted"] == ["ops@example.com", "busy@example.com"]
    server.wait_for_messages(2)
    assert server.copies_for("ops@example.com") == 1
    assert server.copies_for("busy@example.com") == 1


def test_event_refused_4xx_and_5xx_retries_only_the_4xx_recipient(
    event_client: Any, server: SmtpTestServer
) -> None:
    """Nothing accepted, one recipient deferred, one refused for good (README: 5xx is final)."""
    server.reject_recipient("busy@example.com", DEFERRED)
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    message = {**MESSAGE, "to": ["busy@example.com", "gone@example.com"]}

    def rcpt_commands() -> int:
        return sum(session.commands.count("RCPT") for session in server.sessions)

    statuses, rcpts = [], []
    for attempt in range(3):
        if attempt == 2:
            server.clear_faults()  # busy@ takes mail again; gone@ would still refuse
            server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
        before = rcpt_commands()
        statuses.append(pubsub.post_event(event_client, message, event_id="evt-mixed").status_code)
        rcpts.append(rcpt_commands() - before)

    assert statuses == [500, 500, 200]  # redelivered while busy@ is owed, then acked
    assert rcpts == [2, 1, 1]  # gone@ was asked for once, on the first delivery only
    [delivered] = server.wait_for_messages(1)
    assert delivered.rcpt_tos == ("busy@example.com",)
