"""The tier itself, checked with the standard library's smtplib: if these fail, the function
tests in this folder would prove nothing (wrong listener behaviour, wrong CA, no SASL)."""

from __future__ import annotations

import base64
import smtplib
import ssl
import uuid
from email.message import EmailMessage

import pytest

from tests.support.mta import MtaTier
from tests.support.mta_tier import DEFAULT_PASSWORD, ssl_context

pytestmark = pytest.mark.mta


def _message(token: str, to: str = "someone@example.net") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Probe <probe@example.org>"
    msg["To"] = to
    msg["Subject"] = f"디스크 경고 {token}"
    msg.set_content(f"body {token} — ünïcödé\n")
    return msg


def _ctx(mta: MtaTier) -> ssl.SSLContext:
    """A client context trusting only the tier's throwaway CA."""
    return ssl_context(mta.state)


def _auth_plain(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """AUTH PLAIN with UTF-8 credentials (RFC 4616); smtplib's login() only does ASCII."""
    blob = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    return client.docmd("AUTH", f"PLAIN {blob}")


def test_implicit_tls_auth_delivers_to_the_single_maildir(mta: MtaTier) -> None:
    token = uuid.uuid4().hex
    with smtplib.SMTP_SSL("127.0.0.1", mta.ports.ssl, context=_ctx(mta), timeout=10) as c:
        c.login(mta.user, mta.password)
        c.send_message(_message(token, to=f"Ops <ops-{token}@any-domain.example>"))
    [got] = mta.wait_for_messages(lambda m: token in m.subject)
    assert got.subject == f"디스크 경고 {token}"
    assert got.original_recipient == f"ops-{token}@any-domain.example"
    assert got.header("Delivered-To") == f"ops-{token}@any-domain.example"
    assert f"body {token} — ünïcödé" in (got.body() or "")


def test_submission_requires_starttls_then_auth(mta: MtaTier) -> None:
    token = uuid.uuid4().hex
    with smtplib.SMTP("127.0.0.1", mta.ports.starttls, timeout=10) as c:
        c.ehlo()
        assert c.has_extn("starttls")
        assert not c.has_extn("auth"), "AUTH must not be offered before TLS"
        code, _ = c.mail("probe@example.org")
        assert code == 530
        c.rset()
        c.starttls(context=_ctx(mta))
        c.ehlo()
        # Encrypted but not authenticated: still no relaying.
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("probe@example.org", [f"x-{token}@example.net"], b"Subject: x\r\n\r\nx")
        c.login(mta.user, mta.password)
        c.send_message(_message(token))
    assert mta.wait_for_messages(lambda m: token in m.subject)


def test_plain_listener_offers_no_starttls_but_takes_auth_and_the_log_shows_it(
    mta: MtaTier,
) -> None:
    """The trap must be real: a careless client *could* authenticate there, and if it does,
    Postfix's session summary says so (which is what the function tests look for)."""
    since = mta.settled_offset("plain")
    with smtplib.SMTP("127.0.0.1", mta.ports.plain, timeout=10) as c:
        c.ehlo()
        assert not c.has_extn("starttls")
        assert "PLAIN" in c.esmtp_features.get("auth", "")
        assert _auth_plain(c, mta.user, mta.password)[0] == 235
    [session] = mta.sessions("plain", since)
    assert session.sent("auth")
    assert session.stats["auth"] == "1"


def test_recipient_rules_and_size_limit_answer_with_postfix_codes(mta: MtaTier) -> None:
    token = uuid.uuid4().hex
    good = f"good-{token}@example.net"
    with smtplib.SMTP_SSL("127.0.0.1", mta.ports.ssl, context=_ctx(mta), timeout=10) as c:
        c.login(mta.user, mta.password)
        refused = c.sendmail(
            "probe@example.org",
            [good, f"reject550-{token}@example.net", f"defer450-{token}@example.net"],
            _message(token, to=good).as_bytes(),
        )
        assert refused[f"reject550-{token}@example.net"][0] == 550
        assert refused[f"defer450-{token}@example.net"][0] == 450
        big = b"Subject: big\r\n\r\n" + b"x" * (mta.message_size_limit + 1000)
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            c.sendmail("probe@example.org", [good], big)
        assert exc.value.smtp_code == 552
    [got] = mta.wait_for_messages(lambda m: token in m.subject)
    assert got.original_recipient == good


def test_unicode_password_and_rotation_at_runtime(mta: MtaTier) -> None:
    new_password = "p@ss:wörd/%?#&+ 🔑"
    mta.set_password(mta.user, new_password)
    with smtplib.SMTP_SSL("127.0.0.1", mta.ports.ssl, context=_ctx(mta), timeout=10) as c:
        assert _auth_plain(c, mta.user, DEFAULT_PASSWORD)[0] == 535
    with smtplib.SMTP_SSL("127.0.0.1", mta.ports.ssl, context=_ctx(mta), timeout=10) as c:
        assert _auth_plain(c, mta.user, new_password)[0] == 235


def test_server_certificate_is_not_trusted_without_the_test_ca(mta: MtaTier) -> None:
    # The tier's CA is throwaway: only SMTP_CA_FILE can make a client trust it.
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(
            "127.0.0.1", mta.ports.ssl, context=ssl.create_default_context(), timeout=10
        )
