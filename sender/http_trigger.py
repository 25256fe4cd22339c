"""The HTTP trigger: a JSON request in, a JSON response out, statuses exactly as README's table.

Routes (`sender.webhook_routes`; every other path is the message endpoint, so a caller posting
to `/send` still works):
- `POST /alertmanager`, `/grafana`, `/cloud-monitoring` `?to=addr[,addr]` — each system's own
  webhook body; `POST /hook/<template>?to=..` — any JSON object through the user's template;
- `POST /batch` — `{"messages": [..]}`, one result per message (`sender.batch`);
- `POST` anything else — the message JSON;
- `GET /messages/<key>[?trigger=pubsub|pubsub-batch]` — the ledger's record of a key
  (`sender.status`), with the same credential check as sending. Any other method is a 405.

Order of checks: method, body size, webhook credential (when `WEBHOOK_SECRET` is set: nothing
about the request is looked at before it), content type, JSON, the message itself (on `/batch`:
the batch, then each message alone).
"""

from __future__ import annotations

from typing import Any

import flask

from sender import (
    batch,
    instance,
    ledger_keys,
    logs,
    status,
    webhook_auth,
    webhook_delivery,
    webhook_routes,
)
from sender.config import Settings
from sender.errors import (
    ConfigurationError,
    InvalidRequestError,
    MessageTooLargeError,
    SendError,
    TransientError,
    UnsupportedMediaTypeError,
    WebhookForbiddenError,
    WebhookStaleTimestampError,
    WebhookUnauthorizedError,
)
from sender.exactly_once import Delivery, send_once
from sender.message import EmailRequest, check_idempotency_key, decode_json, parse_request

VIA = "http"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Both challenges: a client that sends Basic only after a challenge (Cloud Monitoring) gets one.
WWW_AUTHENTICATE = 'Bearer realm="smtp-sender", Basic realm="smtp-sender"'


def _json(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> flask.Response:
    return flask.Response(
        logs.json_text(body),
        status=status,
        headers=headers or {},
        mimetype="application/json",
    )


def _error(error: SendError) -> flask.Response:
    headers = {}
    if isinstance(error, TransientError):
        headers["Retry-After"] = str(error.retry_after_s)
    return _json(error.response_body(), error.http_status, headers)


def _read_body(request: flask.Request, max_bytes: int) -> bytes:
    """The raw body, refusing more than `max_bytes` before reading it all."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise MessageTooLargeError.one("body", f"the request body exceeds {max_bytes} bytes")
    # Read at most one byte past the limit: a chunked body without Content-Length is bounded too.
    raw: bytes = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise MessageTooLargeError.one("body", f"the request body exceeds {max_bytes} bytes")
    return raw


def _parse_json(request: flask.Request, raw: bytes) -> Any:
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError.one("Content-Type", "send the message as application/json")
    return decode_json(raw, "body")


def _idempotency_key(request: flask.Request, body_key: str | None) -> str | None:
    header_key = request.headers.get(IDEMPOTENCY_HEADER)
    if header_key is not None:
        header_key = check_idempotency_key(header_key, IDEMPOTENCY_HEADER)
    if header_key and body_key and header_key != body_key:
        raise InvalidRequestError.one(
            "idempotency_key", f"differs from the {IDEMPOTENCY_HEADER} header"
        )
    return body_key or header_key


def _deliver(request: flask.Request, document: Any, settings: Settings) -> Delivery:
    """Send the message JSON, or a webhook body its route turns into one."""
    route = webhook_routes.find(request.path)
    if route is None:
        email_request = parse_request(document)
        key = _idempotency_key(request, email_request.idempotency_key)
        return send_once(email_request, settings, ledger_key=_ledger_key(key))
    notification = route(document, request.args.getlist("to"), settings)
    key = _idempotency_key(request, None)  # the caller's own key wins over the body's
    return webhook_delivery.send(notification, settings, caller_key=_ledger_key(key))


def _ledger_key(key: str | None) -> str | None:
    """The ledger key of an HTTP caller's key (none: never deduplicated)."""
    return None if key is None else ledger_keys.http(key)


def _item_key(_index: int, email_request: EmailRequest) -> str | None:
    """A batch item's ledger key: its own `idempotency_key`, in the single messages' namespace."""
    return _ledger_key(email_request.idempotency_key)


def _batch(request: flask.Request, document: Any, settings: Settings) -> flask.Response:
    """`POST /batch`: 200 with one result per message (see `sender.batch`)."""
    if request.headers.get(IDEMPOTENCY_HEADER) is not None:
        # One key for many messages would make them one email; each message carries its own.
        raise InvalidRequestError.one(
            IDEMPOTENCY_HEADER, "not taken on /batch: give each message its own idempotency_key"
        )
    messages = batch.messages_of(document, settings.max_batch)
    results = batch.send_all(messages, settings, via=VIA, key_of=_item_key)
    return _json({"results": [result.answer() for result in results]}, 200)


def _success(delivery: Delivery) -> flask.Response:
    """200: sent, partial, or duplicate (the stored outcome of the first send; nothing sent now)."""
    result = delivery.result
    if delivery.duplicate:
        logs.duplicate(message_id=result.message_id, accepted_count=len(result.accepted), via=VIA)
    else:
        logs.sent(result, via=VIA)
    return _json(delivery.answer(), 200)


def _check_webhook_credential(
    settings: Settings, request: flask.Request, raw: bytes
) -> flask.Response | None:
    """401/403 when `WEBHOOK_SECRET` is set and the request is not authentic; else None."""
    try:
        store = instance.webhook_token_store(settings)
        if store is None:
            return None
        webhook_auth.verify(store, dict(request.headers.items()), raw)
    except SendError as error:
        # The caller is not authenticated yet: the details (secret names, paths) go to the log
        # for the operator, the response says only what kind of failure it was.
        logs.send_failed(error, via=VIA)
        if isinstance(error, TransientError):
            raise TransientError("the webhook credential cannot be checked right now") from None
        raise ConfigurationError("the webhook credential cannot be checked") from None
    except WebhookUnauthorizedError:
        logs.webhook_rejected(reason="no credential", via=VIA)
        return _json({"error": "unauthorized"}, 401, {"WWW-Authenticate": WWW_AUTHENTICATE})
    except WebhookStaleTimestampError:
        logs.webhook_rejected(reason="signature timestamp too far from now", via=VIA)
        return _json({"error": "unauthorized"}, 403)
    except WebhookForbiddenError:
        logs.webhook_rejected(reason="wrong credential", via=VIA)
        return _json({"error": "unauthorized"}, 403)
    return None


def _status_lookup(request: flask.Request) -> flask.Response:
    """`GET /messages/<key>`: 200 with the record, 404 `not_found`; credentials as for sending."""
    try:
        settings = Settings.from_env()
        refusal = _check_webhook_credential(settings, request, b"")
        if refusal is not None:
            return refusal
        ledger_key = status.ledger_key(request.path, request.args)
        found = instance.ledger(settings).status(ledger_key)
    except InvalidRequestError as error:
        logs.invalid_request(error.log_fields(), via=VIA)
        return _error(error)
    except SendError as error:  # the ledger unreachable (503), a setting wrong (500)
        severity = "WARNING" if isinstance(error, TransientError) else "ERROR"
        logs.status_lookup_failed(error.log_fields(), severity=severity, via=VIA)
        return _error(error)
    except Exception as exc:  # noqa: BLE001 - a bug must still answer JSON, without details
        logs.internal_error(exc, via=VIA)
        return _json({"error": "internal"}, 500)
    if found is None:
        return _json({"error": "not_found"}, 404)
    # The answer changes as attempts go on: no cache in between may keep an old one.
    return _json(status.answer(found), 200, {"Cache-Control": "no-store"})


def _not_post(request: flask.Request) -> flask.Response:
    """Any method but POST: the status lookup for `GET /messages/<key>`, else 405."""
    on_status_path = status.is_status_path(request.path)
    if request.method == "GET" and on_status_path:
        return _status_lookup(request)
    allowed = "GET, POST" if on_status_path else "POST"
    return _json({"error": "method_not_allowed"}, 405, {"Allow": allowed})


def handle(request: flask.Request) -> flask.Response:
    logs.clear()
    if request.method != "POST":
        return _not_post(request)
    try:
        settings = Settings.from_env()
        logs.bind(
            **logs.trace_field(
                request.headers.get("X-Cloud-Trace-Context"), settings.google_cloud_project
            )
        )
        raw = _read_body(request, settings.max_message_bytes)
        refusal = _check_webhook_credential(settings, request, raw)
        if refusal is not None:
            return refusal
        document = _parse_json(request, raw)
        outcome: Delivery | flask.Response
        if batch.is_batch_path(request.path):
            outcome = _batch(request, document, settings)
        else:
            outcome = _deliver(request, document, settings)
    except InvalidRequestError as error:
        logs.invalid_request(error.log_fields(), via=VIA)
        return _error(error)
    except SendError as error:
        logs.send_failed(error, via=VIA)
        return _error(error)
    except Exception as exc:  # noqa: BLE001 - a bug must still answer JSON, without details
        logs.internal_error(exc, via=VIA)
        return _json({"error": "internal"}, 500)
    return outcome if isinstance(outcome, flask.Response) else _success(outcome)
