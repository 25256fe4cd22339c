"""The Pub/Sub trigger: a CloudEvent carrying `MessagePublishedData`, acked or redelivered.

Returning acks the message. Raising makes functions-framework answer 500, so Pub/Sub (deployed with
`--retry`) delivers it again: that is what transient failures and misconfiguration do, so no alert
is lost while a provider recovers or an operator fixes the secret. Invalid messages and permanent
rejections are acked after one ERROR line: redelivering them would only loop.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sender import logs
from sender.config import Settings
from sender.message import EmailRequest, parse_request
from sender.outcome import Disposition, InvalidRequest, SendError, TransientError
from sender.service import send_email

VIA = "pubsub"


class RedeliveryRequested(RuntimeError):
    """Raised so that Pub/Sub delivers the event again. Its text is our reason, never a secret."""


def decode_event_data(data: Any) -> Any:
    """`MessagePublishedData` -> the decoded JSON of `message.data`; raises InvalidRequest."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise InvalidRequest.one("event", "the event data is not JSON") from None
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise InvalidRequest.one("message.data", "the Pub/Sub message has no data")
    try:
        raw = base64.b64decode(message["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest.one("message.data", "is not valid base64") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest.one("message.data", "is not UTF-8 JSON") from None


def parse_event(cloud_event: Any) -> EmailRequest:
    return parse_request(decode_event_data(cloud_event.data))


def handle(cloud_event: Any) -> None:
    logs.clear()
    event_id = str(cloud_event["id"])
    logs.bind(event_id=event_id)
    try:
        settings = Settings.from_env()
        email_request = parse_event(cloud_event)
        result = send_email(email_request, settings, idempotency_key=event_id)
    except InvalidRequest as error:
        logs.invalid_request(error.log_fields(), via=VIA)
        return
    except SendError as error:
        if not error.redeliver:
            logs.send_failed(error.log_fields(), severity="ERROR", via=VIA)
            return
        severity = "WARNING" if isinstance(error, TransientError) else "ERROR"
        logs.send_failed({**error.log_fields(), "redeliver": True}, severity=severity, via=VIA)
        kind = (
            "transient failure"
            if error.disposition is Disposition.UNAVAILABLE
            else ("misconfiguration")
        )
        raise RedeliveryRequested(f"{kind}: {error.reason}") from None
    logs.sent(
        message_id=result.message_id,
        accepted=result.accepted,
        refused=result.refused_json(),
        via=VIA,
    )
