"""The seed's way of sending, as a bare Cloud Run function: a new SMTP session for every message.

The benchmark serves it with functions-framework (``--source bench/seed_function.py --target
send``) as the baseline for smtp-sender: it reads the same secret through the same
google-cloud-secret-manager client, builds a plain MIME message with the standard library and
sends it with ``smtplib.SMTP_SSL`` + login + send_message + quit. What a careful bare function keeps
between requests it keeps too (the client, the parsed profile, the TLS context), so the one
difference left is the session per message.

POST ``{"to": .., "subject": .., "text": ..}`` -> 200 ``{"status": "sent", "message_id": ..}``.
Environment: ``SMTP_SECRET`` (``projects/P/secrets/S``), ``SECRET_MANAGER_EMULATOR_HOST`` (the
stand-in; unset = the real service), ``SMTP_CA_FILE`` (extra CA), ``SMTP_TIMEOUT_S``.

Self-contained on purpose (standard library, functions-framework, the Secret Manager client): its
cold start is what a bare function pays, nothing of smtp-sender is imported.
"""

from __future__ import annotations

import functools
import json
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import flask
import functions_framework
from google.cloud import secretmanager


def secret_manager_client(emulator_host: str | None) -> Any:
    """The real client; over a plaintext channel to *emulator_host* when one is given."""
    if not emulator_host:
        return secretmanager.SecretManagerServiceClient()
    import grpc
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    return secretmanager.SecretManagerServiceClient(transport=transport)


def read_profile(client: Any, secret: str) -> dict[str, Any]:
    """The newest version of *secret* (``projects/P/secrets/S``), parsed as the profile JSON."""
    response = client.access_secret_version(name=f"{secret}/versions/latest")
    profile: dict[str, Any] = json.loads(response.payload.data)
    return profile


def build_message(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text message with the headers every sender sets."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">") or None)
    message.set_content(text)
    return message


def send_in_new_session(
    profile: dict[str, Any], context: ssl.SSLContext, message: EmailMessage, timeout: float
) -> None:
    """Connect (implicit TLS), log in, send, quit: the whole session for one message."""
    with smtplib.SMTP_SSL(
        profile["host"], int(profile["port"]), context=context, timeout=timeout
    ) as smtp:
        smtp.login(profile["username"], profile["password"])
        smtp.send_message(message)


# What the instance keeps while warm (created by the first request, as smtp-sender does).
@functools.cache
def _profile() -> dict[str, Any]:
    client = secret_manager_client(os.environ.get("SECRET_MANAGER_EMULATOR_HOST"))
    return read_profile(client, os.environ["SMTP_SECRET"])


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ.get("SMTP_CA_FILE") or None)


@functions_framework.http
def send(request: flask.Request) -> flask.Response:
    """Send one message in its own SMTP session."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("to", "text")):
        return flask.make_response(flask.jsonify(error="invalid_request"), 400)
    profile = _profile()
    message = build_message(profile["from"], body["to"], body.get("subject", ""), body["text"])
    timeout = float(os.environ.get("SMTP_TIMEOUT_S", "20"))
    send_in_new_session(profile, _tls_context(), message, timeout)
    return flask.jsonify(status="sent", message_id=message["Message-ID"])
