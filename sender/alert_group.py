"""What the alert sources share: recipients, and the two identities of a notification.

An alerting system (Alertmanager, Grafana, Cloud Monitoring) sends several notifications about one
alert *group* (an incident): firing, maybe firing again with more alerts, resolved.

- The group is the conversation (`thread`): every notification of it carries the same threading
  headers (`sender.thread_headers`), so mail clients show firing and resolved together.
- One notification is one email (`key`): the same group, status and alerts (each alert's
  fingerprint and start time) and the same recipients. A caller retrying a notification it got no
  answer for sends the same key, and the idempotency ledger answers `duplicate`
  (`sender.webhook_delivery` decides for how long).

Keys and thread ids are hashes, so label values never reach a ledger document id or a log line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sender.addresses import parse_mailbox
from sender.errors import AddressError, ConfigurationError, InvalidRequestError
from sender.message import EmailRequest, check_text, field_problems, parse_request

Payload = TypeVar("Payload", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Notification:
    """A webhook body turned into an email, with what is needed to send it once."""

    request: EmailRequest
    source: str  # "alertmanager", "grafana", "cloud-monitoring", "hook"
    # The notification's own idempotency key (hashed); None: every request sends (`/hook`).
    key: str | None = None
    status: str | None = None  # firing/resolved, open/closed (for the log line)
    alert_count: int = 0


def split_recipients(values: Iterable[str]) -> list[str]:
    """`["a@x.org,b@x.org", "c@x.org"]` (repeated or comma-separated) -> the three addresses."""
    return [address.strip() for value in values for address in value.split(",") if address.strip()]


def configured_recipients(setting: str | None) -> list[str]:
    """`ALERT_RECIPIENTS` as addresses (possibly none). A typo is the operator's to fix, not the
    alert sender's: `ConfigurationError` (HTTP 500, Pub/Sub redelivers), never a 400 that
    Alertmanager and Grafana would drop the alert on. It names the entry, not its text."""
    recipients = split_recipients([setting or ""])
    for position, address in enumerate(recipients, start=1):
        try:
            parse_mailbox(address)
        except AddressError as exc:
            raise ConfigurationError(
                f"ALERT_RECIPIENTS entry {position} of {len(recipients)} is not a valid address "
                f"({exc})"
            ) from None
    return recipients


def require_recipients(recipients: list[str]) -> list[str]:
    if not recipients:
        raise InvalidRequestError.one(
            "to", "add ?to=address to the webhook URL (or set ALERT_RECIPIENTS)"
        )
    return recipients


def _hash(parts: Any) -> str:
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def thread_id(source: str, *group: str) -> str:
    """The conversation of one alert group of one source."""
    return f"{source}:{_hash(list(group))[:32]}"


def notification_key(
    source: str,
    *,
    group: Iterable[str],
    status: str,
    alerts: Iterable[tuple[str, str]],
    recipients: Iterable[str],
) -> str:
    """One notification: the group, its status, each alert's (fingerprint, start time), and to
    whom (the same body posted for two recipient lists is two emails)."""
    parts = {
        "group": list(group),
        "status": status,
        "alerts": sorted(set(alerts)),
        "to": sorted({address.lower() for address in recipients}),
    }
    return f"{source}:{_hash(parts)}"


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """A stand-in for an alert's fingerprint when the payload has none (older senders, tests):
    like Alertmanager's, it depends on the label set alone."""
    return _hash(sorted(labels.items()))[:16]


def validate(model: type[Payload], payload: Any, what: str) -> Payload:
    """A source's webhook body, validated: a 400 naming each bad field, never a half email."""
    if not isinstance(payload, dict):
        raise InvalidRequestError.one("body", f"must be {what} JSON object")
    # First: a label the model accepts may still be text no hash, log line or email can encode.
    check_text(payload)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequestError(field_problems(exc)) from None


def grouped_notification(
    source: str,
    *,
    template: str,
    data: dict[str, Any],
    recipients: list[str],
    group: list[str],
    status: str,
    alerts: list[tuple[str, str]],
    thread: list[str] | None = None,
) -> Notification:
    """The email for one notification of `group`: rendered by `template` from `data`, in the
    group's conversation (`thread`, default the group itself) and keyed as `notification_key`."""
    request = parse_request({"to": recipients, "template": template, "data": data})
    return Notification(
        request=request.in_thread(thread_id(source, *(thread if thread is not None else group))),
        source=source,
        key=notification_key(
            source, group=group, status=status, alerts=alerts, recipients=recipients
        ),
        status=status,
        alert_count=max(len(alerts), 1),
    )
