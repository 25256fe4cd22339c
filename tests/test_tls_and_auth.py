"""Transport security and authentication, seen from the SMTP server's side."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import CertBundle
from tests.support.checks import assert_misconfigured, assert_nothing_sent, log_records
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.smtp_server import SessionLog, SmtpMode, SmtpTestServer

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "s", "text": "t"}


def _send(client: Any) -> Any:
    return client.post("/", json=MESSAGE)


def _deliver_one_session(client: Any, server: SmtpTestServer) -> SessionLog:
    """Send, expect 200 and one delivered message; return the one SMTP session that made it."""
    resp = _send(client)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    server.wait_for_messages(1)
    [session] = server.sessions
    return session


def _assert_refused_before_login(resp: Any, server: SmtpTestServer) -> None:
    """The send failed as a delivery problem before the password was offered or mail sent."""
    assert resp.status_code in {502, 503}, resp.get_data(as_text=True)
    assert_nothing_sent(server)
    assert server.auth_attempts == []


def test_implicit_tls_authenticates_inside_tls(http_client: Any, server: SmtpTestServer) -> None:
    session = _deliver_one_session(http_client, server)

    assert session.tls_from_start
    [attempt] = session.auth_attempts
    assert attempt.success
    assert attempt.encrypted
    assert attempt.username == SMTP_USER


def test_starttls_upgrades_before_auth(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_starttls)
    session = _deliver_one_session(http_client, smtp_starttls)

    assert session.starttls_done
    commands = session.commands
    # EHLO, STARTTLS, EHLO again, and only then AUTH and the mail transaction.
    assert commands.index("STARTTLS") < commands.index("AUTH") < commands.index("MAIL")
    assert commands[commands.index("STARTTLS") + 1] == "EHLO"
    [attempt] = session.auth_attempts
    assert attempt.success
    assert attempt.encrypted


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("mode", [SmtpMode.SSL, SmtpMode.STARTTLS])
def test_unicode_password_works_with_each_auth_mechanism(
    http_client: Any,
    sender_env: SenderEnv,
    test_ca: CertBundle,
    mechanism: str,
    mode: SmtpMode,
) -> None:
    with SmtpTestServer(
        mode, certs=test_ca, users={SMTP_USER: CANARY_PASSWORD}, auth_mechanisms={mechanism}
    ) as server:
        sender_env.use(server)
        resp = _send(http_client)

        assert resp.status_code == 200, resp.get_data(as_text=True)
        server.wait_for_messages(1)
        [attempt] = server.auth_attempts
        assert attempt.mechanism == mechanism
        assert attempt.success


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_password_with_a_nul_is_misconfigured_and_never_sent(
    http_client: Any, sender_env: SenderEnv, test_ca: CertBundle, mechanism: str
) -> None:
    """SASL cannot carry a NUL (PLAIN's separator): the profile is at fault, nothing goes out."""
    password = "Canary\0Pässwort-7731"
    with SmtpTestServer(
        SmtpMode.SSL, certs=test_ca, users={SMTP_USER: password}, auth_mechanisms={mechanism}
    ) as server:
        sender_env.use(server, password=password)
        resp = _send(http_client)

        assert_misconfigured(resp)
        detail = resp.get_json()["detail"]
        assert f"AUTH {mechanism} cannot carry a NUL character in the password" in detail
        assert "Pässwort" not in resp.get_data(as_text=True)
        assert server.auth_attempts == []
        for session in server.sessions:
            assert "AUTH" not in session.commands
        assert_nothing_sent(server)


def test_profile_without_username_sends_no_auth_but_still_uses_tls(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_starttls, username=None, password=None)
    session = _deliver_one_session(http_client, smtp_starttls)

    assert session.starttls_done
    assert not session.auth_attempted


@pytest.fixture(params=[SmtpMode.SSL, SmtpMode.STARTTLS])
def untrusted_server(
    request: pytest.FixtureRequest, untrusted_ca: CertBundle
) -> Iterator[SmtpTestServer]:
    """A server whose certificate comes from a CA the function does not trust."""
    with SmtpTestServer(
        request.param, certs=untrusted_ca, users={SMTP_USER: CANARY_PASSWORD}
    ) as server:
        yield server


def test_untrusted_certificate_is_refused_and_nothing_is_sent(
    http_client: Any,
    untrusted_server: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sender_env.use(untrusted_server)
    _assert_refused_before_login(_send(http_client), untrusted_server)
    logged = " ".join(str(r) for r in log_records(capfd.readouterr().out)).lower()
    assert "certificate" in logged


@pytest.mark.parametrize("ca_file", [None, ""], ids=["SMTP_CA_FILE unset", "SMTP_CA_FILE empty"])
def test_system_roots_alone_do_not_trust_the_test_ca(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv, ca_file: str | None
) -> None:
    """Without SMTP_CA_FILE (an empty one means unset) the test CA is unknown: verification is
    really on."""
    sender_env.set(SMTP_CA_FILE=ca_file)

    _assert_refused_before_login(_send(http_client), server)


def test_certificate_for_another_host_name_is_refused(
    http_client: Any, test_ca: CertBundle, sender_env: SenderEnv, tmp_path: Path
) -> None:
    """Trusted issuer, but the certificate names another host: host name checking is on."""
    wrong_name = test_ca.reissue(tmp_path, "smtp.other.example")
    with SmtpTestServer(
        SmtpMode.SSL, certs=wrong_name, users={SMTP_USER: CANARY_PASSWORD}
    ) as server:
        sender_env.use(server)

        _assert_refused_before_login(_send(http_client), server)


def test_server_without_starttls_gets_no_auth_and_no_mail(
    http_client: Any,
    smtp_plain: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sender_env.use(smtp_plain, security="starttls")

    # The trap server advertised AUTH in clear; the client must not have taken it.
    _assert_refused_before_login(_send(http_client), smtp_plain)
    for session in smtp_plain.sessions:
        assert "AUTH" not in session.commands
    logged = " ".join(str(r) for r in log_records(capfd.readouterr().out)).lower()
    assert "starttls" in logged


def test_security_none_with_credentials_never_sends_them_in_clear(
    http_client: Any, smtp_plain: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_plain, security="none")
    resp = _send(http_client)

    assert resp.status_code != 200, resp.get_data(as_text=True)
    assert smtp_plain.auth_attempts == []
    assert smtp_plain.messages == []


def test_security_none_without_credentials_delivers_to_a_loopback_relay(
    http_client: Any, smtp_plain: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_plain, security="none", username=None, password=None)
    resp = _send(http_client)

    assert resp.status_code == 200, resp.get_data(as_text=True)
    [delivered] = smtp_plain.wait_for_messages(1)
    assert delivered.rcpt_tos == ("ops@example.com",)
    assert smtp_plain.auth_attempts == []


def test_security_none_to_a_non_loopback_host_is_misconfigured(
    http_client: Any, smtp_plain: SmtpTestServer, sender_env: SenderEnv
) -> None:
    profile = smtp_plain.profile(security="none")
    profile["host"] = "mail.example.com"  # never contacted: refused before connecting
    sender_env.store(json.dumps(profile))
    resp = _send(http_client)

    assert_misconfigured(resp)


def test_wrong_password_is_not_retried_with_the_same_secret(
    http_client: Any, server: SmtpTestServer
) -> None:
    """One failed login, one re-read of the secret, no second login with the same password."""
    server.set_password(SMTP_USER, "the-provider-changed-it")
    resp = _send(http_client)

    assert_misconfigured(resp)
    attempts = server.auth_attempts
    assert len(attempts) == 1
    assert not attempts[0].success
    assert server.messages == []
