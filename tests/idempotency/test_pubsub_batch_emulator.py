"""Real parts: Pub/Sub batches pushed by the emulator to functions-framework running as a process.

A batch whose item is owed a redelivery is nacked (500) after every item was processed; the
emulator's own redelivery then sends only what is still owed. A batch whose only problem is an
invalid item is acked.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.ff_process import FunctionsFrameworkProcess, message_is, wait_for_log
from tests.support.pubsub_rest import DEFERRED, DELIVERY_TIMEOUT_S, PushTopic
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.emulator, pytest.mark.process]

BATCH_DONE = "batch done"


def message(index: int, **extra: Any) -> dict[str, Any]:
    return {"to": f"r{index}@example.com", "subject": f"digest {index}", "text": "t", **extra}


def test_the_redelivery_of_a_batch_sends_only_the_deferred_recipient(
    topic: PushTopic, function: FunctionsFrameworkProcess, server: SmtpTestServer
) -> None:
    server.reject_recipient("busy@example.com", "450 4.2.1 Mailbox busy, try later")
    items = [message(0), {**message(1), "to": ["r1@example.com", "busy@example.com"]}, message(2)]
    event_id = topic.publish({"messages": items})

    [deferred, *_] = wait_for_log(function, message_is(DEFERRED), timeout=DELIVERY_TIMEOUT_S)
    assert (deferred["event_id"], deferred["batch_index"]) == (event_id, 1)
    assert deferred["owed"] == ["busy@example.com"]
    server.clear_faults()  # the mailbox frees up; the emulator's redelivery now gets through

    done = wait_for_log(
        function,
        lambda r: r.get("message") == BATCH_DONE and r["outcomes"].get("duplicate") == 2,
        timeout=DELIVERY_TIMEOUT_S,
    )
    assert done[-1]["outcomes"] == {"duplicate": 2, "sent": 1}
    for address in ("r0@example.com", "r1@example.com", "busy@example.com", "r2@example.com"):
        assert server.copies_for(address) == 1, address
    assert len(server.messages) == 4
    # The owed copy of item 1 carries the Message-ID its first copy had (same key, same message).
    ids = {str(m.message["Message-ID"]) for m in server.messages if "r1@example.com" in m.rcpt_tos}
    owed = [m for m in server.messages if m.rcpt_tos == ("busy@example.com",)]
    assert [str(owed[0].message["Message-ID"])] == sorted(ids)
    sent = [r for r in function.log_records() if r.get("message") == "email sent"]
    assert all(r["event_id"] == event_id for r in sent)


def test_a_batch_with_an_invalid_item_is_acked_and_the_rest_sent(
    topic: PushTopic, function: FunctionsFrameworkProcess, server: SmtpTestServer
) -> None:
    items = [message(0), {"to": "nobody", "subject": "s", "text": "t"}, message(2)]
    event_id = topic.publish({"messages": items})
    [done] = wait_for_log(function, message_is(BATCH_DONE), timeout=DELIVERY_TIMEOUT_S)
    assert done["outcomes"] == {"sent": 2, "invalid_request": 1}
    [invalid] = [r for r in function.log_records() if r["message"] == "invalid email request"]
    assert (invalid["severity"], invalid["batch_index"]) == ("ERROR", 1)

    # A later message that Pub/Sub must redeliver once (a 451): by the time its redelivery
    # arrived, a redelivery of the batch, nacked earlier with the same backoff, would have too.
    server.fail_mail_from("451 4.3.0 Temporary local problem", times=1)
    sentinel = topic.publish(message(9))
    wait_for_log(
        function,
        lambda r: r.get("message") == "email sent" and r.get("event_id") == sentinel,
        timeout=DELIVERY_TIMEOUT_S,
    )
    records = function.log_records()
    assert [r["event_id"] for r in records if r.get("message") == BATCH_DONE] == [event_id]
    assert [server.copies_for(f"r{i}@example.com") for i in (0, 2, 9)] == [1, 1, 1]
    assert len(server.messages) == 3
