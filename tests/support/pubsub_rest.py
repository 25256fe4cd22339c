"""The few Pub/Sub emulator REST calls the tests need: topic, push subscription, publish, pull.

Plain urllib against 127.0.0.1 (no proxy), so no extra dependency; the emulator speaks the same
JSON REST API as pubsub.googleapis.com/v1.

- `PushTopic(emulator, endpoint)`: a topic pushed to a function; `publish(message, attributes)`;
  `stop_pushing()` turns its subscription into a pull one (a message then waits there, as in a
  dead-letter hold subscription), `pull_held()` takes what waits, `start_pushing()` resumes.
- `PullTopic(emulator)`: a topic with a pull subscription, e.g. the function's `RESULTS_TOPIC`;
  `wait_for(count)` pulls and acks until `count` messages arrived (bounded).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from tests.support.emulators import Emulator
from tests.support.pubsub import PROJECT

# Each redelivery waits for the emulator's backoff: generous for a loaded 2-core runner.
DELIVERY_TIMEOUT_S = 90.0
# The function's log message when it asks Pub/Sub to redeliver for deferred recipients.
DEFERRED = "some recipients were deferred (4xx); redelivering for them only"

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(emulator: Emulator, method: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        emulator.url(f"/v1/{path}"),
        data=json.dumps(body).encode("utf-8"),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with _opener.open(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


@dataclass(frozen=True)
class Received:
    """One pulled message: its id, data (parsed JSON when it is JSON), attributes."""

    message_id: str
    data: Any
    raw: bytes
    attributes: dict[str, str]


def _received(item: dict[str, Any]) -> Received:
    message = item["message"]
    raw = base64.b64decode(message.get("data", ""))
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = None
    return Received(message["messageId"], data, raw, dict(message.get("attributes") or {}))


def pull(emulator: Emulator, subscription: str, max_messages: int = 10) -> list[Received]:
    """Whatever `subscription` holds right now (at most `max_messages`), acked."""
    answer = _call(
        emulator,
        "POST",
        f"{subscription}:pull",
        {"maxMessages": max_messages, "returnImmediately": True},
    )
    items = answer.get("receivedMessages") or []
    if items:
        ack_ids = [item["ackId"] for item in items]
        _call(emulator, "POST", f"{subscription}:acknowledge", {"ackIds": ack_ids})
    return [_received(item) for item in items]


def publish(
    emulator: Emulator, topic: str, message: dict[str, Any], attributes: dict[str, str] | None
) -> str:
    """Publish `message` as UTF-8 JSON data with `attributes`; returns the message id."""
    data = base64.b64encode(json.dumps(message).encode("utf-8")).decode("ascii")
    body: dict[str, Any] = {"data": data}
    if attributes:
        body["attributes"] = attributes
    answer = _call(emulator, "POST", f"{topic}:publish", {"messages": [body]})
    message_id: str = answer["messageIds"][0]
    return message_id


class PullTopic:
    """A fresh topic with one pull subscription (unique names per test)."""

    def __init__(self, emulator: Emulator) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.emulator = emulator
        self.topic_id = f"results-{suffix}"
        self.topic = f"projects/{PROJECT}/topics/{self.topic_id}"
        self.subscription = f"projects/{PROJECT}/subscriptions/results-pull-{suffix}"
        _call(emulator, "PUT", self.topic, {})
        _call(emulator, "PUT", self.subscription, {"topic": self.topic, "ackDeadlineSeconds": 10})

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Pull (and ack) until at least `count` messages arrived; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        got: list[Received] = []
        while len(got) < count:
            got += pull(self.emulator, self.subscription)
            if len(got) >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages in {timeout} s, got {got}")
            time.sleep(0.1)
        return got

    def delete(self) -> None:
        for path in (self.subscription, self.topic):
            _call(self.emulator, "DELETE", path, {})


class PushTopic:
    """A fresh topic with one push subscription to `endpoint` (unique names per test)."""

    def __init__(self, emulator: Emulator, endpoint: str) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.emulator = emulator
        self.endpoint = endpoint
        self.topic = f"projects/{PROJECT}/topics/email-{suffix}"
        self.subscription = f"projects/{PROJECT}/subscriptions/email-push-{suffix}"
        _call(emulator, "PUT", self.topic, {})
        _call(
            emulator,
            "PUT",
            self.subscription,
            {
                "topic": self.topic,
                "pushConfig": {"pushEndpoint": endpoint},
                "ackDeadlineSeconds": 10,
                # A quick retry keeps the redelivery tests short (honoured where supported).
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "2s"},
            },
        )

    def publish(self, message: dict[str, Any], attributes: dict[str, str] | None = None) -> str:
        return publish(self.emulator, self.topic, message, attributes)

    def stop_pushing(self) -> None:
        """Make the subscription a pull one: unacked messages stay there, nothing is pushed."""
        _call(self.emulator, "POST", f"{self.subscription}:modifyPushConfig", {"pushConfig": {}})

    def start_pushing(self) -> None:
        """Push to the endpoint again (after `stop_pushing`)."""
        body = {"pushConfig": {"pushEndpoint": self.endpoint}}
        _call(self.emulator, "POST", f"{self.subscription}:modifyPushConfig", body)

    def pull_held(self, max_messages: int = 10) -> list[Received]:
        """After `stop_pushing`: what the subscription holds (acked)."""
        return pull(self.emulator, self.subscription, max_messages)

    def delete(self) -> None:
        for path in (self.subscription, self.topic):
            _call(self.emulator, "DELETE", path, {})
