"""`deploy.sh replay-dead-letters` for real, against the recording stand-in for gcloud.

What an operator relies on: every held dead letter goes back to the email topic with its body and
attributes and an idempotency_key attribute; a message is acked only after its publish
succeeded, so a failed publish never loses one; the run is bounded by REPLAY_MAX; the key is the
same for every copy of one original and for every rerun, so no email goes out twice; no body
ever reaches argv or the terminal.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import PROJECT, ScriptRun, flags, run_deploy
from tests.support.fake_gcloud import FakeCloud, make_fake_cloud

HOLD = "smtp-send-dead-letter-hold"
PUBLISH_TIME = "2026-03-02T08:15:42.118+00:00"
# A body marker that must never show up in argv or output (message bodies are private).
BODY_CANARY = "body-canary-4f1e 비밀 내용"


def dead_letter(
    n: int,
    *,
    subject: str = "디스크 91% on db-1",
    attributes: dict[str, str] | None = None,
    publish_time: str = PUBLISH_TIME,
    message_id: str | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """One held message as `gcloud pubsub subscriptions pull --format=json` prints it: a new
    message id, the original data and attributes, and Pub/Sub's dead-letter attributes."""
    body = {"to": f"ops{n}@example.com", "subject": subject, "text": f"{BODY_CANARY} #{n}"}
    payload = data if data is not None else json.dumps(body, ensure_ascii=False).encode()
    return {
        "ackId": f"ack-{n}",
        "message": {
            "data": base64.b64encode(payload).decode(),
            "messageId": message_id or f"90000{n}",
            "publishTime": "2026-03-02T09:00:00.000Z",
            "attributes": {
                **(attributes or {}),
                "CloudPubSubDeadLetterSourceDeliveryCount": "10",
                "CloudPubSubDeadLetterSourceSubscription": "eventarc-europe-west1-sub-123",
                "CloudPubSubDeadLetterSourceSubscriptionProject": PROJECT,
                "CloudPubSubDeadLetterSourceTopicPublishTime": publish_time,
            },
        },
    }


def expected_key(message: dict[str, Any]) -> str:
    """The documented key for a dead letter without its own idempotency_key (deploy.sh)."""
    attrs = message["message"]["attributes"]
    original = {k: v for k, v in attrs.items() if not k.startswith("CloudPubSubDeadLetter")}
    when = datetime.datetime.fromisoformat(attrs["CloudPubSubDeadLetterSourceTopicPublishTime"])
    canonical = json.dumps(
        {
            "attributes": original,
            "data": message["message"]["data"],
            "publish_time_ms": round(when.timestamp() * 1000),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "dead-letter:" + hashlib.sha256(canonical.encode()).hexdigest()


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return make_fake_cloud(tmp_path, PROJECT)


def replay(cloud: FakeCloud, **env: str) -> ScriptRun:
    return run_deploy("replay-dead-letters", env=cloud.env(**env))


def _position(calls: list[list[str]], *words: str, ack_id: str | None = None) -> int:
    """Index of the call starting with *words* (and naming *ack_id*, if given)."""
    for i, call in enumerate(calls):
        if tuple(call[: len(words)]) == words and (
            ack_id is None or ack_id in flags(call).get("--ack-ids", "").split(",")
        ):
            return i
    raise AssertionError(f"no {words} {ack_id or ''} in {calls}")


def _publish_positions(calls: list[list[str]]) -> list[int]:
    return [i for i, c in enumerate(calls) if c[:3] == ["pubsub", "topics", "publish"]]


def test_each_dead_letter_is_republished_with_its_key_and_acked_after_its_publish(
    cloud: FakeCloud,
) -> None:
    own_key = dead_letter(1, attributes={"idempotency_key": "invoice-2026-0042", "source": "erp"})
    plain = dead_letter(2, attributes={"source": "scheduler"})
    bare = dead_letter(3)
    cloud.hold([own_key, plain, bare])

    run = replay(cloud)

    assert run.returncode == 0, run.stderr
    published = cloud.published
    assert [p["topic"] for p in published] == ["smtp-send"] * 3
    for record, held in zip(published, (own_key, plain, bare), strict=True):
        message = record["flags"]["--message"]
        assert message.encode() == base64.b64decode(held["message"]["data"])  # Korean intact
        assert record["mode"] == 0o600  # the body sits in a file only its owner can read
        assert not Path(record["file"]).exists()  # and the file is gone after the run
    attrs = [p["flags"]["--attribute"] for p in published]
    # 1. the publisher's own key is the key the original deliveries used: kept as it is.
    assert attrs[0] == {"idempotency_key": "invoice-2026-0042", "source": "erp"}
    # 2. otherwise a key derived from the original message; other attributes kept.
    assert attrs[1] == {"source": "scheduler", "idempotency_key": expected_key(plain)}
    assert attrs[2] == {"idempotency_key": expected_key(bare)}
    # Pub/Sub's own dead-letter bookkeeping does not travel back.
    assert not any(k.startswith("CloudPubSub") for a in attrs for k in a)

    calls = cloud.calls()
    for n in (1, 2, 3):
        ack = _position(calls, "pubsub", "subscriptions", "ack", ack_id=f"ack-{n}")
        publish = _publish_positions(calls)[n - 1]
        assert publish < ack, (n, calls)
        if n < 3:  # and before the next message is published
            assert ack < _publish_positions(calls)[n]
    assert sorted(cloud.acked) == ["ack-1", "ack-2", "ack-3"]
    # The body never reached argv or the terminal; the keys are shown.
    for call in calls:
        assert not any("body-canary" in arg for arg in call), call
    assert "body-canary" not in run.stdout + run.stderr
    assert expected_key(plain) in run.stderr


def test_a_failed_publish_leaves_that_message_and_the_rest_unacked_and_stops(
    cloud: FakeCloud,
) -> None:
    cloud.hold([dead_letter(1), dead_letter(2), dead_letter(3)])
    cloud.fail_publish_of(f"{BODY_CANARY} #2")

    run = replay(cloud)

    assert run.returncode != 0
    assert "stay in smtp-send-dead-letter-hold, not acked" in run.stderr
    assert cloud.acked == ["ack-1"]  # only what was published
    assert len(cloud.published) == 1
    calls = cloud.calls()
    # No third publish after the failure, and the unpublished two are handed back at once
    # (ack deadline 0: pullable again by the next run, not acked).
    assert len(_publish_positions(calls)) == 2
    hand_back = [c for c in calls if flags(c).get("--ack-deadline") == "0"]
    assert [flags(c)["--ack-ids"] for c in hand_back] == ["ack-2,ack-3"]
    assert cloud.leased == ["ack-1"]  # (acked ones never come back either)

    # Once the cause is fixed, a rerun replays exactly the two that were left.
    (cloud.state / "fail_publish.json").unlink()
    again = replay(cloud)
    assert again.returncode == 0, again.stderr
    assert sorted(cloud.acked) == ["ack-1", "ack-2", "ack-3"]
    assert len(cloud.published) == 3


def test_replay_max_bounds_the_run(cloud: FakeCloud) -> None:
    cloud.hold([dead_letter(n) for n in range(1, 26)])

    run = replay(cloud, REPLAY_MAX="12")

    assert run.returncode == 0, run.stderr
    pulls = [
        flags(c)["--limit"] for c in cloud.calls() if c[:3] == ["pubsub", "subscriptions", "pull"]
    ]
    assert pulls == ["10", "2"]
    assert len(cloud.published) == 12
    assert len(cloud.acked) == 12
    assert "replayed 12 dead letter(s)" in run.stderr


def test_copies_of_one_original_and_reruns_get_one_key(cloud: FakeCloud) -> None:
    # Pub/Sub may dead-letter one message twice: two held copies, two new message ids.
    first = dead_letter(1, message_id="111")
    copy = dead_letter(1, message_id="222")
    copy["ackId"] = "ack-copy"
    other_time = dead_letter(1, message_id="333", publish_time="2026-03-02T08:15:42.119+00:00")
    other_time["ackId"] = "ack-later"
    cloud.hold([first, copy, other_time])

    assert replay(cloud).returncode == 0
    keys = [p["flags"]["--attribute"]["idempotency_key"] for p in cloud.published]
    assert keys[0] == keys[1]  # the function answers duplicate for the second
    assert keys[2] != keys[0]  # the same text published a millisecond later is another email


def test_a_body_that_is_not_utf8_text_is_left_in_place(cloud: FakeCloud) -> None:
    cloud.hold([dead_letter(1, data=b"\xff\xfe binary"), dead_letter(2)])
    run = replay(cloud)
    assert run.returncode == 0, run.stderr
    assert [p["flags"]["--attribute"]["idempotency_key"] for p in cloud.published] == [
        expected_key(dead_letter(2))
    ]
    assert cloud.acked == ["ack-2"]
    assert "not UTF-8" in run.stderr


def test_an_empty_hold_replays_nothing(cloud: FakeCloud) -> None:
    run = replay(cloud)
    assert run.returncode == 0, run.stderr
    assert cloud.published == []
    assert [c[:3] for c in cloud.calls()] == [["pubsub", "subscriptions", "pull"]]
