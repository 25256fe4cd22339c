"""SASL client messages for SMTP AUTH, as pure functions (no socket, no state).

Every encoder returns the base64 text that goes on the wire after ``AUTH <MECHANISM> `` (the
initial response, RFC 4954) or as a continuation line. Credentials are encoded as UTF-8.

- PLAIN (RFC 4616): ``authzid NUL authcid NUL passwd``.
- LOGIN (draft-murchison-sasl-login): the username, then the password, each its own line.
- XOAUTH2 (Google's and Microsoft's): ``user=U ^A auth=Bearer T ^A ^A``.
- OAUTHBEARER (RFC 7628): a GS2 header ``n,a=U,`` then ``^A``-separated key=value pairs.

A server that refuses a token answers ``334 <base64 JSON>`` (the error challenge) instead of a
final reply; `decode_error_challenge` reads it, and the client must then send
`error_challenge_reply` to get the final ``535``/``454`` reply.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Literal

from sender.errors import SaslError

OAuthMechanism = Literal["XOAUTH2", "OAUTHBEARER"]

_CTRL_A = "\x01"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _check_no_nul(mechanism: str, **fields: str) -> None:
    for name, value in fields.items():
        if "\0" in value:
            # Naming the field, never showing the value: it may be the password.
            raise SaslError(f"AUTH {mechanism} cannot carry a NUL character in the {name}")


def plain(username: str, password: str, authzid: str = "") -> str:
    """AUTH PLAIN initial response: base64 of ``authzid NUL username NUL password`` in UTF-8."""
    _check_no_nul("PLAIN", authzid=authzid, username=username, password=password)
    return _b64(f"{authzid}\0{username}\0{password}")


def login(username: str, password: str) -> tuple[str, str]:
    """AUTH LOGIN responses: the answers to the ``Username:`` and ``Password:`` challenges.

    A NUL is refused here too: servers read these lines as C strings (and PLAIN's separator).
    """
    _check_no_nul("LOGIN", username=username, password=password)
    return _b64(username), _b64(password)


def _check_token(token: str) -> None:
    # A bearer token is printable ASCII (RFC 6750 b64token); ^A would end the field early.
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise SaslError("an OAuth2 access token must be non-empty printable ASCII without spaces")


def _check_user(username: str) -> None:
    if not username or _CTRL_A in username or "\0" in username:
        raise SaslError("the SASL username must be non-empty and hold no control-A or NUL")


def xoauth2(username: str, token: str) -> str:
    """AUTH XOAUTH2 initial response: base64 of ``user=U^Aauth=Bearer T^A^A``."""
    _check_user(username)
    _check_token(token)
    return _b64(f"user={username}{_CTRL_A}auth=Bearer {token}{_CTRL_A}{_CTRL_A}")


def _gs2_saslname(username: str) -> str:
    # RFC 5801 section 4: "=" and "," are escaped as "=3D" and "=2C" in the authzid.
    return username.replace("=", "=3D").replace(",", "=2C")


def oauthbearer(username: str, token: str, host: str | None = None, port: int | None = None) -> str:
    """AUTH OAUTHBEARER initial response (RFC 7628 section 3.1).

    ``n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A``; host and port are optional (RFC 7628 makes
    them SHOULD-send hints for the server, which may check them against itself).
    """
    _check_user(username)
    _check_token(token)
    pairs = []
    if host is not None:
        pairs.append(f"host={host}")
    if port is not None:
        pairs.append(f"port={port}")
    pairs.append(f"auth=Bearer {token}")
    body = "".join(f"{_CTRL_A}{pair}" for pair in pairs)
    return _b64(f"n,a={_gs2_saslname(username)},{body}{_CTRL_A}{_CTRL_A}")


def initial_response(mechanism: OAuthMechanism, username: str, token: str) -> str:
    """The initial response of *mechanism* for a bearer token."""
    if mechanism == "XOAUTH2":
        return xoauth2(username, token)
    return oauthbearer(username, token)


def error_challenge_reply(mechanism: OAuthMechanism) -> str:
    """What the client sends after a 334 error challenge to get the final reply.

    XOAUTH2: an empty line. OAUTHBEARER: a single ^A (RFC 7628 section 3.2.3), base64 ``AQ==``.
    """
    return "" if mechanism == "XOAUTH2" else _b64(_CTRL_A)


@dataclass(frozen=True, slots=True)
class OAuthErrorChallenge:
    """The JSON a server sends in a 334 after refusing a token (RFC 7628 section 3.2.2).

    ``status`` is an HTTP-like code (Google's and Dovecot's XOAUTH2 send ``"401"``, OAUTHBEARER
    servers an RFC 6750 error such as ``"invalid_token"``); ``schemes`` and ``scope`` are the
    server's hints, ``openid_configuration`` the discovery URL some servers add.
    """

    status: str
    schemes: str | None = None
    scope: str | None = None
    openid_configuration: str | None = None


def _optional_str(raw: dict[str, object], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


def decode_error_challenge(challenge: str | bytes) -> OAuthErrorChallenge:
    """Decode the base64 JSON after ``334 `` (smtplib hands it over as bytes).

    Raises `SaslError` when it is not base64 JSON with a string ``status``.
    """
    text = challenge.decode("ascii", "replace") if isinstance(challenge, bytes) else challenge
    try:
        raw = json.loads(base64.b64decode(text.strip(), validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SaslError("the 334 challenge is not base64-encoded JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("status"), str):
        raise SaslError("the 334 challenge JSON has no string status")
    return OAuthErrorChallenge(
        status=raw["status"],
        schemes=_optional_str(raw, "schemes"),
        scope=_optional_str(raw, "scope"),
        openid_configuration=_optional_str(raw, "openid-configuration"),
    )
