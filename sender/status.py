"""A key's fate as callers see it: `GET /messages/<key>` and the JSON shared with outcome events.

The ledger (`sender.ledger.describe`) decides the state; this module only says where the key is in
the URL and how a `Status` looks as JSON. Times are RFC 3339 in UTC; a time a record does not know
(written before attempt times were kept) is null. Nothing here ever holds a message body: the
ledger never stores one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sender import ledger_keys
from sender.errors import InvalidRequestError
from sender.ledger import Failure, Status
from sender.message import check_idempotency_key
from sender.outcome import refused_json

PATH_PREFIX = "/messages/"


def is_status_path(path: str) -> bool:
    return path.startswith(PATH_PREFIX)


def ledger_key(path: str, args: Mapping[str, str]) -> str:
    """`/messages/<key>` (+ `?trigger=http|pubsub|pubsub-batch`, default http) -> the namespaced
    ledger key (`sender.ledger_keys`; a Pub/Sub batch's item is `<key>:<i>?trigger=pubsub-batch`).

    The key is everything after the prefix, already percent-decoded by the server, so a key
    holding `/`, `?` or `#` is asked for with those characters percent-encoded."""
    trigger = args.get("trigger", ledger_keys.HTTP)
    if trigger not in ledger_keys.LOOKUP:
        raise InvalidRequestError.one("trigger", f"must be one of {', '.join(ledger_keys.LOOKUP)}")
    key = check_idempotency_key(path.removeprefix(PATH_PREFIX), "key")
    return ledger_keys.in_namespace(trigger, key)


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def failure_json(failure: Failure) -> dict[str, Any]:
    """How the last attempt failed, shaped like the error answers: `error`, `detail`, SMTP reply."""
    body: dict[str, Any] = {"error": failure.error, "detail": failure.detail}
    if failure.smtp_code is not None:
        body["smtp_code"] = failure.smtp_code
    if failure.smtp_message:
        body["smtp_message"] = failure.smtp_message
    return body


def answer(status: Status) -> dict[str, Any]:
    """The body of `200 GET /messages/<key>`."""
    body: dict[str, Any] = {
        "state": status.state,
        "message_id": status.message_id,
        "accepted": list(status.accepted),
        "refused": refused_json(status.refused),
        "owed": list(status.owed),
        "attempts": status.attempts,
        "first_attempt_at": rfc3339(status.first_attempt_at),
        "last_attempt_at": rfc3339(status.last_attempt_at),
    }
    if status.failure is not None:
        body["last_error"] = failure_json(status.failure)
    return body
