"""Alertmanager's webhook payload (version 4) -> a notification rendered by `alertmanager`.

Alertmanager cannot be taught our message JSON, so the HTTP trigger accepts its native webhook
body on `POST /alertmanager?to=ops@example.com` (recipients in the URL of the `webhook_configs`
entry, repeatable or comma-separated). The payload is validated first, so a malformed one is a
400 naming the field, never a half-rendered email. Every notification of one group (`groupKey`)
joins one conversation; its key is the group, the status and each alert's fingerprint and start
time (`sender.alert_group`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sender import alert_group
from sender.alert_group import Notification

SOURCE = "alertmanager"
TEMPLATE = "alertmanager"


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None  # noqa: N815 - Alertmanager's field names
    endsAt: str | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815
    fingerprint: str | None = None

    def identity(self) -> tuple[str, str]:
        fingerprint = self.fingerprint or alert_group.label_fingerprint(self.labels)
        return fingerprint, self.startsAt or ""


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    alerts: Sequence[Alert] = Field(min_length=1)
    receiver: str = ""
    groupKey: str | None = None  # noqa: N815
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str | None = None  # noqa: N815

    def group(self) -> list[str]:
        """The group: `groupKey` (it already names the route), or its labels when absent."""
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.groupLabels.items()))
        return [self.receiver, self.groupKey if self.groupKey is not None else labels]


def notification(payload: Any, recipients: list[str]) -> Notification:
    """Validate an Alertmanager webhook body and turn it into a threaded, keyed email."""
    alert_group.require_recipients(recipients)
    validated = alert_group.validate(Payload, payload, "an Alertmanager webhook")
    return alert_group.grouped_notification(
        SOURCE,
        template=TEMPLATE,
        data=validated.model_dump(exclude_none=True),
        recipients=recipients,
        group=validated.group(),
        status=validated.status,
        alerts=[alert.identity() for alert in validated.alerts],
    )
