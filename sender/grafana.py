"""Grafana Alerting's webhook contact point payload -> a notification rendered by `grafana`.

Grafana's body is Alertmanager's plus what Grafana knows: a rendered `title` and `message`, each
alert's `values` (the query results that fired it), and links to the dashboard, the panel, a
silence and a panel screenshot (`imageURL`). `POST /grafana?to=ops@example.com` keeps them all.
Threading and idempotency are as for Alertmanager (`groupKey`, per organisation).

Note for templates: in Jinja `alert.values` is the dict's method; write `alert['values']`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from sender import alert_group, alertmanager
from sender.alert_group import Notification

SOURCE = "grafana"
TEMPLATE = "grafana"
# Grafana's "no end yet" time, sent for firing alerts.
_ZERO_TIME = "0001-01-01T00:00:00Z"


class _Alert(alertmanager.Alert):
    """Alertmanager's alert, plus Grafana's query values and links."""

    values: dict[str, float | int | str | None] | None = None
    silenceURL: str | None = None  # noqa: N815 - Grafana's field names
    dashboardURL: str | None = None  # noqa: N815
    panelURL: str | None = None  # noqa: N815
    imageURL: str | None = None  # noqa: N815


class _Payload(alertmanager.Payload):
    """Alertmanager's body, plus Grafana's organisation, rendered title and message."""

    alerts: Sequence[_Alert] = Field(min_length=1)
    orgId: int | None = None  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    title: str = ""
    message: str = ""

    def group(self) -> list[str]:
        """Alertmanager's group, within the Grafana organisation."""
        return [str(self.orgId if self.orgId is not None else ""), *super().group()]


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
    validated = alert_group.validate(_Payload, payload, "a Grafana webhook")
    return alert_group.grouped_notification(
        SOURCE,
        template=TEMPLATE,
        data=_template_data(validated),
        recipients=recipients,
        group=validated.group(),
        status=validated.status,
        alerts=[alert.identity() for alert in validated.alerts],
    )
