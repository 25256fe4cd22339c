"""What a send attempt came to: a typed result, or one typed error.

Every failure — smtplib's exceptions, socket and TLS errors, Secret Manager errors, bad input — is
turned into exactly one `SendError` subclass here (`classify`). The HTTP status and the Pub/Sub
ack-or-redeliver decision are properties of that class, so no trigger re-derives them.

Error texts end up in responses and logs, so they never carry a password, token or message body:
SMTP reply texts are the server's, and our own messages name fields, hosts and reasons only.
"""

from __future__ import annotations

import math
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar


class Disposition(Enum):
    """How a trigger must react to an error."""

    INVALID = "invalid_request"  # the caller's fault: 400 / ack
    REJECTED = "rejected"  # the server said no for good: 502 / ack
    UNAVAILABLE = "unavailable"  # try again later: 503 / raise for redelivery
    MISCONFIGURED = "misconfigured"  # an operator must fix the secret or env: 500 / raise


@dataclass(frozen=True, slots=True)
class Refusal:
    """One recipient the server refused, with its reply."""

    code: int
    message: str

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with the request, named by its field path (`to[1]`, `attachments[0].content`)."""

    field: str
    problem: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


@dataclass(slots=True)
class SendResult:
    """A message the server accepted for at least one recipient."""

    message_id: str
    accepted: list[str]
    refused: dict[str, Refusal] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "partial" if self.refused else "sent"

    def refused_json(self) -> dict[str, dict[str, Any]]:
        return {addr: refusal.as_json() for addr, refusal in self.refused.items()}


class SendError(Exception):
    """Base of every failure the function reports. Subclasses fix the disposition."""

    disposition: ClassVar[Disposition]
    http_status: ClassVar[int]

    def __init__(
        self,
        reason: str,
        *,
        smtp_code: int | None = None,
        smtp_message: str | None = None,
        refused: dict[str, Refusal] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.smtp_code = smtp_code
        self.smtp_message = smtp_message
        self.refused = refused or {}

    @property
    def redeliver(self) -> bool:
        """Whether a Pub/Sub trigger should raise so the message is delivered again."""
        return self.disposition in {Disposition.UNAVAILABLE, Disposition.MISCONFIGURED}

    def response_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.disposition.value, "detail": self.reason}
        if self.smtp_code is not None:
            body["smtp_code"] = self.smtp_code
        if self.smtp_message:
            body["smtp_message"] = self.smtp_message
        if self.refused:
            body["refused"] = {a: r.as_json() for a, r in self.refused.items()}
        return body

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"error": self.disposition.value, "reason": self.reason}
        if self.smtp_code is not None:
            fields["smtp_code"] = self.smtp_code
            fields["smtp_message"] = self.smtp_message
        if self.refused:
            fields["refused"] = {a: r.as_json() for a, r in self.refused.items()}
        return fields


class InvalidRequest(SendError):
    """The message itself is wrong; sending it again will not help."""

    disposition = Disposition.INVALID
    http_status = 400

    def __init__(self, problems: list[FieldProblem]) -> None:
        summary = "; ".join(f"{p.field}: {p.problem}" for p in problems[:5])
        super().__init__(summary or "invalid request")
        self.problems = problems

    def response_body(self) -> dict[str, Any]:
        return {"error": "invalid_request", "details": [p.as_json() for p in self.problems]}

    def log_fields(self) -> dict[str, Any]:
        return {"error": "invalid_request", "details": [p.as_json() for p in self.problems]}

    @classmethod
    def one(cls, field_path: str, problem: str) -> InvalidRequest:
        return cls([FieldProblem(field_path, problem)])


class MessageTooLarge(InvalidRequest):
    """The request body or the built message exceeds MAX_MESSAGE_BYTES."""

    http_status = 413

    def response_body(self) -> dict[str, Any]:
        return {"error": "too_large", "detail": self.reason}


class UnsupportedMediaType(InvalidRequest):
    """The HTTP body is not declared as JSON."""

    http_status = 415

    def response_body(self) -> dict[str, Any]:
        return {"error": "unsupported_media_type", "detail": self.reason}


class RejectedError(SendError):
    """The SMTP server refused the message permanently (5xx)."""

    disposition = Disposition.REJECTED
    http_status = 502


class TransientError(SendError):
    """Worth retrying: 4xx replies, network trouble, timeouts, Secret Manager unavailable."""

    disposition = Disposition.UNAVAILABLE
    http_status = 503
    # Seconds a caller should wait before retrying (the HTTP Retry-After header).
    retry_after_s: int = 30

    def response_body(self) -> dict[str, Any]:
        return {**super().response_body(), "retryable": True}


class TlsError(TransientError):
    """TLS could not be established safely (certificate check failed, STARTTLS not offered).

    Nothing was sent — not even credentials. Treated as transient: a stripped STARTTLS is often a
    middlebox or a provider incident, and a Pub/Sub alert must not be acked away while it lasts.
    """


class ConfigurationError(SendError):
    """The deployment is wrong (secret missing, denied or malformed); an operator must act."""

    disposition = Disposition.MISCONFIGURED
    http_status = 500

    def response_body(self) -> dict[str, Any]:
        return {"error": "misconfigured", "detail": self.reason}


class AuthenticationError(ConfigurationError):
    """The server refused our credentials (535 and friends) — a rotated or wrong password."""


def _reply_text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def _by_code(code: int, reason: str, message: str) -> SendError:
    if 400 <= code < 500:
        return TransientError(reason, smtp_code=code, smtp_message=message)
    return RejectedError(reason, smtp_code=code, smtp_message=message)


def split_refusals(
    refused: Mapping[str, Refusal],
) -> tuple[dict[str, Refusal], dict[str, Refusal]]:
    """(final: 5xx, reported and never retried; deferred: 4xx, owed a later attempt)."""
    final = {addr: r for addr, r in refused.items() if not r.transient}
    deferred = {addr: r for addr, r in refused.items() if r.transient}
    return final, deferred


def refusals_from(recipients: dict[str, tuple[int, bytes]]) -> dict[str, Refusal]:
    """smtplib's `{addr: (code, b"text")}` -> `{addr: Refusal}`."""
    return {addr: Refusal(code, _reply_text(text)) for addr, (code, text) in recipients.items()}


def classify(exc: BaseException) -> SendError:  # noqa: PLR0911, PLR0912 - a branch per kind
    """Turn any exception from a send attempt into its single `SendError`."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = refusals_from(exc.recipients)
        error_type = TransientError if any(r.transient for r in refused.values()) else RejectedError
        return error_type("every recipient was refused", refused=refused)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        message = _reply_text(exc.smtp_error)
        if 400 <= exc.smtp_code < 500:  # 454 temporary authentication failure
            return TransientError(
                "authentication temporarily failed", smtp_code=exc.smtp_code, smtp_message=message
            )
        return AuthenticationError(
            "the SMTP server refused the credentials", smtp_code=exc.smtp_code, smtp_message=message
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _by_code(
            exc.smtp_code, "the sender address was refused", _reply_text(exc.smtp_error)
        )
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code(exc.smtp_code, "the message was refused", _reply_text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientError("the SMTP server closed the connection")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(
            exc.smtp_code, "the SMTP server refused a command", _reply_text(exc.smtp_error)
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or "untrusted or mismatched certificate"
        return TlsError(f"certificate verification failed: {detail}")
    if isinstance(exc, ssl.SSLError):
        return TlsError(
            f"TLS handshake failed: {getattr(exc, 'reason', None) or type(exc).__name__}"
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransientError("the SMTP server did not answer in time")
    if isinstance(exc, ConnectionRefusedError):
        return TransientError("the SMTP server refused the connection")
    if isinstance(exc, socket.gaierror):
        return TransientError("the SMTP host name could not be resolved")
    if isinstance(exc, OSError | smtplib.SMTPException):
        return TransientError(f"network error talking to the SMTP server: {type(exc).__name__}")
    raise exc


# --- idempotency -------------------------------------------------------------------------------


class LedgerUnavailableError(TransientError):
    """The idempotency ledger could not be reached before sending; nothing was sent."""


class ClaimBusyError(TransientError):
    """Another delivery of the same key is sending right now (its lease has not run out).

    Transient on purpose, for HTTP too (503 + Retry-After rather than 409): the other attempt may
    still fail, and webhook senders (Alertmanager, Grafana, CI) retry 5xx but drop a 409, which
    would lose the alert. After `retry_after_s` a retry gets `duplicate` or takes the claim over.
    """

    def __init__(self, wait_s: float) -> None:
        super().__init__("a delivery with this idempotency key is in progress")
        self.retry_after_s = max(1, math.ceil(wait_s))  # when the holder's lease runs out
