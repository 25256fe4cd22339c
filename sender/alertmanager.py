"""Alertmanager's webhook payload -> an email request, rendered by the `alertmanager` template.

Alertmanager cannot be taught our message JSON, so the HTTP trigger accepts its native webhook
body on `POST /alertmanager?to=ops@example.com` (recipients in the URL of the `webhook_configs`
entry, repeatable or comma-separated). The payload is validated first, so a malformed one is a
400 naming the field, never a half-rendered email.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sender.errors import InvalidRequestError
from sender.message import EmailRequest, field_problems, parse_request

TEMPLATE = "alertmanager"


class _Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None  # noqa: N815 - Alertmanager's field names
    endsAt: str | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    alerts: list[_Alert] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str | None = None  # noqa: N815


def to_request(payload: Any, recipients: list[str]) -> EmailRequest:
    """Validate an Alertmanager webhook body and turn it into an `EmailRequest`."""
    if not recipients:
        raise InvalidRequestError.one("to", "add ?to=address to the webhook URL")
    if not isinstance(payload, dict):
        raise InvalidRequestError.one("body", "must be an Alertmanager webhook JSON object")
    try:
        validated = _Payload.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequestError(field_problems(exc)) from None
    return parse_request(
        {"to": recipients, "template": TEMPLATE, "data": validated.model_dump(exclude_none=True)}
    )
