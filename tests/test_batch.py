"""Batch sends (`{"messages": [..]}`) over HTTP and Pub/Sub, in process, against the aiosmtpd
server: per-item results in order, items failing alone, keys, limits, time, pooled sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sender.message import parse_request
from sender.mime import make_message_id, message_id_seed
from tests.support import pubsub
from tests.support.checks import assert_nothing_sent, log_records, records_at
from tests.support.env import SenderEnv
from tests.support.ff_process import FunctionsFrameworkProcess
from tests.support.smtp_server import SmtpTestServer

WEBHOOK_SECRET_NAME = f"projects/{pubsub.PROJECT}/secrets/webhook-token"
TOKEN = "batch-token-5521"
NOT_ATTEMPTED = "not attempted: the batch ran out of time"


def message(index: int, **extra: Any) -> dict[str, Any]:
    return {"to": f"r{index}@example.com", "subject": f"digest {index}", "text": "t", **extra}


def post_batch(http_client: Any, messages: list[Any], **kw: Any) -> Any:
    return http_client.post("/batch", json={"messages": messages}, **kw)


def results_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert list(body) == ["results"]
    results: list[dict[str, Any]] = body["results"]
    return results


def delivered_to(server: SmtpTestServer, address: str) -> list[str]:
    """Message-IDs of the messages whose envelope had `address`."""
    return [str(m.message["Message-ID"]) for m in server.messages if address in m.rcpt_tos]


# --- HTTP -----------------------------------------------------------------------------------


def test_each_message_gets_its_own_result_in_order_and_one_log_line(
    http_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    messages = [message(i) for i in range(6)]
    results = results_of(post_batch(http_client, messages))

    server.wait_for_messages(6)
    assert [r["status"] for r in results] == ["sent"] * 6
    for index, result in enumerate(results):
        assert result["accepted"] == [f"r{index}@example.com"]
        assert result["refused"] == {}
        assert delivered_to(server, f"r{index}@example.com") == [result["message_id"]]
    records = log_records(capfd.readouterr().out)
    sent = [r for r in records if r["message"] == "email sent"]
    assert sorted(r["batch_index"] for r in sent) == list(range(6))
    [summary] = [r for r in records if r["message"] == "batch done"]
    assert summary["severity"] == "INFO"
    assert (summary["count"], summary["outcomes"]) == (6, {"sent": 6})


def test_an_invalid_item_fails_alone_with_its_own_400_answer(
    http_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    messages = [
        message(0),
        {"to": "nobody", "subject": "s", "text": "t"},
        {**message(2), "subjet": "typo"},
        "not an object",
        message(4),
    ]
    results = results_of(post_batch(http_client, messages))

    assert [r.get("status") for r in results] == ["sent", None, None, None, "sent"]
    assert results[1]["error"] == "invalid_request"
    assert [d["field"] for d in results[1]["details"]] == ["to[0]"]
    assert results[2] == {
        "error": "invalid_request",
        "details": [{"field": "subjet", "problem": "is not a known field"}],
    }
    assert results[3] == {
        "error": "invalid_request",
        "details": [{"field": "body", "problem": "must be a JSON object"}],
    }
    # The single endpoint answers the same item with the same body (and a 400).
    single = http_client.post("/", json=messages[2])
    assert (single.status_code, single.get_json()) == (400, results[2])
    assert len(server.wait_for_messages(2)) == 2
    assert delivered_to(server, "r2@example.com") == []
    records = log_records(capfd.readouterr().out)
    invalid = [r for r in records if r["message"] == "invalid email request"]
    assert [r.get("batch_index", "single") for r in invalid] == [1, 2, 3, "single"]
    [summary] = [r for r in records if r["message"] == "batch done"]
    assert summary["severity"] == "WARNING"
    assert summary["outcomes"] == {"sent": 2, "invalid_request": 3}


def test_failed_items_are_answered_as_the_single_endpoint_answers_them(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    server.reject_recipient("busy@example.com", "450 4.2.1 Mailbox busy, try later")
    partial = {**message(0), "to": ["r0@example.com", "gone@example.com"]}
    rejected = {**message(1), "to": "gone@example.com"}
    deferred = {**message(2), "to": "busy@example.com"}
    results = results_of(post_batch(http_client, [partial, rejected, deferred, message(3)]))

    assert results[0]["status"] == "partial"
    assert results[0]["accepted"] == ["r0@example.com"]
    assert results[0]["refused"]["gone@example.com"]["code"] == 550
    assert results[3]["status"] == "sent"
    single_rejected = http_client.post("/", json=rejected)
    single_deferred = http_client.post("/", json=deferred)
    assert single_rejected.status_code == 502
    assert results[1] == single_rejected.get_json()
    assert results[1]["error"] == "rejected"
    assert single_deferred.status_code == 503
    assert results[2] == single_deferred.get_json()
    assert results[2]["retryable"] is True
    assert server.copies_for("gone@example.com") == 0
    assert server.copies_for("busy@example.com") == 0


def test_a_key_repeated_in_a_batch_or_in_the_next_batch_is_a_duplicate(
    http_client: Any, server: SmtpTestServer
) -> None:
    first = results_of(
        post_batch(
            http_client,
            [
                message(0, idempotency_key="digest-0"),
                message(1, idempotency_key="digest-1"),
                message(0, idempotency_key="digest-0"),  # the same message twice in one batch
                message(2),  # no key: never deduplicated
            ],
        )
    )
    assert [r["status"] for r in first] == ["sent", "sent", "duplicate", "sent"]
    assert first[2]["message_id"] == first[0]["message_id"]

    again = results_of(
        post_batch(http_client, [message(1, idempotency_key="digest-1"), message(2)])
    )
    assert [r["status"] for r in again] == ["duplicate", "sent"]
    assert again[0]["message_id"] == first[1]["message_id"]
    # A batch item's key is the caller's key, as for a single message.
    single = http_client.post("/", json=message(0, idempotency_key="digest-0"))
    assert single.get_json()["status"] == "duplicate"

    server.wait_for_messages(4)
    assert [server.copies_for(f"r{i}@example.com") for i in range(3)] == [1, 1, 2]
    assert len(server.messages) == 4


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"messages": []}, "messages", "must not be empty"),
        ({}, "messages", "is required"),
        ({"messages": {"to": "a@example.com"}}, "messages", "must be a list"),
        ({"messages": [message(0)], "message": "typo"}, "message", "is not a known field"),
        ([message(0)], "body", "must be a JSON object with a messages list"),
    ],
)
def test_a_malformed_batch_is_400_as_a_whole_and_sends_nothing(
    http_client: Any, server: SmtpTestServer, body: Any, field: str, problem: str
) -> None:
    response = http_client.post("/batch", json=body)

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_request",
        "details": [{"field": field, "problem": problem}],
    }
    assert_nothing_sent(server)


def test_more_than_max_batch_messages_is_400_naming_the_limit(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(MAX_BATCH="3")
    response = post_batch(http_client, [message(i) for i in range(4)])

    assert response.status_code == 400
    [detail] = response.get_json()["details"]
    assert detail == {
        "field": "messages",
        "problem": "holds 4 messages; at most 3 (MAX_BATCH) per batch",
    }
    assert_nothing_sent(server)
    assert len(results_of(post_batch(http_client, [message(i) for i in range(3)]))) == 3


def test_an_idempotency_key_header_on_a_batch_is_refused(
    http_client: Any, server: SmtpTestServer
) -> None:
    response = post_batch(http_client, [message(0)], headers={"Idempotency-Key": "k"})

    assert response.status_code == 400
    [detail] = response.get_json()["details"]
    assert detail["field"] == "Idempotency-Key"
    assert_nothing_sent(server)


def test_the_webhook_credential_guards_the_batch_endpoint(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.secret_manager.put_secret(WEBHOOK_SECRET_NAME, TOKEN)
    sender_env.set(WEBHOOK_SECRET=WEBHOOK_SECRET_NAME)

    refused = post_batch(http_client, [message(0)])
    assert refused.status_code == 401
    assert_nothing_sent(server)
    wrong = post_batch(http_client, [message(0)], headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 403
    assert_nothing_sent(server)
    allowed = post_batch(http_client, [message(0)], headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r["status"] for r in results_of(allowed)] == ["sent"]


def test_a_batch_reuses_one_session_with_pool_size_one(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_POOL_SIZE="1")
    results = results_of(post_batch(http_client, [message(i) for i in range(30)]))

    assert [r["status"] for r in results] == ["sent"] * 30
    assert len(server.wait_for_messages(30)) == 30
    [session] = server.sessions
    assert session.commands.count("AUTH") == 1
    assert session.commands.count("DATA") == 30


def test_a_batch_sends_over_at_most_pool_size_sessions_and_keeps_them(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_POOL_SIZE="3")
    server.stall("data", 0.02)  # items overlap, so the batch does use several sessions
    opened = []  # sessions the server has seen, after each batch
    for batch in range(2):
        messages = [message(i, subject=f"digest {batch}.{i}") for i in range(24)]
        results = results_of(post_batch(http_client, messages))
        assert [r["status"] for r in results] == ["sent"] * 24
        opened.append(len(server.sessions))

    assert len(server.wait_for_messages(48)) == 48
    assert 1 <= opened[0] <= 3
    assert opened[1] == opened[0]  # the second batch opened none
    assert sum(s.commands.count("AUTH") for s in server.sessions) == len(server.sessions)


def test_without_a_pool_each_item_has_its_own_session(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_POOL_SIZE="0")
    results = results_of(post_batch(http_client, [message(i) for i in range(3)]))

    assert [r["status"] for r in results] == ["sent"] * 3
    assert len(server.sessions) == 3
    assert all(s.commands[-1] == "QUIT" for s in server.sessions)


def test_items_not_started_within_the_batch_budget_are_answered_retryable(
    http_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # One item at a time, a budget of 1 s, and a server that takes 3 s to answer MAIL FROM: the
    # first item is cut at the batch's deadline (nothing sent), the others never start.
    sender_env.set(SMTP_POOL_SIZE="1", SEND_DEADLINE_S="1")
    server.stall("mail", 3.0)
    results = results_of(post_batch(http_client, [message(i) for i in range(3)]))

    assert results[0]["error"] == "unavailable"
    assert results[0]["detail"] != NOT_ATTEMPTED
    expected = {"error": "unavailable", "detail": NOT_ATTEMPTED, "retryable": True}
    assert results[1:] == [expected, expected]
    server.clear_faults()
    assert server.messages == []
    records = log_records(capfd.readouterr().out)
    [summary] = [r for r in records if r["message"] == "batch done"]
    assert (summary["outcomes"], summary["not_attempted"]) == ({"unavailable": 3}, 2)


@pytest.mark.process
def test_batches_through_functions_framework_as_a_process(
    server: SmtpTestServer, sender_env: SenderEnv, tmp_path: Path
) -> None:
    sender_env.set(SMTP_POOL_SIZE="2", MAX_BATCH="20")
    first = [message(i, idempotency_key=f"p-{i}") for i in range(12)]
    first[5] = {"to": "nobody", "subject": "s", "text": "t"}
    first[9] = message(3, idempotency_key="p-3")  # a repeat of item 3
    second = [message(i, idempotency_key=f"p-{i}") for i in range(10, 14)]
    with FunctionsFrameworkProcess(
        "send_http", env=sender_env.process_env(), log_dir=tmp_path
    ) as ff:
        answers, opened = [], []  # opened: sessions the server has seen, after each batch
        for batch in (first, second):
            answers.append(ff.post_json("/batch", {"messages": batch}))
            opened.append(len(server.sessions))
        too_many = ff.post_json("/batch", {"messages": [message(i) for i in range(21)]})
        records = ff.log_records()

    assert [a.status for a in answers] == [200, 200]
    one, two = (a.json()["results"] for a in answers)
    assert [r.get("status", r.get("error")) for r in one] == [
        *["sent"] * 5, "invalid_request", *["sent"] * 3, "duplicate", "sent", "sent"
    ]  # fmt: skip
    assert one[9]["message_id"] == one[3]["message_id"]
    assert [r["status"] for r in two] == ["duplicate", "duplicate", "sent", "sent"]
    assert (too_many.status, too_many.json()["details"][0]["field"]) == (400, "messages")
    server.wait_for_messages(12)
    assert len(server.messages) == 12  # 10 from the first batch, 2 new ones from the second
    for index, result in enumerate(one):
        if index not in (5, 9):
            assert delivered_to(server, f"r{index}@example.com") == [result["message_id"]]
    assert 1 <= opened[0] <= 2
    assert opened[1] == opened[0]  # both batches over the same pooled sessions
    summaries = [r for r in records if r.get("message") == "batch done"]
    assert [s["count"] for s in summaries] == [12, 4]


# --- Pub/Sub --------------------------------------------------------------------------------


def expected_message_id(key: str, item: dict[str, Any]) -> str:
    return make_message_id("example.com", message_id_seed(key, parse_request(item)))


def test_a_pubsub_batch_with_an_invalid_item_is_acked_and_the_rest_sent(
    event_client: Any,
    http_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    items = [message(0), {"to": "nobody", "subject": "s", "text": "t"}, message(2)]
    response = pubsub.post_event(event_client, {"messages": items}, event_id="evt-b1")

    assert response.status_code == 200, response.get_data(as_text=True)
    server.wait_for_messages(2)
    # Each item's key is `<event id>:<index>` (batch items' namespace): its Message-ID says so.
    for index in (0, 2):
        expected = expected_message_id(f"pubsub-batch:evt-b1:{index}", items[index])
        assert delivered_to(server, f"r{index}@example.com") == [expected]
    records = log_records(capfd.readouterr().out)
    [invalid] = records_at(records, "ERROR")
    assert (invalid["message"], invalid["batch_index"]) == ("invalid email request", 1)
    assert all(r["event_id"] == "evt-b1" for r in records)
    [summary] = [r for r in records if r["message"] == "batch done"]
    assert summary["outcomes"] == {"sent": 2, "invalid_request": 1}
    # Each item's fate under its own key; the invalid one never reached the ledger.
    status = http_client.get("/messages/evt-b1:2?trigger=pubsub-batch")
    assert (status.status_code, status.get_json()["state"]) == (200, "sent")
    assert status.get_json()["accepted"] == ["r2@example.com"]
    assert http_client.get("/messages/evt-b1:1?trigger=pubsub-batch").status_code == 404


def test_a_redelivered_pubsub_batch_sends_only_what_is_owed(
    event_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.reject_recipient("busy@example.com", "450 4.2.1 Mailbox busy, try later")
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    items = [
        message(0),
        {**message(1), "to": ["r1@example.com", "busy@example.com"]},  # partly deferred
        {**message(2), "to": "gone@example.com"},  # rejected for good
        {**message(3), "to": "busy@example.com"},  # deferred as a whole
    ]
    first = pubsub.post_event(event_client, {"messages": items}, event_id="evt-b2")
    assert first.status_code == 500  # redelivery requested, after every item was processed
    assert server.copies_for("r0@example.com") == 1
    assert server.copies_for("r1@example.com") == 1
    errors = records_at(log_records(capfd.readouterr().out), "ERROR")
    assert [(r["message"], r["batch_index"]) for r in errors] == [("email not sent", 2)]

    # Every mailbox is fine now; the redelivery of the same event sends what is still owed.
    server.clear_faults()
    again = pubsub.post_event(event_client, {"messages": items}, event_id="evt-b2")
    assert again.status_code == 200, again.get_data(as_text=True)
    assert server.copies_for("busy@example.com") == 2  # item 1's owed copy and item 3
    for address in ("r0@example.com", "r1@example.com"):
        assert server.copies_for(address) == 1
    assert server.copies_for("gone@example.com") == 0  # rejected before: not tried again
    records = log_records(capfd.readouterr().out)
    outcomes = {r["batch_index"]: r["message"] for r in records if "batch_index" in r}
    assert outcomes[0] == "duplicate delivery; the email was already sent"
    assert outcomes[2] == "email rejected by an earlier delivery; not tried again"
    assert records_at(records, "ERROR") == []
    [summary] = [r for r in records if r["message"] == "batch done"]
    assert summary["outcomes"] == {"duplicate": 1, "sent": 2, "rejected": 1}

    # Once more (a stray redelivery): nothing at all goes out.
    before = len(server.messages)
    stray = pubsub.post_event(event_client, {"messages": items}, event_id="evt-b2")
    assert stray.status_code == 200
    assert len(server.messages) == before


def test_a_pubsub_batch_keyed_by_attribute_is_one_batch_across_event_ids(
    event_client: Any, server: SmtpTestServer
) -> None:
    items = [message(0), message(1)]
    key = {"idempotency_key": "digest-2026-11-26"}
    assert pubsub.post_event(event_client, {"messages": items}, attributes=key).status_code == 200
    assert pubsub.post_event(event_client, {"messages": items}, attributes=key).status_code == 200

    assert len(server.messages) == 2
    expected = expected_message_id("pubsub-batch:digest-2026-11-26:1", items[1])
    assert delivered_to(server, "r1@example.com") == [expected]


def test_a_single_message_keyed_like_a_batch_item_is_its_own_email(
    event_client: Any, http_client: Any, server: SmtpTestServer
) -> None:
    """Item 0 of the batch keyed `K` and a single message whose key is `K:0` are two emails: a
    batch item's record cannot be taken for a single message's (or the other way round)."""
    items = [message(0), message(1)]
    batch = pubsub.post_event(event_client, {"messages": items}, event_id="evt-k")
    assert batch.status_code == 200, batch.get_data(as_text=True)
    single = pubsub.post_event(
        event_client, message(7), event_id="evt-s", attributes={"idempotency_key": "evt-k:0"}
    )
    assert single.status_code == 200, single.get_data(as_text=True)

    server.wait_for_messages(3)
    assert len(delivered_to(server, "r7@example.com")) == 1
    item = http_client.get("/messages/evt-k:0?trigger=pubsub-batch").get_json()
    assert item["accepted"] == ["r0@example.com"]
    alone = http_client.get("/messages/evt-k:0?trigger=pubsub").get_json()
    assert alone["accepted"] == ["r7@example.com"]


def test_a_pubsub_batch_over_max_batch_is_acked_with_one_error_line(
    event_client: Any,
    server: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sender_env.set(MAX_BATCH="2")
    response = pubsub.post_event(event_client, {"messages": [message(i) for i in range(3)]})

    assert response.status_code == 200
    assert_nothing_sent(server)
    [error] = records_at(log_records(capfd.readouterr().out), "ERROR")
    assert error["details"] == [
        {"field": "messages", "problem": "holds 3 messages; at most 2 (MAX_BATCH) per batch"}
    ]
