"""Authenticating an open SMTP session: AUTH with the profile's password or an OAuth2 token.

- credentials go only over a socket that *is* TLS (the socket is checked, not the setting);
- AUTH PLAIN/LOGIN encode the username and password as UTF-8 (RFC 4616): `smtplib.login()`
  raises UnicodeEncodeError on a non-ASCII password, so the exchange is done here;
- a profile with ``oauth2`` signs in with XOAUTH2 (OAUTHBEARER when only that is offered) and a
  bearer token asked for only once the socket is TLS and the server offers one of them; a 334
  error challenge is answered as RFC 7628 says (`sender.sasl`) to get the final reply.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable

from sender import sasl
from sender.deadline import Deadline
from sender.errors import ConfigurationError, SaslError, TlsError
from sender.profile import SmtpProfile
from sender.smtp_client import SmtpClient, arm, one_line


def authenticate(
    client: SmtpClient,
    profile: SmtpProfile,
    deadline: Deadline,
    access_token: Callable[[], str] | None,
) -> None:
    """AUTH with the profile's password, or with a token from *access_token* (oauth2)."""
    assert profile.username is not None
    if profile.oauth2 is None:
        assert profile.password is not None
        client.trace.begin("auth")
        mechanism, code, reply = _password_auth(client, profile.username, profile.password)
    else:
        if access_token is None:
            raise ConfigurationError("an oauth2 profile needs an access token source")
        # Checked before a token is asked for: no token is fetched for a server that cannot
        # take it, and none ever goes out on a plaintext socket.
        client.trace.begin("auth")
        mechanism = _oauth_mechanism(client)
        token = access_token()
        client.trace.begin("auth")  # (the token source may have traced a step of its own)
        arm(client, deadline)
        code, reply = _token_auth(client, mechanism, profile.username, token)
    client.trace.ok("auth", f"{mechanism} as {profile.username}: {one_line(code, reply)}")


def _auth_mechanisms(client: smtplib.SMTP) -> list[str]:
    """The AUTH mechanisms offered, once the checks every credential needs have passed."""
    if not isinstance(client.sock, ssl.SSLSocket):
        # Defence in depth: the session setup already guarantees TLS, but a password or token
        # must never leave on a plaintext socket whatever a future change to that setup does.
        raise TlsError(
            "refusing to send credentials over a connection that is not TLS",
            condition="tls_required",
        )
    if not client.does_esmtp:
        raise ConfigurationError(
            "the SMTP server refused EHLO and speaks only HELO, which has no AUTH: point the "
            "profile at the provider's submission server, or remove the username for a relay "
            "that trusts the network",
            condition="helo_only",
        )
    if not client.has_extn("auth"):
        raise ConfigurationError(
            "the SMTP server does not offer AUTH; remove the username for a trusted relay",
            condition="auth_not_offered",
        )
    return client.esmtp_features["auth"].upper().split()


def _password_auth(client: smtplib.SMTP, username: str, password: str) -> tuple[str, int, bytes]:
    """AUTH PLAIN (preferred) or LOGIN with UTF-8 credentials (`sender.sasl`); raises
    SMTPAuthenticationError, or ConfigurationError for credentials SASL cannot carry.

    Returns the mechanism and the server's final reply."""
    mechanisms = _auth_mechanisms(client)
    if "PLAIN" in mechanisms:
        mechanism = "PLAIN"
    elif "LOGIN" in mechanisms:
        mechanism = "LOGIN"
    else:
        raise ConfigurationError(
            f"the SMTP server offers no supported AUTH mechanism (offers {' '.join(mechanisms)})",
            condition="auth_mechanism",
        )
    try:
        # Encoded before the first AUTH line: credentials SASL cannot carry are never sent.
        if mechanism == "PLAIN":
            lines = [sasl.plain(username, password)]
        else:
            lines = list(sasl.login(username, password))
    except SaslError as exc:  # its text names the field, never the value
        raise ConfigurationError(f"cannot sign in with the profile's password: {exc}") from None
    if mechanism == "PLAIN":
        code, reply = client.docmd("AUTH", f"PLAIN {lines[0]}")
    else:
        code, reply = client.docmd("AUTH", "LOGIN")
        for line in lines:
            if code == 334:
                code, reply = client.docmd(line)
    if code != 235:
        if code == 334:  # a challenge we did not expect: end the exchange cleanly
            client.docmd("*")
        raise smtplib.SMTPAuthenticationError(code, reply)
    return mechanism, code, reply


def _oauth_mechanism(client: smtplib.SMTP) -> sasl.OAuthMechanism:
    """XOAUTH2 (what Google and Microsoft speak), else OAUTHBEARER (RFC 7628)."""
    mechanisms = _auth_mechanisms(client)
    if "XOAUTH2" in mechanisms:
        return "XOAUTH2"
    if "OAUTHBEARER" in mechanisms:
        return "OAUTHBEARER"
    raise ConfigurationError(
        "the SMTP server offers no OAuth2 mechanism (XOAUTH2 or OAUTHBEARER; it offers "
        f"{' '.join(mechanisms)}): sign in with a password, or use the provider's OAuth2 server",
        condition="auth_mechanism",
    )


def _token_auth(
    client: smtplib.SMTP, mechanism: sasl.OAuthMechanism, username: str, token: str
) -> tuple[int, bytes]:
    """AUTH with a bearer token; raises SMTPAuthenticationError when it is refused.

    A server refusing a token first answers ``334 <base64 JSON>`` (the error challenge); the
    client's answer (`sasl.error_challenge_reply`) gets the final 535/454 reply."""
    try:
        initial = sasl.initial_response(mechanism, username, token)
    except SaslError as exc:  # its text names the field, never the value
        raise ConfigurationError(f"cannot sign in with OAuth2: {exc}") from None
    code, reply = client.docmd("AUTH", f"{mechanism} {initial}")
    if code == 334:
        code, reply = client.docmd(sasl.error_challenge_reply(mechanism))
        if code == 334:  # a server that keeps challenging: cancel (RFC 4954)
            client.docmd("*")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)
    return code, reply
