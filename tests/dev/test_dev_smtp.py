"""The embedded SMTP server: a provider's rules on the way in, `.eml` files on the way out."""

from __future__ import annotations

import json
import smtplib
from email import message_from_bytes, policy

import pytest

from devstack.settings import HOST
from tests.support.dev_outbox import PASSWORD, USERNAME, LocalOutbox, alert


def test_auth_is_not_offered_before_starttls(local_outbox: LocalOutbox) -> None:
    with smtplib.SMTP(HOST, local_outbox.smtp_port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.login(USERNAME, PASSWORD)
        code, _ = client.mail("alerts@dev.localhost")
        assert code == 530
    assert local_outbox.outbox.ids() == []


def test_mail_needs_auth_and_the_right_password(local_outbox: LocalOutbox) -> None:
    with smtplib.SMTP(HOST, local_outbox.smtp_port, timeout=10) as client:
        client.starttls(context=local_outbox.tls_files.client_context())
        client.ehlo()
        assert client.has_extn("auth")
        code, _ = client.mail("alerts@dev.localhost")
        assert code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(USERNAME, "wrong-password")
    assert local_outbox.outbox.ids() == []


def test_each_message_is_stored_whole_in_arrival_order(local_outbox: LocalOutbox) -> None:
    subjects = ["first", "second · 두 번째", "third"]
    for subject in subjects:
        local_outbox.send(alert(subject), rcpt=["ops@example.com", "hidden@example.com"])

    directory = local_outbox.outbox.directory
    emls = sorted(directory.glob("*.eml"))
    assert len(emls) == 3
    parsed = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in emls]
    assert [str(m["Subject"]) for m in parsed] == subjects  # name order = arrival order
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []  # no tmp left
    # The Bcc-style recipient is in the envelope record, not in any header.
    envelope = json.loads(emls[0].with_suffix(".envelope.json").read_text())
    assert envelope["rcpt_tos"] == ["ops@example.com", "hidden@example.com"]
    assert envelope["login"] == USERNAME
    assert b"hidden@example.com" not in emls[0].read_bytes()
    assert local_outbox.outbox.ids() == [p.stem for p in reversed(emls)]  # newest first
