"""Real parts: a dead letter replayed with its original message id as `idempotency_key`.

The Pub/Sub emulator pushes to functions-framework running as a process. A message is partly
sent (one recipient keeps answering 450), its deliveries run out and it waits in a subscription
(as in the dead-letter topic's hold subscription, which `deploy.sh replay-dead-letters` reads);
it is then republished — a NEW message id — carrying the original id as the `idempotency_key`
attribute, and only the recipient still owed receives mail.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.ff_process import FunctionsFrameworkProcess, message_is, wait_for_log
from tests.support.pubsub_rest import DEFERRED, DELIVERY_TIMEOUT_S, PushTopic, Received
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.emulator, pytest.mark.process]

MESSAGE: dict[str, Any] = {
    "to": ["ops@example.com", "busy@example.com"],
    "subject": "Disk 91% on db-1",
    "text": "t",
}


def take_held(topic: PushTopic, timeout: float = DELIVERY_TIMEOUT_S) -> Received:
    """The one message waiting in the (no longer pushing) subscription, acked.

    It becomes pullable once the push in flight, if any, has been answered (and nacked)."""
    deadline = time.monotonic() + timeout
    while True:
        held = topic.pull_held()
        if held:
            [message] = held
            return message
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing held in {topic.subscription} after {timeout} s")
        time.sleep(0.2)


def test_replayed_dead_letter_sends_only_to_the_recipient_still_owed(
    topic: PushTopic, function: FunctionsFrameworkProcess, server: SmtpTestServer
) -> None:
    server.reject_recipient("busy@example.com", "450 4.2.1 Mailbox busy, try later")
    original = topic.publish(MESSAGE)
    [deferred, *_] = wait_for_log(function, message_is(DEFERRED), timeout=DELIVERY_TIMEOUT_S)
    assert (deferred["event_id"], deferred["owed"]) == (original, ["busy@example.com"])

    # Its deliveries run out: the message now waits, unpushed, like a dead letter on hold.
    topic.stop_pushing()
    dead_letter = take_held(topic)
    assert dead_letter.message_id == original
    assert server.copies_for("ops@example.com") == 1
    assert server.copies_for("busy@example.com") == 0

    # The mailbox frees up; the operator replays: a new message id, the original as the key.
    server.clear_faults()
    topic.start_pushing()
    replay = topic.publish(dead_letter.data, {"idempotency_key": dead_letter.message_id})
    assert replay != original

    [resumed] = wait_for_log(
        function,
        message_is("resuming a partial send: only to the recipients still owed"),
        timeout=DELIVERY_TIMEOUT_S,
    )
    assert (resumed["event_id"], resumed["idempotency_key"]) == (replay, original)
    assert resumed["owed"] == ["busy@example.com"]
    [done] = wait_for_log(function, message_is("email sent"), timeout=DELIVERY_TIMEOUT_S)
    assert done["event_id"] == replay
    assert done["accepted"] == ["ops@example.com", "busy@example.com"]
    assert server.copies_for("busy@example.com") == 1
    assert server.copies_for("ops@example.com") == 1  # never a second copy
    # Same key, same message: the owed copy carries the Message-ID the first one had.
    first, owed = server.messages
    assert owed.message["Message-ID"] == first.message["Message-ID"]

    # Replaying it again (a rerun of the replay) is a duplicate: nothing more goes out.
    again = topic.publish(dead_letter.data, {"idempotency_key": dead_letter.message_id})
    [duplicate] = wait_for_log(
        function,
        message_is("duplicate delivery; the email was already sent"),
        timeout=DELIVERY_TIMEOUT_S,
    )
    assert (duplicate["event_id"], duplicate["idempotency_key"]) == (again, original)
    assert len(server.messages) == 2
