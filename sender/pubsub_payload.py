"""What a Pub/Sub message's data may be: the message JSON, or a notification that Cloud
Monitoring's Pub/Sub channel published to the same topic.

A Cloud Monitoring notification carries no recipients: it goes to `ALERT_RECIPIENTS`. Without
them (or with an entry that is not an address) it is a valid alert with nowhere to go — a
misconfiguration, which the Pub/Sub trigger answers as it does a missing secret (ERROR line,
redelivery), so the alert waits for the operator instead of being acked away; the retry window
and the dead-letter topic bound the wait.
"""

from __future__ import annotations

from typing import Any

from sender.config import Settings
from sender.errors import ConfigurationError
from sender.message import EmailRequest, parse_request


def is_notification(document: Any) -> bool:
    """Whether a Pub/Sub message's JSON is a Cloud Monitoring notification, not our message.

    Our message never has an `incident` field (unknown fields are refused), and every Cloud
    Monitoring notification has both `incident` and `version`: no JSON is both."""
    return isinstance(document, dict) and "incident" in document and "version" in document


def to_request(document: Any, settings: Settings) -> EmailRequest:
    """The decoded JSON of a Pub/Sub message -> the email it asks for."""
    if not is_notification(document):
        return parse_request(document)
    # Imported on the first notification: a cold instance that only ever gets messages does not
    # build Cloud Monitoring's pydantic models (cold start, issue 11).
    from sender import cloud_monitoring, webhook_delivery  # noqa: PLC0415
    from sender.alert_group import configured_recipients  # noqa: PLC0415

    recipients = configured_recipients(settings.alert_recipients)
    if not recipients:
        raise ConfigurationError(
            "a Cloud Monitoring notification arrived but ALERT_RECIPIENTS is not set"
        )
    notification = cloud_monitoring.notification(document, recipients)
    webhook_delivery.log_received(notification)
    return notification.request
