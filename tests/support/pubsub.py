"""Builders for what Pub/Sub delivers to ``send_pubsub``, shared by in-process and process tests.

- `cloudevent_request(message)`: an Eventarc-style binary-mode CloudEvent (``ce-*`` headers and a
  ``MessagePublishedData`` JSON body whose ``message.data`` is base64).
- `post_event(client, message)`: POST such a CloudEvent to an in-process (Flask test) client.
- `structured_request(message)`: the same event in structured mode, its data a JSON string.
- `push_envelope(message)`: the raw Pub/Sub push body the emulator sends
  (``{"message": {...}, "subscription": ...}``), which functions-framework converts; POST it to
  `PUSH_PATH` so the topic can be read from the URL; `post_push(client, message)` does that.

*message* may be a dict (serialised as UTF-8 JSON) or raw bytes (to send invalid payloads).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

PROJECT = "test-project"
TOPIC = f"projects/{PROJECT}/topics/outbound-email"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/outbound-email-push"
PUSH_PATH = f"/{TOPIC}"
PUBLISHED_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


def encode_data(message: dict[str, Any] | bytes) -> str:
    """Base64 of the message JSON (or of raw bytes), as Pub/Sub puts it in ``message.data``."""
    raw = message if isinstance(message, bytes) else json.dumps(message).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def rfc3339(when: datetime | None = None) -> str:
    """Timestamp in the form Pub/Sub and Eventarc use."""
    moment = when or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloudevent_request(
    message: dict[str, Any] | bytes,
    event_id: str | None = None,
    time: datetime | None = None,
    attributes: dict[str, str] | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode Pub/Sub CloudEvent as Eventarc delivers it."""
    eid = event_id or str(uuid.uuid4().int % 10**16)
    stamp = rfc3339(time)
    body = {
        "message": {
            "data": encode_data(message),
            "messageId": eid,
            "message_id": eid,
            "publishTime": stamp,
            "publish_time": stamp,
            "attributes": attributes or {},
        },
        "subscription": SUBSCRIPTION,
    }
    headers = {
        "Content-Type": "application/json",
        "ce-id": eid,
        "ce-specversion": "1.0",
        "ce-source": f"//pubsub.googleapis.com/{TOPIC}",
        "ce-type": PUBLISHED_TYPE,
        "ce-time": stamp,
    }
    return headers, json.dumps(body).encode("utf-8")


def structured_request(message: dict[str, Any] | bytes, **kw: Any) -> tuple[dict[str, str], bytes]:
    """The same event in structured mode (``application/cloudevents+json``) with its
    ``MessagePublishedData`` as a JSON *string* in ``data``: the function receives it as text,
    not as a parsed object."""
    headers, body = cloudevent_request(message, **kw)
    event = {
        name.removeprefix("ce-"): value for name, value in headers.items() if name != "Content-Type"
    }
    event["data"] = body.decode("utf-8")
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode("utf-8")


def post_event(client: Any, message: dict[str, Any] | bytes, **kw: Any) -> Any:
    """POST `cloudevent_request(message, **kw)` to *client*, a Flask test client of
    ``send_pubsub``; returns its response."""
    headers, body = cloudevent_request(message, **kw)
    return client.post("/", data=body, headers=headers)


def push_envelope(
    message: dict[str, Any] | bytes,
    message_id: str | None = None,
    time: datetime | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a raw Pub/Sub push request (emulator style); POST to `PUSH_PATH`."""
    mid = message_id or str(uuid.uuid4().int % 10**16)
    body = {
        "message": {
            "data": encode_data(message),
            "messageId": mid,
            "publishTime": rfc3339(time),
            "attributes": {},
        },
        "subscription": SUBSCRIPTION,
    }
    return {"Content-Type": "application/json"}, json.dumps(body).encode("utf-8")


def post_push(client: Any, message: dict[str, Any] | bytes, **kw: Any) -> Any:
    """POST `push_envelope(message, **kw)` to `PUSH_PATH` of *client*, a Flask test client of
    ``send_pubsub``; returns its response."""
    headers, body = push_envelope(message, **kw)
    return client.post(PUSH_PATH, data=body, headers=headers)
