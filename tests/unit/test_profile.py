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


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (True, "port is not a number"),
        (False, "port is not a number"),
        (1.5, "port is not a number"),
        (465.0, "port is not a number"),
        ([465], "port is not a number"),
        ("46 5", "port is not a number"),
        ("\u0664\u0666\u0665", "port is not a number"),  # Arabic-Indic digits: int() takes them
        ("-1", "port is not a number"),
        (0, "port is out of range"),
        ("0", "port is out of range"),
        (-25, "port is out of range"),
        (65536, "port is out of range"),
        ("9" * 5000, "port is out of range"),  # int() of it would raise ValueError
    ],
)
def test_a_port_is_an_int_or_a_string_of_digits(port: object, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        parse_profile(payload(host="smtp.example.com", port=port), {})


def test_a_port_that_json_reads_as_infinity_is_not_a_number() -> None:
    """1e400 is a JSON number Python reads as inf: int(inf) raised OverflowError (500 internal)."""
    with pytest.raises(ConfigurationError, match="port is not a number"):
        parse_profile(b'{"host": "smtp.example.com", "port": 1e400}', {})


@pytest.mark.parametrize(("port", "expected"), [(2525, 2525), ("2525", 2525), (" 587 ", 587)])
def test_a_port_given_as_digits_is_taken(port: object, expected: int) -> None:
    assert parse_profile(payload(host="smtp.example.com", port=port), {}).port == expected


@pytest.mark.parametrize("pasted", ["S3cr3tPassw0rd!", SECRET, "x" * 41, "ghp_" + "A1b2" * 15])
def test_an_unknown_key_that_may_be_a_pasted_secret_is_not_repeated(pasted: str) -> None:
    """A password pasted as a key (a lost `"password":` in hand-written JSON) never reaches the
    error text, which ends in responses and logs; a plain typo is still named."""
    with pytest.raises(ConfigurationError) as caught:
        parse_profile(payload(host="smtp.example.com", passwd="x", **{pasted: "y"}), {})
    assert pasted not in str(caught.value)
    assert str(caught.value) == "the SMTP profile has unknown keys: ?, passwd"


def test_bare_password_without_username_is_misconfigured() -> None:
    with pytest.raises(ConfigurationError, match="SMTP_USERNAME"):
        parse_profile(SECRET.encode(), fallback({"SMTP_HOST": "smtp.example.com"}))


def test_security_none_allowed_on_loopback() -> None:
    assert parse_profile(payload(host="127.0.0.1", port=25, security="none")).security == "none"
    assert parse_profile(payload(host="::1", security="none")).port == 25
