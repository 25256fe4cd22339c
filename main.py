"""Entry points for Cloud Run functions. All logic lives in the `sender` package."""

from __future__ import annotations

from typing import Any

import flask
import functions_framework

from sender import http_trigger, pubsub_trigger


@functions_framework.http
def send_http(request: flask.Request) -> flask.Response:
    """HTTP trigger: POST a message as JSON; see README.md for the responses."""
    return http_trigger.handle(request)


@functions_framework.cloud_event
def send_pubsub(cloud_event: Any) -> None:
    """Pub/Sub trigger: the message's data is the same JSON; failures worth retrying raise."""
    pubsub_trigger.handle(cloud_event)
