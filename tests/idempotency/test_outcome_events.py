"""Outcome events on `RESULTS_TOPIC`, read back from the real Pub/Sub emulator.

The function publishes before it answers, so once an answer is back its event is on the topic:
a test that wants to show that something published *no* event sends a sentinel afterwards and
checks that nothing else arrived before the sentinel's event.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.support import pubsub
from tests.support.checks import log_records, records_at
from tests.support.emulators import Emulator
from tests.support.env import SenderEnv
from tests.support.loopback import free_port
from tests.support.pubsub import PROJECT
from tests.support.pubsub_rest import PullTopic, Received
from tests.support.smtp_server import SmtpTestServer

pytestmark = pytest.mark.emulator

BODY_TEXT = "the body that must never be published"
MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "Disk 91%", "text": BODY_TEXT}
NOT_PUBLISHED = "outcome event not published; the send itself is unaffected"


@pytest.fixture
def results(
    pubsub_emulator: Emulator, sender_env: SenderEnv, server: SmtpTestServer
) -> Iterator[PullTopic]:
    """A topic (named bare: the project comes from GOOGLE_CLOUD_PROJECT) the function publishes
    its outcome events to, with a pull subscription to read them."""
    topic = PullTopic(pubsub_emulator)
    sender_env.set(RESULTS_TOPIC=topic.topic_id, PUBSUB_EMULATOR_HOST=pubsub_emulator.host_port)
    try:
        yield topic
    finally:
        topic.delete()


def send(client: Any, message: dict[str, Any], key: str | None = None) -> Any:
    return client.post("/", json=message if key is None else {**message, "idempotency_key": key})


def events_until(topic: PullTopic, last_key: str) -> list[Received]:
    """Every event up to and including the one for `last_key` (the sentinel)."""
    got: list[Received] = []
    while not any(e.data["key"] == last_key for e in got):
        got += topic.wait_for(1)
    return got


def one_event_per_key(topic: PullTopic, sentinel: str, *keys: str | None) -> dict[Any, Received]:
    """The events up to the sentinel's (sent after the requests for *keys*), by key: exactly one
    for each of *keys* and the sentinel, none for anything else (a dict alone hides a duplicate)."""
    events = events_until(topic, sentinel)
    published = Counter(e.data["key"] for e in events)
    assert published == Counter([*keys, sentinel]), [e.data for e in events]
    return {e.data["key"]: e for e in events}


def test_each_finished_delivery_publishes_one_event_after_answering(
    http_client: Any, results: PullTopic, server: SmtpTestServer
) -> None:
    sent = send(http_client, MESSAGE, "k-sent").get_json()
    send(http_client, MESSAGE, "sentinel")
    event = one_event_per_key(results, "sentinel", "k-sent")["k-sent"]

    assert event.data == {
        "key": "k-sent",
        "trigger": "http",
        "message_id": sent["message_id"],
        "state": "sent",
        "accepted_count": 1,
        "refused": {},
        "owed": [],
        "attempt": 1,
        "time": event.data["time"],
    }
    assert event.data["time"].endswith("Z")
    datetime.fromisoformat(event.data["time"])
    assert event.attributes == {"state": "sent", "trigger": "http"}  # for subscription filters
    assert BODY_TEXT.encode() not in event.raw
    assert b"Disk 91%" not in event.raw


def test_partial_rejected_and_failed_attempts_are_events_too(
    http_client: Any, results: PullTopic, server: SmtpTestServer
) -> None:
    server.reject_recipient("busy@example.com", "450 4.2.1 Mailbox busy")
    server.reject_recipient("nobody@example.com", "550 5.1.1 No such user")
    two = {**MESSAGE, "to": ["ops@example.com", "busy@example.com"], "cc": "nobody@example.com"}
    assert send(http_client, two, "k-partial").get_json()["status"] == "partial"
    assert send(http_client, {**MESSAGE, "to": "nobody@example.com"}, "k-rejected").status_code == (
        502
    )
    server.fail_mail_from("451 4.3.0 Try later", times=1)
    assert send(http_client, MESSAGE, "k-failed").status_code == 503

    send(http_client, MESSAGE, "sentinel")
    by_key = one_event_per_key(results, "sentinel", "k-partial", "k-rejected", "k-failed")
    partial, rejected, failed = (by_key[k].data for k in ("k-partial", "k-rejected", "k-failed"))
    assert (partial["state"], partial["accepted_count"], partial["owed"]) == (
        "partial",
        1,
        ["busy@example.com"],
    )
    assert partial["refused"] == {
        "nobody@example.com": {"code": 550, "message": "5.1.1 No such user"}
    }
    assert (rejected["state"], rejected["accepted_count"]) == ("rejected", 0)
    assert rejected["last_error"]["error"] == "rejected"
    assert rejected["refused"]["nobody@example.com"]["code"] == 550
    assert (failed["state"], failed["last_error"]["smtp_code"]) == ("failed", 451)
    assert failed["message_id"] is None

    # The retry of the failed key is its second attempt.
    assert send(http_client, MESSAGE, "k-failed").get_json()["status"] == "sent"
    send(http_client, MESSAGE, "sentinel-2")
    retry = one_event_per_key(results, "sentinel-2", "k-failed")["k-failed"]
    assert (retry.data["key"], retry.data["state"], retry.data["attempt"]) == (
        "k-failed",
        "sent",
        2,
    )


def test_a_duplicate_or_a_refused_request_publishes_nothing_and_an_unkeyed_send_has_a_null_key(
    http_client: Any, results: PullTopic, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(ALLOWED_RECIPIENTS="example.com")
    send(http_client, MESSAGE, "k-once")
    assert send(http_client, MESSAGE, "k-once").get_json()["status"] == "duplicate"
    # Refused by the policy after its key was claimed: a 400, like any invalid request.
    assert send(http_client, {**MESSAGE, "to": "x@elsewhere.test"}, "k-policy").status_code == 400
    send(http_client, MESSAGE)  # no key: sent every time, announced with key null
    send(http_client, MESSAGE, "sentinel")

    keys = [e.data["key"] for e in events_until(results, "sentinel")]
    assert sorted(keys, key=str) == sorted(["k-once", None, "sentinel"], key=str)


def test_pubsub_deliveries_publish_with_their_key_and_trigger(
    event_client: Any, results: PullTopic, server: SmtpTestServer
) -> None:
    assert pubsub.post_event(event_client, MESSAGE, event_id="evt-9").status_code == 200
    replayed = pubsub.post_event(
        event_client, MESSAGE, event_id="evt-10", attributes={"idempotency_key": "orig-9"}
    )
    assert replayed.status_code == 200
    assert pubsub.post_event(event_client, MESSAGE, event_id="sentinel").status_code == 200

    events = one_event_per_key(results, "sentinel", "evt-9", "orig-9")
    assert events["evt-9"].data["trigger"] == "pubsub"
    assert events["orig-9"].attributes == {"state": "sent", "trigger": "pubsub"}


# (variables to set, what the WARNING's reason names)
BROKEN: dict[str, tuple[dict[str, str | None], tuple[str, ...]]] = {
    "topic missing": ({"RESULTS_TOPIC": f"projects/{PROJECT}/topics/never-created"}, ("NotFound",)),
    "not a topic name": (
        {"RESULTS_TOPIC": f"projects/{PROJECT}/subscriptions/not-a-topic"},
        ("RESULTS_TOPIC must be",),
    ),
    "bare name without a project": (
        {"RESULTS_TOPIC": "bare-name", "GOOGLE_CLOUD_PROJECT": None},
        ("GOOGLE_CLOUD_PROJECT is not set",),
    ),
    # Nothing listens: refused connections are retried until RESULTS_TIMEOUT_S runs out.
    "pubsub down": (
        {"PUBSUB_EMULATOR_HOST": "127.0.0.1:{free port}", "RESULTS_TIMEOUT_S": "1"},
        ("ServiceUnavailable", "did not confirm within RESULTS_TIMEOUT_S=1 s"),
    ),
}


def break_results(sender_env: SenderEnv, case: str) -> tuple[str, ...]:
    variables, reasons = BROKEN[case]
    if "GOOGLE_CLOUD_PROJECT" in variables:
        # The profile's secret is then named in full (a bare name needs the project).
        sender_env.set(SMTP_SECRET=f"projects/{PROJECT}/secrets/smtp-profile")
    free = f"{free_port()}"  # picked now, not at import: a port nobody listens on
    sender_env.set(**{k: v and v.replace("{free port}", free) for k, v in variables.items()})
    return reasons


def assert_one_warning_per_send(text: str, sends: int, reasons: tuple[str, ...]) -> None:
    records = log_records(text)
    warnings = [r for r in records if r["message"] == NOT_PUBLISHED]
    assert len(warnings) == sends, records
    for warning in warnings:
        assert warning["severity"] == "WARNING"
        assert warning["state"] == "sent"
        assert any(reason in warning["reason"] for reason in reasons), warning
    assert records_at(records, "ERROR") == []
    assert not any(BODY_TEXT in str(r) for r in records)


@pytest.mark.usefixtures("results")
@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_results_topic_never_changes_the_http_answer(
    http_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
    case: str,
) -> None:
    reasons = break_results(sender_env, case)
    started = time.monotonic()
    resp = send(http_client, MESSAGE, "k-broken")
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["status"] == "sent"
    assert len(server.wait_for_messages(1)) == 1
    assert_one_warning_per_send(capfd.readouterr().out, 1, reasons)
    print(f"{case}: answered in {elapsed:.2f} s")  # a number to read, not a timed assertion


@pytest.mark.usefixtures("results")
def test_a_broken_results_topic_never_changes_the_pubsub_ack(
    event_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    reasons = break_results(sender_env, "topic missing")
    assert pubsub.post_event(event_client, MESSAGE, event_id="evt-broken").status_code == 200
    assert len(server.wait_for_messages(1)) == 1
    assert_one_warning_per_send(capfd.readouterr().out, 1, reasons)
