"""Turn an exception from an SMTP session into the one `SendError` it means.

smtplib, ssl and socket each have their own exception types; the triggers only ever see
`sender.errors` classes, decided here once: 4xx and network trouble are transient, 5xx are
rejections, refused credentials are a configuration problem an operator must fix. Each error
also gets a `condition` (what happened, as a token) that `sender.hints` turns into advice.
"""

from __future__ import annotations

import smtplib
import socket
import ssl

from sender.errors import (
    AuthenticationError,
    ConfigurationError,
    RejectedError,
    SendError,
    TlsError,
    TransientError,
)
from sender.outcome import refusals_from, reply_text

# OpenSSL's verify codes (X509_V_ERR_*) and what each means for the operator.
_CERTIFICATE_CONDITIONS = {
    62: "certificate_name_mismatch",  # HOSTNAME_MISMATCH
    64: "certificate_name_mismatch",  # IP_ADDRESS_MISMATCH
    2: "certificate_untrusted",  # UNABLE_TO_GET_ISSUER_CERT
    18: "certificate_untrusted",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "certificate_untrusted",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "certificate_untrusted",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "certificate_untrusted",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    9: "certificate_expired",  # CERT_NOT_YET_VALID
    10: "certificate_expired",  # CERT_HAS_EXPIRED
}


def _by_code(code: int, reason: str, message: str, condition: str) -> SendError:
    if 400 <= code < 500:
        return TransientError(reason, smtp_code=code, smtp_message=message, condition=condition)
    return RejectedError(reason, smtp_code=code, smtp_message=message, condition=condition)


# What a refused reply refused, by smtplib's exception class (checked in this order: the last is
# the base class of the others).
_REFUSED_STEPS: tuple[tuple[type[smtplib.SMTPResponseException], str, str], ...] = (
    (smtplib.SMTPSenderRefused, "the sender address was refused", "sender_refused"),
    (smtplib.SMTPDataError, "the message was refused", "message_refused"),
    (
        smtplib.SMTPConnectError,
        "the SMTP server refused the session in its greeting",
        "greeting_refused",
    ),
    (smtplib.SMTPHeloError, "the SMTP server refused EHLO and HELO", "ehlo_refused"),
    (smtplib.SMTPResponseException, "the SMTP server refused a command", "command_refused"),
)


def classify(exc: BaseException) -> SendError:  # noqa: PLR0911 - a branch per kind
    """Turn any exception from a send attempt into its single `SendError`."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = refusals_from(exc.recipients)
        error_type = TransientError if any(r.transient for r in refused.values()) else RejectedError
        return error_type(
            "every recipient was refused", refused=refused, condition="recipients_refused"
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _credentials_refused(exc)
    if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 530:
        # RFC 4954: authentication required. The profile lacks the credentials the server
        # wants, which no retry of this message fixes and an operator must (keep the alert).
        return ConfigurationError(
            "the SMTP server requires authentication: add username and password to the profile",
            smtp_code=exc.smtp_code,
            smtp_message=reply_text(exc.smtp_error),
            condition="auth_required",
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        reason, condition = next((r, c) for kind, r, c in _REFUSED_STEPS if isinstance(exc, kind))
        return _by_code(exc.smtp_code, reason, reply_text(exc.smtp_error), condition)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if "timed out" in str(exc):  # smtplib's own text when a read timed out
            return TransientError("the SMTP server did not answer in time", condition="timeout")
        return TransientError("the SMTP server closed the connection", condition="disconnected")
    return _network(exc)


def _credentials_refused(exc: smtplib.SMTPAuthenticationError) -> SendError:
    message = reply_text(exc.smtp_error)
    if 400 <= exc.smtp_code < 500:  # 454 temporary authentication failure
        return TransientError(
            "authentication temporarily failed",
            smtp_code=exc.smtp_code,
            smtp_message=message,
            condition="auth_temporary",
        )
    return AuthenticationError(
        "the SMTP server refused the credentials",
        smtp_code=exc.smtp_code,
        smtp_message=message,
        condition="auth_refused",
    )


def _network(exc: BaseException) -> SendError:
    """TLS, socket and DNS failures (no SMTP reply involved)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or "untrusted or mismatched certificate"
        condition = _CERTIFICATE_CONDITIONS.get(getattr(exc, "verify_code", 0), "certificate")
        return TlsError(f"certificate verification failed: {detail}", condition=condition)
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or type(exc).__name__
        # A plaintext greeting read as a TLS record: implicit TLS against a STARTTLS port.
        condition = "tls_wrong_version" if reason == "WRONG_VERSION_NUMBER" else "tls_handshake"
        return TlsError(f"TLS handshake failed: {reason}", condition=condition)
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransientError("the SMTP server did not answer in time", condition="timeout")
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(
            "the SMTP server refused the connection", condition="connection_refused"
        )
    if isinstance(exc, socket.gaierror):
        return TransientError("the SMTP host name could not be resolved", condition="dns")
    if isinstance(exc, OSError | smtplib.SMTPException):
        return TransientError(
            f"network error talking to the SMTP server: {type(exc).__name__}", condition="network"
        )
    raise exc
