"""The Pub/Sub trigger: a CloudEvent carrying `MessagePublishedData`, acked or redelivered.

Returning acks the message. Raising makes functions-framework answer 500, so Pub/Sub (deployed with
`--retry`) delivers it again: that is what transient failures and misconfiguration do, so no alert
is lost while a provider recovers or an operator fixes the secret. Invalid messages and permanent
rejections are acked after one ERROR line: redelivering them would only loop.

The CloudEvent id is the idempotency key (`exactly_once.send_once`), unless the Pub/Sub message
carries an `idempotency_key` attribute, which replaces it (same `pubsub:` namespace): a dead letter
republished with its original message id as that attribute is recognised as that message. A
redelivered event is acked with an INFO line and sends nothing; while another delivery of it is
still sending, this one asks to be redelivered later. Recipients deferred with a 4xx make the event
come back for them alone. An attribute that is not 1 to 256 printable characters makes the message
invalid (one ERROR line, acked), as a bad key does over HTTP: falling back to the event id would
let a replay send twice without anyone noticing.
Events older than `MAX_EVENT_AGE_S` are dropped with a WARNING: a day-old alert is noise, not news.

Data `{"messages": [..]}` is a batch (`sender.batch`): item i's key is `<key>:<i>`, in a namespace
of its own (`pubsub-batch`: a single message keyed `<key>:<i>` is another email).
Every item is processed; then, if any item is owed a redelivery (transient, misconfigured, 4xx
recipients, not attempted in time), the event is redelivered, and the redelivery sends only those:
sent items answer `duplicate` from the ledger, items a server rejected are not tried again.
Invalid and rejected items are one ERROR line each and never by themselves redelivered.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from sender import batch, ledger_keys, logs, pubsub_payload
from sender.config import Settings
from sender.errors import (
    ClaimBusyError,
    Disposition,
    InvalidRequestError,
    RedeliveryRequestedError,
    SendError,
)
from sender.exactly_once import Delivery, send_once
from sender.message import check_idempotency_key, decode_json

VIA = "pubsub"
KEY_ATTRIBUTE = "idempotency_key"


def published_message(data: Any) -> dict[str, Any]:
    """The event's `MessagePublishedData` (an object, or its JSON as text or bytes, as a
    structured-mode event carries it), decoded once -> its `message` (data and attributes)."""
    if isinstance(data, bytes | str):
        data = decode_json(data, "event")
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise InvalidRequestError.one("message.data", "the Pub/Sub message has no data")
    return message


def decode_message_data(message: dict[str, Any]) -> Any:
    """The decoded JSON of a published message's base64 `data`; raises InvalidRequestError."""
    try:
        raw = base64.b64decode(message["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError.one("message.data", "is not valid base64") from None
    return decode_json(raw, "message.data")


def _deliver(document: Any, key: str, settings: Settings) -> Delivery | list[batch.ItemResult]:
    """A batch's items, else the message JSON or Cloud Monitoring's Pub/Sub channel notification
    (`pubsub_payload`)."""
    if batch.is_batch(document):
        return batch.send_all(
            batch.messages_of(document, settings.max_batch),
            settings,
            via=VIA,
            key_of=lambda index, _request: ledger_keys.pubsub_batch_item(key, index),
            redelivers=True,
        )
    email_request = pubsub_payload.to_request(document, settings)
    return send_once(email_request, settings, ledger_key=ledger_keys.pubsub(key))


def event_key(message: dict[str, Any], event_id: str) -> str:
    """The idempotency key: the message's `idempotency_key` attribute, else the event id."""
    attributes = message.get("attributes")
    value = attributes.get(KEY_ATTRIBUTE) if isinstance(attributes, dict) else None
    if value is None:
        return event_id
    if not isinstance(value, str):
        raise InvalidRequestError.one(f"attributes.{KEY_ATTRIBUTE}", "must be a string")
    return check_idempotency_key(value, f"attributes.{KEY_ATTRIBUTE}")


def event_age_s(cloud_event: Any, now: datetime | None = None) -> float | None:
    """Seconds since the event's `time` attribute (RFC 3339); None when it has no readable one."""
    raw = cloud_event.get("time")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        stamp = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - stamp).total_seconds()


def handle(cloud_event: Any) -> None:
    logs.clear()
    event_id = str(cloud_event["id"])
    logs.bind(event_id=event_id)
    try:
        settings = Settings.from_env()
        age_s = event_age_s(cloud_event)
        if age_s is not None and age_s > settings.max_event_age_s:
            logs.stale_event(
                event_id=event_id, age_s=age_s, max_event_age_s=settings.max_event_age_s
            )
            return
        message = published_message(cloud_event.data)
        key = event_key(message, event_id)
        if key != event_id:
            logs.bind(idempotency_key=key)
        outcome = _deliver(decode_message_data(message), key, settings)
    except ClaimBusyError as error:
        logs.claim_busy(retry_after_s=error.retry_after_s, via=VIA)
        raise RedeliveryRequestedError("another delivery of this event is in progress") from None
    except InvalidRequestError as error:
        logs.invalid_request(error.log_fields(), via=VIA)
        return
    except SendError as error:
        if not error.redeliver:
            logs.send_failed(error, via=VIA)
            return
        logs.send_failed(error, via=VIA, redeliver=True)
        kind = (
            "transient failure"
            if error.disposition is Disposition.UNAVAILABLE
            else "misconfiguration"
        )
        raise RedeliveryRequestedError(f"{kind}: {error.reason}") from None
    except Exception as exc:  # noqa: BLE001 - a bug: one ERROR line (type only), then redelivery
        # An unexpected error is ours, not the message's: keep the alert (redelivery, then the
        # dead-letter topic) rather than ack it away; its text could quote the body, so only the
        # type is logged and functions-framework sees our exception, not the original.
        logs.internal_error(exc, via=VIA)
        raise RedeliveryRequestedError(f"internal error ({type(exc).__name__})") from None
    if isinstance(outcome, list):  # a batch: each item was logged as it finished
        owed = sum(1 for item in outcome if item.redeliver)
        if owed:
            raise RedeliveryRequestedError(f"{owed} of {len(outcome)} batch items are still owed")
        return
    delivery = outcome
    result = delivery.result
    if delivery.duplicate:
        logs.duplicate(message_id=result.message_id, accepted_count=len(result.accepted), via=VIA)
        return
    logs.sent(result, via=VIA)
    if delivery.owed:
        logs.deferred_recipients(owed=list(delivery.owed), via=VIA)
        raise RedeliveryRequestedError("some recipients were deferred (4xx)")
