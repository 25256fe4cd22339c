"""Every exception smtp-sender raises on purpose: one family, one module, one naming rule.

Naming: every class ends in `Error`, and every class derives from `SmtpSenderError`.
`SendError` and its subclasses are the failures of a send; the HTTP status and the Pub/Sub
ack-or-redeliver decision are properties of the class (`disposition`), so no trigger re-derives
them. `sender.classify` turns a library's exception (smtplib, ssl, socket, google-api-core) into
exactly one of these.

Error texts end up in responses and logs, so they never carry a password, token or message body:
SMTP reply texts are the server's, and our own messages name fields, hosts and reasons only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from sender.outcome import Refusal, refused_json


class SmtpSenderError(Exception):
    """The root of the family: anything smtp-sender raises deliberately."""


class Disposition(Enum):
    """How a trigger must react to an error."""

    INVALID = "invalid_request"  # the caller's fault: 400 / ack
    REJECTED = "rejected"  # the server said no for good: 502 / ack
    UNAVAILABLE = "unavailable"  # try again later: 503 / raise for redelivery
    MISCONFIGURED = "misconfigured"  # an operator must fix the secret or env: 500 / raise


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with the request, named by its field path (`to[1]`, `attachments[0].content`)."""

    field: str
    problem: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class SendError(SmtpSenderError):
    """Base of every failure the function reports. Subclasses fix the disposition."""

    disposition: ClassVar[Disposition]
    http_status: ClassVar[int]
    # The message of the log line that reports this failure.
    log_message: ClassVar[str] = "email not sent"

    def __init__(
        self,
        reason: str,
        *,
        smtp_code: int | None = None,
        smtp_message: str | None = None,
        refused: dict[str, Refusal] | None = None,
        condition: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.smtp_code = smtp_code
        self.smtp_message = smtp_message
        self.refused = refused or {}
        # What happened, as a short token (`certificate_untrusted`, `tls_wrong_version`, an
        # identity provider's error code...): what `sender.hints` looks a hint up by.
        self.condition = condition
        # One sentence naming the likely cause and the fix (`sender.hints`), for failures the
        # SMTP server or the identity provider caused; None for the rest.
        self.hint: str | None = None

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
            body["refused"] = refused_json(self.refused)
        if self.hint:
            body["hint"] = self.hint
        return body

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"error": self.disposition.value, "reason": self.reason}
        if self.smtp_code is not None:
            fields["smtp_code"] = self.smtp_code
            fields["smtp_message"] = self.smtp_message
        if self.refused:
            fields["refused"] = refused_json(self.refused)
        if self.hint:
            fields["hint"] = self.hint
        return fields


class InvalidRequestError(SendError):
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
    def one(cls, field_path: str, problem: str) -> InvalidRequestError:
        return cls([FieldProblem(field_path, problem)])


class MessageTooLargeError(InvalidRequestError):
    """The request body or the built message exceeds MAX_MESSAGE_BYTES."""

    http_status = 413

    def response_body(self) -> dict[str, Any]:
        return {"error": "too_large", "detail": self.reason}


class UnsupportedMediaTypeError(InvalidRequestError):
    """The HTTP body is not declared as JSON."""

    http_status = 415

    def response_body(self) -> dict[str, Any]:
        return {"error": "unsupported_media_type", "detail": self.reason}


class RejectedError(SendError):
    """The SMTP server refused the message permanently (5xx)."""

    disposition = Disposition.REJECTED
    http_status = 502


class AlreadyRejectedError(RejectedError):
    """An earlier delivery of this key was rejected for good and sent nothing; it is answered
    again, not tried again (the items of a redelivered Pub/Sub batch: only what is owed goes
    out). Carries the earlier attempt's reason and SMTP reply."""

    log_message = "email rejected by an earlier delivery; not tried again"


class TransientError(SendError):
    """Worth retrying: 4xx replies, network trouble, timeouts, Secret Manager unavailable."""

    disposition = Disposition.UNAVAILABLE
    http_status = 503
    # Seconds a caller should wait before retrying (the HTTP Retry-After header).
    retry_after_s: int = 30

    def response_body(self) -> dict[str, Any]:
        return {**super().response_body(), "retryable": True}


class OutcomeUnknownError(TransientError):
    """The connection was lost after the final dot: the server may have accepted the message.

    Transient on purpose: for an alert a possible duplicate beats a certain loss, so the
    delivery is retried (and the key freed). It gets its own log message so that an operator can
    tell it from a plain network error."""

    log_message = "outcome unknown after DATA"


class TlsError(TransientError):
    """TLS could not be established safely (certificate check failed, STARTTLS not offered).

    Nothing was sent — not even credentials. Treated as transient: a stripped STARTTLS is often a
    middlebox or a provider incident, and a Pub/Sub alert must not be acked away while it lasts.
    """


class ConfigurationError(SendError):
    """The deployment is wrong (secret missing, denied or malformed); an operator must act."""

    disposition = Disposition.MISCONFIGURED
    http_status = 500


class AuthenticationError(ConfigurationError):
    """The server refused our credentials (535 and friends) — a rotated or wrong password."""


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
        self.retry_after_s = max(1, math.ceil(wait_s))


class WebhookUnauthorizedError(SmtpSenderError):
    """The request carries no webhook credential (401)."""


class WebhookForbiddenError(SmtpSenderError):
    """The request's webhook credential is wrong (403)."""


class WebhookStaleTimestampError(WebhookForbiddenError):
    """A signed webhook's timestamp is too far from now: a replayed request (403)."""


class AddressError(SmtpSenderError, ValueError):
    """The text is not one valid mailbox; the message says why, without echoing secrets.

    Raised while parsing; the caller turns it into the error its context means (a 400 for a
    request field, a 500 for the profile's `from`)."""


class IdentityProviderRefusedError(ConfigurationError):
    """The IdP refused the client, the grant or the scope (``code``), or the setup around it is
    wrong: misconfigured until an operator fixes the secret or the IdP side."""

    def __init__(self, flow: str, code: str, what: str | None = None) -> None:
        self.flow = flow
        self.code = code
        super().__init__(
            f"oauth2 flow {flow}: {what or 'the identity provider answered ' + code}",
            condition=code,
        )


class IdentityProviderUnavailableError(TransientError):
    """The IdP (or the metadata/IAM service on the way) could not give a token just now."""

    def __init__(self, flow: str, what: str) -> None:
        self.flow = flow
        super().__init__(f"oauth2 flow {flow}: {what}", condition="idp_unavailable")


class SaslError(SmtpSenderError, ValueError):
    """A SASL field that cannot be encoded (a NUL in a user name); names the field, never the
    value."""


class StaleSessionError(SmtpSenderError):
    """A pooled SMTP session turned out closed before MAIL FROM was accepted (nothing was sent).

    Never reaches a caller: the pool replaces the session and sends on a fresh one."""


class ContentTypeError(SmtpSenderError, ValueError):
    """An attachment's `content_type` is not an acceptable RFC 2045 media type (says why, never
    echoing the value); the caller turns it into a 400 naming the field."""


class RedeliveryRequestedError(SmtpSenderError):
    """Raised by the Pub/Sub trigger so that Pub/Sub delivers the event again.

    Its text is our reason, never a secret: functions-framework logs it."""
