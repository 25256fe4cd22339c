"""Real parts: the Pub/Sub emulator pushes to functions-framework running as a process.

The emulator sends the raw push envelope; functions-framework turns it into a CloudEvent whose id
is the Pub/Sub message id. Redelivery is the emulator's own, after the function answered 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from sender.message import parse_request
from sender.mime import make_message_id, message_id_seed
from tests.support.ff_process import FunctionsFrameworkProcess, message_is, wait_for_log
from tests.support.pubsub_rest import DELIVERY_TIMEOUT_S, PushTopic
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.emulator, pytest.mark.process]

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "Disk 91% on db-1", "text": "t"}


def test_published_message_arrives_exactly_once(
    topic: PushTopic, function: FunctionsFrameworkProcess, server: SmtpTestServer
) -> None:
    message_id = topic.publish(MESSAGE)
    [delivered] = server.wait_for_messages(1, timeout=DELIVERY_TIMEOUT_S)
    # Derived from the event id (the Pub/Sub message id) and the message: any redelivery of
    # this event, on any instance, would carry the same one.
    seed = message_id_seed(f"pubsub:{message_id}", parse_request(MESSAGE))
    assert delivered.message["Message-ID"] == make_message_id("example.com", seed)

    # A second message through the same subscription: by the time it arrives, a stray repeat of
    # the first would have had every chance to arrive too.
    topic.publish({**MESSAGE, "subject": "sentinel"})
    server.wait_for_messages(2, timeout=DELIVERY_TIMEOUT_S)
    subjects = sorted(str(m.message["Subject"]) for m in server.messages)
    assert subjects == ["Disk 91% on db-1", "sentinel"]
    [sent] = wait_for_log(
        function, lambda r: r.get("message_id") == delivered.message["Message-ID"]
    )
    assert sent["event_id"] == message_id


def test_transient_failure_is_redelivered_by_pubsub_and_then_sent_once(
    topic: PushTopic, function: FunctionsFrameworkProcess, server: SmtpTestServer
) -> None:
    server.fail_mail_from("451 4.3.0 Temporary local problem", times=1)
    message_id = topic.publish(MESSAGE)

    [delivered] = server.wait_for_messages(1, timeout=DELIVERY_TIMEOUT_S)
    [failed] = wait_for_log(function, message_is("email not sent"))
    assert failed["redeliver"] is True
    assert failed["event_id"] == message_id
    [sent] = wait_for_log(function, message_is("email sent"))
    assert sent["event_id"] == message_id
    assert sent["message_id"] == delivered.message["Message-ID"]
    assert len(server.messages) == 1


def test_partial_4xx_is_redelivered_and_the_accepted_recipient_gets_one_copy(
    topic: PushTopic, function: FunctionsFrameworkProcess, server: SmtpTestServer
) -> None:
    server.reject_recipient("busy@example.com", "450 4.2.1 Mailbox busy, try later")
    topic.publish({**MESSAGE, "to": ["ops@example.com", "busy@example.com"]})

    [deferred, *_] = wait_for_log(
        function, message_is("some recipients were deferred (4xx); redelivering for them only")
    )
    assert deferred["owed"] == ["busy@example.com"]
    server.clear_faults()  # the mailbox frees up; the emulator's redelivery now gets through

    server.wait_for_messages(2, timeout=DELIVERY_TIMEOUT_S)
    [done] = wait_for_log(function, message_is("email sent"))
    assert done["accepted"] == ["ops@example.com", "busy@example.com"]
    assert server.copies_for("ops@example.com") == 1
    assert server.copies_for("busy@example.com") == 1
    assert len(server.messages) == 2
