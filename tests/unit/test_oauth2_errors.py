"""What MSAL, google-auth and requests raise, mapped to misconfigured (500) or transient (503),
with texts that name the flow and the code and never the IdP's free text."""

from __future__ import annotations

import ssl

import google.auth.exceptions
import msal.exceptions
import pytest
import requests

from sender.errors import ConfigurationError, TransientError
from sender.oauth2 import IdentityProviderRefusedError, IdentityProviderUnavailableError
from sender.oauth2.errors import classify_token_error, from_error_response, safe_code
from sender.oauth2.session import trust_context

CANARY = "Canary-Description-7731"


@pytest.mark.parametrize(
    "code", ["invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"]
)
def test_the_contracts_four_codes_are_misconfigured_naming_flow_and_code(code: str) -> None:
    error = from_error_response("refresh_token", code)
    assert isinstance(error, IdentityProviderRefusedError)
    assert isinstance(error, ConfigurationError)
    assert error.http_status == 500
    assert error.code == code
    assert error.reason == f"oauth2 flow refresh_token: the identity provider answered {code}"


def test_entra_error_numbers_are_kept() -> None:
    error = from_error_response("microsoft", "invalid_client", aadsts=[7000222, True, "x"])
    assert error.reason.endswith("invalid_client (AADSTS7000222)")


@pytest.mark.parametrize("code", ["temporarily_unavailable", "server_error", "internal_failure"])
def test_not_now_codes_are_transient(code: str) -> None:
    error = from_error_response("microsoft", code)
    assert isinstance(error, IdentityProviderUnavailableError)
    assert isinstance(error, TransientError)
    assert error.http_status == 503


def test_a_code_that_is_not_an_oauth2_code_is_not_echoed() -> None:
    assert safe_code(f"<script>{CANARY}") == "unknown_error"
    assert safe_code(None) == "unknown_error"
    assert CANARY not in from_error_response("microsoft", CANARY).reason


def test_google_refresh_error_with_an_oauth2_body() -> None:
    exc = google.auth.exceptions.RefreshError(
        f"invalid_grant: {CANARY}",
        {"error": "invalid_grant", "error_description": CANARY},
        retryable=False,
    )
    error = classify_token_error("google_service_account", exc)
    assert isinstance(error, IdentityProviderRefusedError)
    assert error.code == "invalid_grant"
    assert CANARY not in error.reason
    assert "google_service_account" in error.reason


def test_google_refresh_error_after_retries_of_a_5xx_is_transient() -> None:
    exc = google.auth.exceptions.RefreshError("Service Unavailable", retryable=True)
    assert isinstance(classify_token_error("refresh_token", exc), IdentityProviderUnavailableError)


def test_google_refresh_error_wrapping_a_network_error_is_transient() -> None:
    cause = requests.exceptions.ConnectionError("refused")
    transport = google.auth.exceptions.TransportError(cause)
    transport.__cause__ = cause
    exc = google.auth.exceptions.RefreshError(transport)  # how compute_engine wraps it
    error = classify_token_error("google_service_account", exc)
    assert isinstance(error, IdentityProviderUnavailableError)
    assert error.reason.endswith("the identity provider could not be reached")


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (requests.exceptions.ConnectTimeout("t"), "did not answer in time"),
        (requests.exceptions.ReadTimeout("t"), "did not answer in time"),
        (TimeoutError("t"), "did not answer in time"),
        (requests.exceptions.SSLError("cert"), "OAUTH_CA_FILE"),
        (ssl.SSLCertVerificationError(1, "verify failed"), "OAUTH_CA_FILE"),
        (requests.exceptions.ConnectionError("refused"), "could not be reached"),
        (ConnectionRefusedError(111, "refused"), "could not be reached"),
        (msal.exceptions.MsalServiceError("HTTP Error: 503", error=None, error_description=None),
         "server error"),
        (google.auth.exceptions.TransportError("metadata down"), "could not be reached"),
    ],
)  # fmt: skip
def test_network_trouble_is_transient(exc: BaseException, reason: str) -> None:
    error = classify_token_error("microsoft", exc)
    assert isinstance(error, IdentityProviderUnavailableError)
    assert reason in error.reason
    assert error.reason.startswith("oauth2 flow microsoft: ")


def test_no_identity_for_keyless_signing_is_misconfigured() -> None:
    error = classify_token_error(
        "google_service_account", google.auth.exceptions.DefaultCredentialsError("none")
    )
    assert isinstance(error, IdentityProviderRefusedError)
    assert "oauth2.key" in error.reason


def test_a_bug_is_not_relabelled() -> None:
    with pytest.raises(KeyError):
        classify_token_error("microsoft", KeyError("bug"))


def test_an_unreadable_oauth_ca_file_is_misconfigured(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="OAUTH_CA_FILE"):
        trust_context("/nonexistent/ca.pem")
