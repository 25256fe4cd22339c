"""Turn an exception from an SMTP session into the one `SendError` it means.

smtplib, ssl and socket each have their own exception types; the triggers only ever see
`sender.errors` classes, decided here once: 4xx and network trouble are transient, 5xx are
rejections, refused credentials are a configuration problem an operator must fix.
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


def _by_code(code: int, reason: str, message: str) -> SendError:
    if 400 <= code < 500:
        return TransientError(reason, smtp_code=code, smtp_message=message)
    return RejectedError(reason, smtp_code=code, smtp_message=message)


def classify(exc: BaseException) -> SendError:  # noqa: PLR0911, PLR0912 - a branch per kind
    """Turn any exception from a send attempt into its single `SendError`."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = refusals_from(exc.recipients)
        error_type = TransientError if any(r.transient for r in refused.values()) else RejectedError
        return error_type("every recipient was refused", refused=refused)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        message = reply_text(exc.smtp_error)
        if 400 <= exc.smtp_code < 500:  # 454 temporary authentication failure
            return TransientError(
                "authentication temporarily failed", smtp_code=exc.smtp_code, smtp_message=message
            )
        return AuthenticationError(
            "the SMTP server refused the credentials", smtp_code=exc.smtp_code, smtp_message=message
        )
    if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 530:
        # RFC 4954: authentication required. The profile lacks the credentials the server
        # wants, which no retry of this message fixes and an operator must (keep the alert).
        return ConfigurationError(
            "the SMTP server requires authentication: add username and password to the profile",
            smtp_code=exc.smtp_code,
            smtp_message=reply_text(exc.smtp_error),
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _by_code(exc.smtp_code, "the sender address was refused", reply_text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code(exc.smtp_code, "the message was refused", reply_text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPConnectError):
        return _by_code(
            exc.smtp_code,
            "the SMTP server refused the session in its greeting",
            reply_text(exc.smtp_error),
        )
    if isinstance(exc, smtplib.SMTPHeloError):
        return _by_code(
            exc.smtp_code, "the SMTP server refused EHLO and HELO", reply_text(exc.smtp_error)
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if "timed out" in str(exc):  # smtplib's own text when a read timed out
            return TransientError("the SMTP server did not answer in time")
        return TransientError("the SMTP server closed the connection")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(
            exc.smtp_code, "the SMTP server refused a command", reply_text(exc.smtp_error)
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
