"""Structured log lines for Cloud Logging, and every log message the function writes.

Cloud Run forwards stdout to Cloud Logging and parses one JSON object per line: `severity` and
`message` become the entry's severity and summary, `logging.googleapis.com/trace` links the entry to
the request's trace. Keeping every message in this module makes it easy to audit what is logged:
addresses, ids, counts, SMTP reply codes and reasons — never a password, a token or a body.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from sender.errors import SendError, TransientError
from sender.outcome import SendResult

# Fields every line of the current invocation carries (event id, trace); set by the triggers.
_context: ContextVar[Mapping[str, Any] | None] = ContextVar("log_context", default=None)
_write_lock = threading.Lock()


def bind(**fields: Any) -> None:
    """Attach fields (e.g. `event_id`, trace) to every line written during this invocation."""
    current = dict(_context.get() or {})
    current.update({k: v for k, v in fields.items() if v is not None})
    _context.set(current)


def clear() -> None:
    _context.set(None)


def trace_field(header: str | None, project: str | None) -> dict[str, str]:
    """`X-Cloud-Trace-Context: TRACE/SPAN;o=1` -> the field Cloud Logging links to the trace."""
    if not header:
        return {}
    trace_id = header.split("/", 1)[0].strip()
    if not trace_id or not trace_id.isalnum():
        return {}
    value = f"projects/{project}/traces/{trace_id}" if project else trace_id
    return {"logging.googleapis.com/trace": value}


def json_text(value: Any) -> str:
    """`value` as JSON text that always encodes as UTF-8: non-ASCII text stays readable, and an
    unpaired surrogate a caller sent (JSON allows `\\ud800`) is written as that escape again
    instead of making the line (or an HTTP answer) fail to encode."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    # A surrogate only occurs inside a JSON string, where `\\udXXX` is its valid escape.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write(severity: str, message: str, **fields: Any) -> None:
    entry: dict[str, Any] = {"severity": severity, "message": message}
    entry.update(_context.get() or {})
    entry.update({k: v for k, v in fields.items() if v is not None})
    line = json_text(entry)
    with _write_lock:  # threaded workers must not interleave half lines
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --- the messages ---------------------------------------------------------------------------


def sent(result: SendResult, *, via: str) -> None:
    """The outcome line: message id, accepted count and addresses, and the refused dict."""
    write(
        "WARNING" if result.refused else "INFO",
        "email partially sent" if result.refused else "email sent",
        message_id=result.message_id,
        accepted_count=len(result.accepted),
        accepted=result.accepted,
        refused=result.refused_json(),
        trigger=via,
    )


def send_failed(error: SendError, *, via: str, **extra: Any) -> None:
    """A failed send: WARNING when it is worth retrying (transient), ERROR when someone must act."""
    severity = "WARNING" if isinstance(error, TransientError) else "ERROR"
    write(severity, error.log_message, trigger=via, **error.log_fields(), **extra)


def invalid_request(fields: Mapping[str, Any], *, via: str) -> None:
    write("ERROR" if via == "pubsub" else "WARNING", "invalid email request", trigger=via, **fields)


def rejected_before(error: SendError, *, via: str) -> None:
    """A batch item that an earlier delivery of its batch saw rejected (its ERROR line was written
    then): answered again, not tried again (`AlreadyRejectedError`)."""
    write("INFO", error.log_message, trigger=via, **error.log_fields())


def batch_done(
    *,
    count: int,
    counts: Mapping[str, int],
    not_attempted: int,
    all_delivered: bool,
    elapsed_s: float,
    via: str,
) -> None:
    """One line per batch: how many items, and what each kind of outcome counted (`sent`,
    `partial`, `duplicate`, `invalid_request`, `rejected`, `unavailable`, `misconfigured`,
    `internal`); WARNING when any item was not delivered."""
    write(
        "INFO" if all_delivered else "WARNING",
        "batch done",
        count=count,
        outcomes=dict(counts),
        not_attempted=not_attempted or None,
        elapsed_ms=round(1000 * elapsed_s),
        trigger=via,
    )


def auth_failed_rereading_secret() -> None:
    write("WARNING", "SMTP authentication failed; re-reading the secret once")


def auth_failed_secret_unchanged() -> None:
    write("ERROR", "SMTP authentication failed and the secret has not changed; not retrying")


def oauth2_token_refused(*, flow: str) -> None:
    """The SMTP server refused a cached access token: one fresh token, one more try."""
    write("WARNING", "SMTP server refused the OAuth2 token; fetching a fresh one", flow=flow)


def idp_refused_rereading_secret(*, flow: str, code: str) -> None:
    write(
        "WARNING",
        "the identity provider refused the oauth2 client; re-reading the secret once",
        flow=flow,
        code=code,
    )


def idp_refused_secret_unchanged(*, flow: str, code: str) -> None:
    write(
        "ERROR",
        "the identity provider refused the oauth2 client and the secret has not changed; "
        "not retrying",
        flow=flow,
        code=code,
    )


def secret_read(*, source: str, version: str | None) -> None:
    write("DEBUG", "SMTP profile loaded", source=source, secret_version=version)


def webhook_rejected(*, reason: str, via: str) -> None:
    write("WARNING", "webhook credential refused", reason=reason, trigger=via)


def notification_received(
    *, source: str, status: str | None, alert_count: int, thread: str | None
) -> None:
    """A webhook body (or Cloud Monitoring's Pub/Sub notification) was understood: its source,
    status and size, and its conversation (a hash of the alert group: no label value)."""
    write(
        "INFO",
        "notification received",
        source=source,
        status=status,
        alert_count=alert_count,
        thread=thread,
    )


def internal_error(exc: BaseException, *, via: str) -> None:
    # Only the type: an arbitrary exception's text could quote a message body or a secret.
    write("ERROR", "internal error", error_type=type(exc).__name__, trigger=via)


# --- idempotency (see sender/ledger.py) ---------------------------------------------------------


def duplicate(*, message_id: str, accepted_count: int, via: str) -> None:
    write(
        "INFO",
        "duplicate delivery; the email was already sent",
        message_id=message_id,
        accepted_count=accepted_count,
        trigger=via,
    )


def claim_busy(*, retry_after_s: int, via: str) -> None:
    write(
        "INFO",
        "another delivery of this key is sending right now; retry later",
        retry_after_s=retry_after_s,
        trigger=via,
    )


def claim_taken_over(*, attempt: int) -> None:
    write(
        "WARNING", "took over an expired claim: an earlier attempt did not finish", attempt=attempt
    )


def resuming_partial_send(*, owed: list[str], accepted_count: int) -> None:
    write(
        "INFO",
        "resuming a partial send: only to the recipients still owed",
        owed=owed,
        accepted_count=accepted_count,
    )


def deferred_recipients(*, owed: list[str], via: str) -> None:
    write(
        "WARNING",
        "some recipients were deferred (4xx); redelivering for them only",
        owed=owed,
        trigger=via,
    )


def sent_not_recorded(*, error_type: str, deferred: list[str]) -> None:
    write(
        "ERROR",
        "email sent but the idempotency ledger did not record it; a redelivery may repeat it",
        error_type=error_type,
        deferred_not_retried=deferred,
    )


def claim_not_released(*, error_type: str) -> None:
    write(
        "WARNING",
        "could not release the idempotency claim; it lapses when its lease runs out",
        error_type=error_type,
    )


def stale_event(*, event_id: str, age_s: float, max_event_age_s: float) -> None:
    write(
        "WARNING",
        "stale Pub/Sub event dropped",
        event_id=event_id,
        age_s=round(age_s, 1),
        max_event_age_s=max_event_age_s,
    )


# --- operating it (outcome events, see sender/results.py) -----------------------------------


def outcome_event_not_published(*, topic: str, reason: str, state: Any) -> None:
    write(
        "WARNING",
        "outcome event not published; the send itself is unaffected",
        results_topic=topic,
        reason=reason,
        state=state,
    )


def status_lookup_failed(fields: Mapping[str, Any], *, severity: str, via: str) -> None:
    write(severity, "delivery status not available", trigger=via, **fields)
