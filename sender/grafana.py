"""Grafana Alerting's webhook contact point payload -> a notification rendered by `grafana`.

Grafana's body is Alertmanager's plus what Grafana knows: a rendered `title` and `message`, each
alert's `values` (the query results that fired it), and links to the dashboard, the panel, a
silence and a panel screenshot (`imageURL`). `POST /grafana?to=ops@example.com` keeps them all.
Threading and idempotency are as for Alertmanager (`groupKey`, per organisation).

Note for templates: in Jinja `alert.values` is the dict's method; write `alert['values']`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sender import alert_group
from sender.alert_group import Notification
from sender.errors import InvalidRequestError
from sender.message import field_problems, parse_request

SOURCE = "grafana"
TEMPLATE = "grafana"
# Grafana's "no end yet" time, sent for firing alerts.
_ZERO_TIME = "0001-01-01T00:00:00Z"


class _Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None  # noqa: N815 - Grafana's field names
    endsAt: str | None = None  # noqa: N815
    values: dict[str, float | int | str | None] | None = None
    generatorURL: str | None = None  # noqa: N815
    fingerprint: str | None = None
    silenceURL: str | None = None  # noqa: N815
    dashboardURL: str | None = None  # noqa: N815
    panelURL: str | None = None  # noqa: N815
    imageURL: str | None = None  # noqa: N815

    def identity(self) -> tuple[str, str]:
        fingerprint = self.fingerprint or alert_group.label_fingerprint(self.labels)
        return fingerprint, self.startsAt or ""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    alerts: list[_Alert] = Field(min_length=1)
    receiver: str = ""
    orgId: int | None = None  # noqa: N815
    groupKey: str | None = None  # noqa: N815
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str | None = None  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    title: str = ""
    message: str = ""

    def group(self) -> list[str]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.groupLabels.items()))
        return [
            str(self.orgId if self.orgId is not None else ""),
            self.receiver,
            self.groupKey if self.groupKey is not None else labels,
        ]


def _template_data(validated: _Payload) -> dict[str, Any]:
    data = validated.model_dump(exclude_none=True)
    for alert in data["alerts"]:
        if alert.get("endsAt") == _ZERO_TIME:
            del alert["endsAt"]  # "no end yet" is not a time to show
        for link in ("silenceURL", "dashboardURL", "panelURL", "imageURL", "generatorURL"):
            if not alert.get(link):
                alert.pop(link, None)  # Grafana sends "" for links it has not got
    data["firing_count"] = sum(1 for alert in validated.alerts if alert.status == "firing")
    return data


def notification(payload: Any, recipients: list[str]) -> Notification:
    """Validate a Grafana webhook body and turn it into a threaded, keyed email."""
    alert_group.require_recipients(recipients)
    if not isinstance(payload, dict):
        raise InvalidRequestError.one("body", "must be a Grafana webhook JSON object")
    try:
        validated = _Payload.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequestError(field_problems(exc)) from None
    request = parse_request(
        {"to": recipients, "template": TEMPLATE, "data": _template_data(validated)}
    )
    group = validated.group()
    return Notification(
        request=request.in_thread(alert_group.thread_id(SOURCE, *group)),
        source=SOURCE,
        key=alert_group.notification_key(
            SOURCE,
            group=group,
            status=validated.status,
            alerts=[alert.identity() for alert in validated.alerts],
            recipients=recipients,
        ),
        status=validated.status,
        alert_count=len(validated.alerts),
    )
