"""Provider presets and the profile's oauth2/provider fields, as an operator writes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sender.errors import ConfigurationError
from sender.profile import parse_profile
from sender.providers import PRESETS, Limits, pool_size, provider_for_host

CLIENT_SECRET = "entra-Secret~Canary-5521"
MICROSOFT = {
    "flow": "microsoft",
    "tenant": "contoso.onmicrosoft.com",
    "client_id": "11111111-2222-3333-4444-555555555555",
    "client_secret": CLIENT_SECRET,
}


def parse(**values: Any) -> Any:
    return parse_profile(json.dumps(values).encode())


@pytest.mark.parametrize(
    ("values", "host", "port", "security"),
    [
        ({"provider": "gmail"}, "smtp.gmail.com", 465, "ssl"),
        ({"provider": "microsoft365"}, "smtp.office365.com", 587, "starttls"),
        ({"provider": "outlook"}, "smtp-mail.outlook.com", 587, "starttls"),
        ({"provider": "sendgrid"}, "smtp.sendgrid.net", 465, "ssl"),
        ({"provider": "ses", "region": "eu-west-1"}, "email-smtp.eu-west-1.amazonaws.com", 465,
         "ssl"),
        ({"provider": "mailgun"}, "smtp.mailgun.org", 465, "ssl"),
        ({"provider": "mailgun", "region": "eu"}, "smtp.eu.mailgun.org", 465, "ssl"),
        ({"provider": "mailgun", "region": "US"}, "smtp.mailgun.org", 465, "ssl"),
        ({"provider": "postmark"}, "smtp.postmarkapp.com", 587, "starttls"),
    ],
)  # fmt: skip
def test_each_preset_resolves(values: dict[str, Any], host: str, port: int, security: str) -> None:
    profile = parse(**values, username="alerts@example.com", password="pw")
    assert (profile.host, profile.port, profile.security) == (host, port, security)
    assert profile.provider == values["provider"]
    assert provider_for_host(profile.host) == values["provider"]


def test_every_preset_is_tested_above() -> None:
    assert set(PRESETS) == {
        "gmail", "microsoft365", "outlook", "sendgrid", "ses", "mailgun", "postmark",
    }  # fmt: skip


def test_sendgrid_fills_its_username_and_the_profile_may_override_it() -> None:
    assert parse(provider="sendgrid", password="SG.key").username == "apikey"
    assert parse(provider="sendgrid", username="other", password="k").username == "other"


def test_profile_fields_win_over_the_preset() -> None:
    profile = parse(
        provider="microsoft365", host="smtp-legacy.office365.com", port=25, security="starttls",
        username="a@contoso.com", password="pw",
    )  # fmt: skip
    assert (profile.host, profile.port, profile.security) == ("smtp-legacy.office365.com", 25,
                                                               "starttls")  # fmt: skip


def test_security_follows_the_preset_when_only_the_port_is_overridden() -> None:
    """PRODUCT: an omitted security comes from the preset, not from the port's usual mode."""
    assert parse(provider="gmail", port=587, username="a@x.com", password="p").security == "ssl"
    assert (
        parse(provider="microsoft365", port=465, username="a@x.com", password="p").security
        == "starttls"
    )


def test_the_port_follows_a_security_the_profile_overrides() -> None:
    """The preset's port belongs to the preset's security: gmail with starttls is 587."""
    profile = parse(provider="gmail", security="starttls", username="a@x.com", password="p")
    assert (profile.port, profile.security) == (587, "starttls")
    same = parse(provider="gmail", security="ssl", username="a@x.com", password="p")
    assert same.port == 465


def test_an_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse(provider="hotmail", username="a@x.com", password="p")
    assert caught.value.http_status == 500
    assert "'hotmail'" in caught.value.reason
    for name in PRESETS:
        assert name in caught.value.reason


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"provider": "ses"}, "needs the profile's region"),
        ({"provider": "ses", "region": "Europe"}, "AWS region"),
        ({"provider": "mailgun", "region": "asia"}, "one of eu, us"),
        ({"provider": "gmail", "region": "eu"}, "takes no region"),
        ({"host": "smtp.example.com", "region": "eu"}, "needs a provider"),
        ({"provider": ["gmail"]}, "unknown"),
    ],
)
def test_region_rules(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        parse(**values, username="a@x.com", password="p")


def test_limits_are_kept_next_to_the_preset() -> None:
    assert PRESETS["microsoft365"].limits == Limits(connections=3, messages_per_minute=30)
    assert PRESETS["gmail"].limits.recipients_per_message == 100
    assert parse(provider="ses", region="us-east-1", username="u", password="p").limits == Limits(
        recipients_per_message=50
    )
    assert parse(host="smtp.example.com", username="u", password="p").limits == Limits()


def test_the_pool_is_capped_by_the_connection_limit() -> None:
    assert pool_size(4, PRESETS["microsoft365"].limits) == 3
    assert pool_size(2, PRESETS["microsoft365"].limits) == 2
    assert pool_size(4, PRESETS["gmail"].limits) == 4
    assert pool_size(0, PRESETS["microsoft365"].limits) == 0


def test_hosts_of_a_provider_are_recognised_without_the_provider_field() -> None:
    assert provider_for_host("SMTP.Office365.com.") == "microsoft365"
    assert provider_for_host("email-smtp.ap-south-1.amazonaws.com") == "ses"
    assert provider_for_host("smtp.example.com") is None


# --- oauth2 in the profile -----------------------------------------------------------------------


def test_an_oauth2_profile_parses_and_keeps_its_secret_out_of_repr() -> None:
    profile = parse(provider="microsoft365", username="alerts@contoso.com", oauth2=MICROSOFT)
    assert profile.oauth2 is not None
    assert profile.oauth2.flow == "microsoft"
    assert profile.password is None
    assert CLIENT_SECRET not in repr(profile)
    assert CLIENT_SECRET not in repr(profile.oauth2)


def test_oauth2_and_password_exclude_each_other() -> None:
    with pytest.raises(ConfigurationError, match="exclude each other") as caught:
        parse(provider="microsoft365", username="a@contoso.com", password="pw", oauth2=MICROSOFT)
    assert CLIENT_SECRET not in caught.value.reason
    assert "pw" not in caught.value.reason.split()


def test_oauth2_without_tls_is_misconfigured_even_on_loopback() -> None:
    with pytest.raises(ConfigurationError, match="only ever sent over TLS") as caught:
        parse(host="127.0.0.1", port=25, security="none", username="a@x.com", oauth2=MICROSOFT)
    assert caught.value.http_status == 500


def test_oauth2_needs_the_username_it_signs_in_as() -> None:
    with pytest.raises(ConfigurationError, match="needs the profile's username"):
        parse(provider="microsoft365", oauth2=MICROSOFT)


def test_a_username_needs_a_password_or_oauth2() -> None:
    with pytest.raises(ConfigurationError, match="neither password nor oauth2"):
        parse(provider="gmail", username="a@example.com")


def test_a_broken_oauth2_object_names_the_field_never_a_value() -> None:
    broken = {**MICROSOFT, "client_secret": ["not", "a", "string", CLIENT_SECRET]}
    with pytest.raises(ConfigurationError, match="client_secret") as caught:
        parse(provider="microsoft365", username="a@contoso.com", oauth2=broken)
    assert CLIENT_SECRET not in caught.value.reason
