"""The SMTP profile: where and how to send, parsed from the secret's payload.

A payload that is a JSON object is a full profile. Anything else is a bare password (one trailing
newline stripped, as `gcloud secrets versions add --data-file` of an `echo`ed file leaves one),
with the rest of the profile taken from `SMTP_HOST`, `SMTP_PORT`, `SMTP_USERNAME`,
`SMTP_SECURITY` and `SMTP_FROM` (`Settings.bare_password_profile`).

A profile may name a ``provider`` (`sender.providers`: the preset fills what the profile omits and
brings the provider's limits) and sign in with ``oauth2`` instead of a password
(`sender.oauth2.config`; the two exclude each other, and a token never travels without TLS).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sender.addresses import Mailbox, parse_mailbox
from sender.errors import AddressError, ConfigurationError
from sender.header_safety import has_control_characters
from sender.key_names import unknown_keys
from sender.oauth2.config import OAuth2Config, parse_oauth2
from sender.providers import STANDARD_PORTS, Limits, Security, apply_preset

__all__ = ["Security", "SmtpProfile", "is_loopback", "parse_profile"]

_SECURITIES: tuple[Security, ...] = ("ssl", "starttls", "none")
_PROFILE_KEYS = {
    "host", "port", "security", "username", "password", "from", "provider", "region", "oauth2",
}  # fmt: skip


def is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class SmtpProfile:
    host: str
    port: int
    security: Security
    username: str | None = None
    # Kept out of repr so that no traceback, debugger or log line ever shows it.
    password: str | None = field(default=None, repr=False)
    from_address: Mailbox | None = None
    provider: str | None = None  # the preset's name
    # Sign in with a token instead of the password (secrets inside: never in a repr).
    oauth2: OAuth2Config | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)

    def default_sender(self) -> Mailbox | None:
        """The profile's `from`, else the username when it is an address."""
        if self.from_address is not None:
            return self.from_address
        if self.username and "@" in self.username:
            try:
                return parse_mailbox(self.username)
            except AddressError:
                return None
        return None


def _default_security(port: int) -> Security:
    return "ssl" if port == STANDARD_PORTS["ssl"] else "starttls"


def _build(raw: Mapping[str, Any]) -> SmtpProfile:
    values, preset = apply_preset(raw)
    host = _host(values)
    port, security = _port_and_security(values, host)
    username, password, oauth2 = _credentials(values, security)
    return SmtpProfile(
        host,
        port,
        security,
        username,
        password,
        _from_address(values),
        provider=preset.name if preset else None,
        oauth2=oauth2,
        limits=preset.limits if preset else Limits(),
    )


def _host(values: Mapping[str, Any]) -> str:
    host = values.get("host")
    if not isinstance(host, str) or not host.strip() or has_control_characters(host):
        raise ConfigurationError("the SMTP profile has no valid host")
    return host.strip()


def _port(raw: object) -> int | None:
    """The profile's port: an int (not a bool) or a string of digits; None when omitted.

    JSON gives floats (1.5, 1e400 as inf) and booleans too: none of them is a port.
    """
    if raw is None or raw == "":
        return None
    digits = raw.strip() if isinstance(raw, str) else ""
    if digits.isascii() and digits.isdigit():
        # int() of thousands of digits raises: anything over 5 cannot be a port anyway.
        port = int(digits) if len(digits) <= 5 else 0
    elif isinstance(raw, int) and not isinstance(raw, bool):
        port = raw
    else:
        raise ConfigurationError("the SMTP profile's port is not a number")
    if not 0 < port < 65536:
        raise ConfigurationError("the SMTP profile's port is out of range")
    return port


def _port_and_security(values: Mapping[str, Any], host: str) -> tuple[int, Security]:
    """The port and TLS mode, each defaulted from the other (465 <-> ssl, 587 <-> starttls)."""
    port = _port(values.get("port"))
    raw_security = values.get("security")
    if raw_security in (None, ""):
        port = port or STANDARD_PORTS["ssl"]
        security = _default_security(port)
    elif raw_security in _SECURITIES:
        security = raw_security
        port = port or STANDARD_PORTS[security]
    else:
        raise ConfigurationError("the SMTP profile's security must be ssl, starttls or none")
    if security == "none" and not is_loopback(host):
        raise ConfigurationError(
            "security 'none' is allowed only for a loopback host; use ssl or starttls"
        )
    return port, security


def _credentials(
    values: Mapping[str, Any], security: Security
) -> tuple[str | None, str | None, OAuth2Config | None]:
    """Username, and a password or an OAuth2 configuration (never both)."""
    username = values.get("username") or None
    password = values.get("password")
    if username is not None and (not isinstance(username, str) or has_control_characters(username)):
        raise ConfigurationError("the SMTP profile's username is not a valid string")
    if password is not None and not isinstance(password, str):
        raise ConfigurationError("the SMTP profile's password is not a string")
    if values.get("oauth2") is None:
        if username and not password:
            raise ConfigurationError(
                "the SMTP profile has a username but neither password nor oauth2"
            )
        return username, password or None, None
    if password:
        raise ConfigurationError(
            "the SMTP profile has both oauth2 and a password; they exclude each other: "
            "remove the password to sign in with a token"
        )
    if security == "none":
        raise ConfigurationError(
            "an oauth2 token is only ever sent over TLS: security 'none' cannot sign in "
            "with oauth2; use ssl or starttls"
        )
    return username, None, parse_oauth2(values["oauth2"], username=username)


def _from_address(values: Mapping[str, Any]) -> Mailbox | None:
    raw_from = values.get("from")
    if raw_from in (None, ""):
        return None
    if not isinstance(raw_from, str):
        raise ConfigurationError("the SMTP profile's from is not a string")
    try:
        return parse_mailbox(raw_from)
    except AddressError as exc:
        raise ConfigurationError(f"the SMTP profile's from address {exc}") from None


def parse_profile(payload: bytes, fallback: Mapping[str, str] | None = None) -> SmtpProfile:
    """Parse a secret payload into a profile; raise `ConfigurationError` naming what is wrong.

    `fallback` holds the profile fields a bare-password payload takes from the environment
    (`host`, `port`, `security`, `username`, `from`; see `Settings.bare_password_profile`).
    The error text never includes the payload: a malformed secret may still hold a password.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError("the SMTP secret is not valid UTF-8") from None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        unknown = unknown_keys(document, _PROFILE_KEYS)
        if unknown:
            raise ConfigurationError(f"the SMTP profile has {unknown}")
        return _build(document)
    # A bare password: everything else comes from the environment.
    password = text[:-1] if text.endswith("\n") else text
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise ConfigurationError("the SMTP secret is empty")
    fallback = fallback or {}
    if not fallback.get("username", "").strip():
        raise ConfigurationError(
            "the SMTP secret is a bare password, so SMTP_USERNAME (and SMTP_HOST) must be set"
        )
    return _build({**fallback, "username": fallback["username"].strip(), "password": password})
