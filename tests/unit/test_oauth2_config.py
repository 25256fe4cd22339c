"""The profile's ``oauth2`` object: one typed value per flow, defaults filled in, and errors that
name the flow and the field but never repeat a value (it may be a secret in the wrong place)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sender.errors import ConfigurationError
from sender.oauth2 import (
    GOOGLE_MAIL_SCOPE,
    GOOGLE_TOKEN_URI,
    MICROSOFT_SCOPE,
    GoogleServiceAccountFlow,
    MicrosoftFlow,
    RefreshTokenFlow,
    parse_oauth2,
)

USER = "alerts@contoso.com"
CANARY = "Canary-Secret-ß-7731"
KEY = {
    "type": "service_account",
    "client_email": "mailer@p.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nnot-checked-here\n-----END PRIVATE KEY-----\n",
}


def _refused(raw: object, username: str | None = USER) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_oauth2(raw, username=username)
    assert caught.value.http_status == 500
    return caught.value.reason


def test_microsoft_with_a_tenant_gets_the_public_authority_and_exchange_scope() -> None:
    config = parse_oauth2(
        {"flow": "microsoft", "tenant": "contoso.onmicrosoft.com", "client_id": "c",
         "client_secret": CANARY},
        username=USER,
    )  # fmt: skip
    assert config == MicrosoftFlow(
        username=USER,
        client_id="c",
        client_secret=CANARY,
        authority="https://login.microsoftonline.com/contoso.onmicrosoft.com",
        scope=MICROSOFT_SCOPE,
    )
    assert CANARY not in repr(config)


def test_microsoft_authority_overrides_the_tenant_for_sovereign_clouds() -> None:
    config = parse_oauth2(
        {"flow": "microsoft", "authority": "https://login.microsoftonline.us/tid/",
         "client_id": "c", "client_secret": "s", "scope": "https://outlook.office365.us/.default"},
        username=USER,
    )  # fmt: skip
    assert isinstance(config, MicrosoftFlow)
    assert config.authority == "https://login.microsoftonline.us/tid"
    assert config.scope == "https://outlook.office365.us/.default"


def test_google_service_account_keyless() -> None:
    config = parse_oauth2(
        {"flow": "google_service_account", "service_account": "mailer@p.iam.gserviceaccount.com"},
        username=USER,
    )
    assert config == GoogleServiceAccountFlow(
        username=USER,
        service_account="mailer@p.iam.gserviceaccount.com",
        token_uri=GOOGLE_TOKEN_URI,
    )
    assert isinstance(config, GoogleServiceAccountFlow)
    assert config.keyless
    assert config.scope == GOOGLE_MAIL_SCOPE


@pytest.mark.parametrize("key", [KEY, json.dumps(KEY)], ids=["object", "json-string"])
def test_google_service_account_with_a_key(key: object) -> None:
    config = parse_oauth2(
        {"flow": "google_service_account", "key": key, "token_uri": "https://idp.test/token"},
        username=USER,
    )
    assert isinstance(config, GoogleServiceAccountFlow)
    assert not config.keyless
    assert config.service_account == KEY["client_email"]
    assert config.token_uri == "https://idp.test/token"
    assert "PRIVATE KEY" not in repr(config)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"key": {**KEY, "token_uri": "https://key.test/token"}}, "https://key.test/token"),
        ({"key": {**KEY, "token_uri": "https://key.test/token"},
          "token_uri": "https://profile.test/token"}, "https://profile.test/token"),
        ({"key": KEY}, GOOGLE_TOKEN_URI),
        ({"key": {**KEY, "token_uri": ""}}, GOOGLE_TOKEN_URI),
    ],
    ids=["the key's", "the profile's over the key's", "Google's", "Google's for an empty one"],
)  # fmt: skip
def test_the_effective_token_uri_is_settled_when_parsing(
    raw: dict[str, Any], expected: str
) -> None:
    config = parse_oauth2({"flow": "google_service_account", **raw}, username=USER)
    assert isinstance(config, GoogleServiceAccountFlow)
    assert config.token_uri == expected


@pytest.mark.parametrize("token_uri", ["http://127.0.0.1:8080/token", "ftp://x/t", 7])
def test_a_keys_own_token_uri_must_be_https(token_uri: object) -> None:
    """The signed JWT grant goes to the key's token_uri: never over plain HTTP."""
    reason = _refused({"flow": "google_service_account", "key": {**KEY, "token_uri": token_uri}})
    assert "(flow google_service_account) has an invalid key.token_uri" in reason
    assert "PRIVATE KEY" not in reason
    assert "127.0.0.1" not in reason


def test_refresh_token_flow_with_scopes() -> None:
    config = parse_oauth2(
        {"flow": "refresh_token", "token_uri": "https://idp.test/token", "client_id": "c",
         "client_secret": "s", "refresh_token": CANARY, "scope": "a b"},
        username=USER,
    )  # fmt: skip
    assert config == RefreshTokenFlow(
        username=USER,
        token_uri="https://idp.test/token",
        client_id="c",
        client_secret="s",
        refresh_token=CANARY,
        scopes=("a", "b"),
    )
    assert CANARY not in repr(config)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a string", "must be a JSON object"),
        ({"flow": "password"}, "oauth2.flow must be one of microsoft, google_service_account"),
        ({"flow": "microsoft", "client_id": "c", "client_secret": "s"}, "needs tenant"),
        ({"flow": "microsoft", "tenant": "t", "client_secret": "s"}, "needs client_id"),
        ({"flow": "microsoft", "tenant": "t", "client_id": "c"}, "needs client_secret"),
        ({"flow": "microsoft", "tenant": "t/x", "client_id": "c", "client_secret": "s"},
         "invalid tenant"),
        ({"flow": "microsoft", "authority": "http://login.example/t", "client_id": "c",
          "client_secret": "s"}, "invalid authority (an https:// URL is needed)"),
        ({"flow": "microsoft", "authority": "https://login.example/", "client_id": "c",
          "client_secret": "s"}, "authority without the tenant"),
        ({"flow": "google_service_account"}, "needs service_account"),
        ({"flow": "google_service_account", "service_account": "not-an-email"},
         "invalid service_account"),
        ({"flow": "google_service_account", "key": {"type": "authorized_user"}},
         '"type" is not "service_account"'),
        ({"flow": "google_service_account", "key": {"type": "service_account"}},
         "key without client_email, private_key"),
        ({"flow": "google_service_account", "key": "{not json"}, "not a service account key"),
        ({"flow": "google_service_account", "key": KEY, "service_account": "other@p.iam"},
         "not the key's client_email"),
        ({"flow": "refresh_token", "token_uri": "https://i/t", "client_id": "c",
          "client_secret": "s"}, "needs refresh_token"),
        ({"flow": "refresh_token", "token_uri": "http://i/t", "client_id": "c",
          "client_secret": "s", "refresh_token": "r"}, "invalid token_uri"),
        ({"flow": "refresh_token", "token_uri": "https://i/t", "client_id": "c",
          "client_secret": "s", "refresh_token": "r", "scope": 7}, "invalid scope"),
        ({"flow": "microsoft", "tenant": "t", "client_id": "c", "client_secret": "s",
          "clientsecret": "x"}, "unknown keys: clientsecret"),
    ],
)  # fmt: skip
def test_errors_name_the_flow_and_field(raw: Any, expected: str) -> None:
    reason = _refused(raw)
    assert expected in reason
    if isinstance(raw, dict) and raw.get("flow") in ("microsoft", "refresh_token"):
        assert f"(flow {raw['flow']})" in reason


def test_the_mailbox_username_is_required() -> None:
    raw = {"flow": "google_service_account", "service_account": "m@p.iam.gserviceaccount.com"}
    assert "needs the profile's username" in _refused(raw, username=None)
    assert "needs the profile's username" in _refused(raw, username="")


@pytest.mark.parametrize(
    "raw",
    [
        {"flow": CANARY},
        {"flow": "microsoft", "tenant": "t", "client_id": "c", "client_secret": "s", CANARY: 1},
        {"flow": "microsoft", "tenant": "t", "client_id": "c", "client_secret": ["x", CANARY]},
        {"flow": "refresh_token", "token_uri": CANARY, "client_id": "c", "client_secret": "s",
         "refresh_token": "r"},
        {"flow": "google_service_account", "key": CANARY},
        {"flow": "google_service_account", "service_account": CANARY},
        {"flow": "microsoft", "tenant": f"a/{CANARY}", "client_id": "c", "client_secret": "s"},
    ],
)  # fmt: skip
def test_no_value_is_ever_repeated_in_an_error(raw: dict[str, Any]) -> None:
    reason = _refused(raw)
    assert CANARY not in reason
    assert "Canary" not in reason
