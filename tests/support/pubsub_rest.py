"""The few Pub/Sub emulator REST calls the tests need: topic, push subscription, publish.

Plain urllib against 127.0.0.1 (no proxy), so no extra dependency; the emulator speaks the same
JSON REST API as pubsub.googleapis.com/v1.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from typing import Any

from tests.support.emulators import Emulator
from tests.support.pubsub import PROJECT

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


class PushTopic:
    """A fresh topic with one push subscription to `endpoint` (unique names per test)."""

    def __init__(self, emulator: Emulator, endpoint: str) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.emulator = emulator
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

    def publish(self, message: dict[str, Any]) -> str:
        data = base64.b64encode(json.dumps(message).encode("utf-8")).decode("ascii")
        answer = _call(
            self.emulator, "POST", f"{self.topic}:publish", {"messages": [{"data": data}]}
        )
        message_id: str = answer["messageIds"][0]
        return message_id

    def delete(self) -> None:
        for path in (self.subscription, self.topic):
            _call(self.emulator, "DELETE", path, {})
