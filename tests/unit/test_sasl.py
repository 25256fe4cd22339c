"""SASL encoders and the error-challenge decoder against published vectors (RFC 4616, RFC 7628,
Google's XOAUTH2 page) and decoded round trips."""

from __future__ import annotations

import base64

import pytest

from sender import sasl
from sender.errors import SaslError


def _decode(b64: str) -> str:
    return base64.b64decode(b64, validate=True).decode("utf-8")


def test_plain_rfc4616_examples() -> None:
    # RFC 4616 section 4: "\0tim\0tanstaaftanstaaf" and "Ursel\0Kurt\0xipj3plmq".
    assert sasl.plain("tim", "tanstaaftanstaaf") == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
    assert sasl.plain("Kurt", "xipj3plmq", authzid="Ursel") == "VXJzZWwAS3VydAB4aXBqM3BsbXE="


def test_plain_encodes_utf8_and_keeps_separator_characters() -> None:
    encoded = sasl.plain("알림@example.com", "p@ss:wörd/🔑")
    assert base64.b64decode(encoded) == "\0알림@example.com\0p@ss:wörd/🔑".encode()


@pytest.mark.parametrize("field", ["username", "password", "authzid"])
def test_plain_refuses_nul_and_does_not_show_the_value(field: str) -> None:
    values = {"username": "u", "password": "p", "authzid": ""}
    values[field] = "sec\0ret-value"
    with pytest.raises(SaslError) as caught:
        sasl.plain(values["username"], values["password"], values["authzid"])
    assert field in str(caught.value)
    assert "ret-value" not in str(caught.value)


def test_login_is_two_utf8_lines() -> None:
    user, password = sasl.login("ops@example.com", "Pässwort")
    assert _decode(user) == "ops@example.com"
    assert _decode(password) == "Pässwort"


@pytest.mark.parametrize("field", ["username", "password"])
def test_login_refuses_nul_and_does_not_show_the_value(field: str) -> None:
    values = {"username": "u", "password": "p", field: "sec\0ret-value"}
    with pytest.raises(SaslError) as caught:
        sasl.login(values["username"], values["password"])
    assert str(caught.value) == f"AUTH LOGIN cannot carry a NUL character in the {field}"
    assert "ret-value" not in str(caught.value)


def test_xoauth2_matches_googles_published_example() -> None:
    # developers.google.com "OAuth 2.0 Mechanism": user someuser@example.com and this token.
    assert sasl.xoauth2(
        "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    ) == (
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
        "QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


def test_oauthbearer_matches_rfc7628_example() -> None:
    # RFC 7628 section 4.1 (host and port given).
    encoded = sasl.oauthbearer(
        "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", "server.example.com", 143
    )
    assert encoded == (
        "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVy"
        "IHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )


def test_oauthbearer_without_host_escapes_the_gs2_name() -> None:
    decoded = _decode(sasl.oauthbearer("a=b,c@example.com", "tok.en"))
    assert decoded == "n,a=a=3Db=2Cc@example.com,\x01auth=Bearer tok.en\x01\x01"


def test_initial_response_picks_the_mechanism() -> None:
    assert sasl.initial_response("XOAUTH2", "u@x", "t") == sasl.xoauth2("u@x", "t")
    assert sasl.initial_response("OAUTHBEARER", "u@x", "t") == sasl.oauthbearer("u@x", "t")


def test_a_long_entra_sized_token_is_carried_whole() -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "A" * 2400 + ".sig"
    assert _decode(sasl.xoauth2("u@x", token)).endswith(f"auth=Bearer {token}\x01\x01")


@pytest.mark.parametrize("token", ["", "has space", "ctrl\x01a", "ünicode"])
def test_tokens_that_would_break_the_framing_are_refused(token: str) -> None:
    with pytest.raises(SaslError):
        sasl.xoauth2("u@example.com", token)


@pytest.mark.parametrize("user", ["", "a\x01b"])
def test_usernames_that_would_break_the_framing_are_refused(user: str) -> None:
    with pytest.raises(SaslError):
        sasl.oauthbearer(user, "token")


def test_error_challenge_replies() -> None:
    assert sasl.error_challenge_reply("XOAUTH2") == ""
    assert base64.b64decode(sasl.error_challenge_reply("OAUTHBEARER")) == b"\x01"


def test_decode_rfc7628_error_challenge() -> None:
    # RFC 7628 section 4.3.
    challenge = sasl.decode_error_challenge(
        "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3Vy"
        "YXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="
    )
    assert challenge == sasl.OAuthErrorChallenge(
        status="invalid_token",
        scope="example_scope",
        openid_configuration="https://example.com/.well-known/openid-configuration",
    )


def test_decode_googles_xoauth2_error_challenge_given_as_bytes() -> None:
    challenge = sasl.decode_error_challenge(
        b"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
    )
    assert challenge.status == "401"
    assert challenge.schemes == "Bearer"
    assert challenge.scope == "https://mail.google.com/"
    assert challenge.openid_configuration is None


@pytest.mark.parametrize(
    "raw",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'["a list"]').decode(),
        base64.b64encode(b'{"status": 401}').decode(),
        base64.b64encode(b"\xff\xfe").decode(),
    ],
)
def test_decode_refuses_what_is_not_an_error_challenge(raw: str) -> None:
    with pytest.raises(SaslError):
        sasl.decode_error_challenge(raw)
