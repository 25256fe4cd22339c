"""Google Cloud Monitoring's notification (schema 1.2) -> a notification rendered by
`cloud-monitoring`.

Cloud Monitoring sends `{"incident": {...}, "version": "1.2"}` to a webhook channel
(`POST /cloud-monitoring?to=..`, HTTP Basic with the token as password) and publishes the same
JSON to a Pub/Sub channel's topic, which the Pub/Sub trigger recognises
(`pubsub_payload.is_notification`) and sends to `ALERT_RECIPIENTS`. The "send test notification"
button sends `"version": "test"` with an upper-case state and a plain-string documentation; both
forms are accepted.

An incident (`incident_id`) is one conversation: open, then closed. The key of one notification is
the incident, its state and the recipients.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sender import alert_group
from sender.alert_group import Notification

SOURCE = "cloud-monitoring"
TEMPLATE = "cloud-monitoring"


class _Link(BaseModel):
    model_config = ConfigDict(extra="allow")

    displayName: str = ""  # noqa: N815 - Cloud Monitoring's field names
    url: str = ""


class _Documentation(BaseModel):
    model_config = ConfigDict(extra="allow")

    content: str = ""
    mime_type: str | None = None
    subject: str | None = None
    links: list[_Link] = Field(default_factory=list)


class _Incident(BaseModel):
    model_config = ConfigDict(extra="allow")

    incident_id: str = Field(min_length=1)
    state: Literal["open", "closed"]
    scoping_project_id: str | None = None
    url: str | None = None
    started_at: int | None = None
    ended_at: int | None = None
    policy_name: str = ""
    condition_name: str = ""
    summary: str = ""
    severity: str | None = None
    observed_value: str | None = None
    threshold_value: str | None = None
    resource_name: str | None = None
    resource_display_name: str | None = None
    resource_type_display_name: str | None = None
    documentation: _Documentation | None = None
    policy_user_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value  # test notifications: "OPEN"

    @field_validator("observed_value", "threshold_value", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("documentation", mode="before")
    @classmethod
    def _documentation(cls, value: Any) -> Any:
        return {"content": value} if isinstance(value, str) else value  # test notifications


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    incident: _Incident
    version: str


def _time(epoch_s: int | None) -> str:
    """Seconds since the epoch as a UTC time; "" for none (0 in test notifications) or for a
    number no calendar holds (a hostile body must not turn into a 500)."""
    if epoch_s is None or epoch_s <= 0:
        return ""
    try:
        return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return ""


def _template_data(validated: _Payload) -> dict[str, Any]:
    incident = validated.incident.model_dump(exclude_none=True)
    incident["started"] = _time(validated.incident.started_at)
    incident["ended"] = _time(validated.incident.ended_at)
    return {"incident": incident, "version": validated.version}


def notification(payload: Any, recipients: list[str]) -> Notification:
    """Validate a Cloud Monitoring notification and turn it into a threaded, keyed email."""
    alert_group.require_recipients(recipients)
    validated = alert_group.validate(_Payload, payload, "a Cloud Monitoring notification")
    incident = validated.incident
    return alert_group.grouped_notification(
        SOURCE,
        template=TEMPLATE,
        data=_template_data(validated),
        recipients=recipients,
        group=[incident.incident_id],
        status=incident.state,
        alerts=[],
        thread=[incident.scoping_project_id or "", incident.incident_id],
    )
