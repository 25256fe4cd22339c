"""Secret payloads: full JSON profiles, bare passwords, and the errors operators see."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sender.config import Settings
from sender.errors import ConfigurationError
from sender.profile import parse_profile

SECRET = "Canary-Pässwort-ß-🔑-7731"


def payload(**values: Any) -> bytes:
    return json.dumps(values).encode()


def test_full_profile() -> None:
    profile = parse_profile(
        payload(
            host="smtp.example.com",
            port=465,
            security="ssl",
            username="me@example.com",
            password=SECRET,
            **{"from": "Alerts <alerts@example.com>"},
        )
    )
    assert (profile.host, profile.port, profile.security) == ("smtp.example.com", 465, "ssl")
    assert profile.password == SECRET
    assert profile.default_sender() is not None
    assert SECRET not in repr(profile)


@pytest.mark.parametrize(
    ("port", "security"), [(465, "ssl"), (587, "starttls"), (2525, "starttls"), (None, "ssl")]
)
def test_security_defaults_from_port(port: int | None, security: str) -> None:
    values: dict[str, Any] = {"host": "smtp.example.com"}
    if port is not None:
        values["port"] = port
    assert parse_profile(payload(**values)).security == security


def test_username_is_the_sender_when_it_is_an_address() -> None:
    profile = parse_profile(payload(host="h.example.com", username="me@example.com", password="x"))
    sender = profile.default_sender()
    assert sender is not None
    assert sender.addr_spec == "me@example.com"
    apikey = parse_profile(payload(host="h.example.com", username="apikey", password="x"))
    assert apikey.default_sender() is None


def fallback(env: dict[str, str]) -> dict[str, str]:
    """The bare-password fields as the function reads them from `env`."""
    return Settings.from_env(env).bare_password_profile()


def test_bare_password_takes_the_rest_from_the_environment() -> None:
    env = {"SMTP_HOST": "smtp.example.com", "SMTP_PORT": "587", "SMTP_USERNAME": "me@example.com"}
    profile = parse_profile((SECRET + "\n").encode(), fallback(env))
    assert profile.password == SECRET  # one trailing newline stripped
    assert (profile.host, profile.port, profile.security) == ("smtp.example.com", 587, "starttls")


@pytest.mark.parametrize(
    "raw",
    [
        payload(port=465),  # no host
        payload(host="smtp.example.com", security="tls"),
        payload(host="smtp.example.com", port="many"),
        payload(host="smtp.example.com", port=70000),
        payload(host="smtp.example.com", security="none"),  # plaintext off loopback
        payload(host="smtp.example.com", username="u"),  # username without password
        payload(host="smtp.example.com", **{"from": "not an address"}),
        payload(host="smtp.example.com", passwd=SECRET),  # a typo'd key
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_profiles_are_configuration_errors(raw: bytes) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_profile(raw, {})
    assert SECRET not in str(caught.value)


def test_bare_password_without_username_is_misconfigured() -> None:
    with pytest.raises(ConfigurationError, match="SMTP_USERNAME"):
        parse_profile(SECRET.encode(), fallback({"SMTP_HOST": "smtp.example.com"}))


def test_security_none_allowed_on_loopback() -> None:
    assert parse_profile(payload(host="127.0.0.1", port=25, security="none")).security == "none"
    assert parse_profile(payload(host="::1", security="none")).port == 25
