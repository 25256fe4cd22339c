"""Every failure is classified once; the trigger behaviour follows from the class."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest

from sender.classify import classify
from sender.errors import (
    AuthenticationError,
    ConfigurationError,
    Disposition,
    InvalidRequestError,
    RejectedError,
    SendError,
    TlsError,
    TransientError,
)


@pytest.mark.parametrize(
    ("exc", "expected", "status"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 try later"), TransientError, 503),
        (smtplib.SMTPDataError(552, b"5.3.4 too big"), RejectedError, 502),
        (smtplib.SMTPSenderRefused(421, b"4.7.0 busy", "a@b.c"), TransientError, 503),
        (smtplib.SMTPSenderRefused(553, b"5.7.1 not yours", "a@b.c"), RejectedError, 502),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), AuthenticationError, 500),
        (smtplib.SMTPAuthenticationError(454, b"4.7.0 try later"), TransientError, 503),
        (smtplib.SMTPServerDisconnected("gone"), TransientError, 503),
        (smtplib.SMTPConnectError(421, b"busy"), TransientError, 503),
        (ConnectionRefusedError(111, "refused"), TransientError, 503),
        (TimeoutError("timed out"), TransientError, 503),
        (socket.gaierror(-2, "Name or service not known"), TransientError, 503),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), TlsError, 503),
        (ssl.SSLError(1, "wrong version number"), TlsError, 503),
    ],
)
def test_classification(exc: Exception, expected: type[SendError], status: int) -> None:
    error = classify(exc)
    assert type(error) is expected
    assert error.http_status == status


def test_every_recipient_refused_permanently_is_rejected() -> None:
    error = classify(
        smtplib.SMTPRecipientsRefused(
            {"a@x.org": (550, b"5.1.1 no such user"), "b@x.org": (553, b"5.1.3 bad")}
        )
    )
    assert isinstance(error, RejectedError)
    assert error.response_body()["refused"]["a@x.org"] == {
        "code": 550,
        "message": "5.1.1 no such user",
    }


def test_any_temporary_refusal_makes_the_whole_failure_transient() -> None:
    error = classify(
        smtplib.SMTPRecipientsRefused({"a@x.org": (550, b"no"), "b@x.org": (450, b"busy")})
    )
    assert isinstance(error, TransientError)
    assert error.response_body()["retryable"] is True


def test_pubsub_disposition() -> None:
    assert TransientError("x").redeliver
    assert ConfigurationError("x").redeliver
    assert AuthenticationError("x").redeliver
    assert not RejectedError("x").redeliver
    assert not InvalidRequestError.one("to", "bad").redeliver
    assert ConfigurationError("x").disposition is Disposition.MISCONFIGURED


def test_unknown_exceptions_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        classify(KeyError("bug"))
