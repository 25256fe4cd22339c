"""One access token per call, from MSAL or google-auth (never hand-rolled token HTTP).

Each call builds its own HTTP session and library objects: no state survives it, so MSAL's own
token and throttling caches never answer for the IdP (our `TokenCache` decides reuse, and a
rejected token must really be replaced). The cost is one OpenID discovery GET per Entra token,
that is once an hour.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import google.auth
import google.auth.exceptions
import google.auth.iam
import google.auth.transport.requests
import google.oauth2.credentials
import msal
import msal.exceptions
import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from sender.errors import IdentityProviderRefusedError
from sender.oauth2.config import (
    GoogleServiceAccountFlow,
    MicrosoftFlow,
    OAuth2Config,
    RefreshTokenFlow,
)
from sender.oauth2.errors import classify_token_error, from_error_response
from sender.oauth2.session import http_session

# What the function's own identity needs to call the IAM Credentials API (signBlob).
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# A token endpoint that gives no lifetime: assume a short one rather than keep it for ever.
DEFAULT_LIFETIME_S = 600.0
# The IAM answers meaning "this identity may not sign as that account" (or it does not exist).
_IAM_REFUSALS = frozenset({400, 401, 403, 404})


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and how long the IdP said it lives (seconds from when it was issued)."""

    value: str = field(repr=False)
    expires_in_s: float


class _RecordingRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport, remembering the IAM API's last HTTP status.

    google-auth turns every IAM answer that is not 200 into a TransportError with the body in its
    text; the status tells "may not sign" (misconfigured) from "IAM is down" (transient).
    """

    def __init__(self, session: requests.Session) -> None:
        super().__init__(session)
        self.iam_status: int | None = None

    def __call__(
        self,
        url: Any,
        method: Any = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,  # our adapter bounds every request by the fetch's budget anyway
        **kwargs: Any,
    ) -> Any:
        response = super().__call__(url, method, body, headers, timeout, **kwargs)  # type: ignore[no-untyped-call]
        if (urlsplit(url).hostname or "").startswith("iamcredentials."):
            self.iam_status = int(response.status)
        return response


def _lifetime(expiry: datetime | None) -> float:
    if expiry is None:
        return DEFAULT_LIFETIME_S
    now = datetime.now(UTC).replace(tzinfo=None)  # google-auth's expiry is naive UTC
    return max((expiry - now).total_seconds(), 0.0)


def _microsoft(config: MicrosoftFlow, session: requests.Session) -> AccessToken:
    try:
        app = msal.ConfidentialClientApplication(
            config.client_id,
            client_credential=config.client_secret,
            authority=config.authority,
            http_client=session,
            # Never ask login.microsoftonline.com whether the authority is known: the operator
            # named it (a sovereign cloud, a private IdP); the tenant is checked by discovery.
            instance_discovery=False,
            token_cache=msal.TokenCache(),
        )
    except ValueError:
        # MSAL's text echoes the discovery answer; ours names what to check.
        raise IdentityProviderRefusedError(
            config.flow,
            "invalid_tenant",
            "the authority has no OpenID configuration: check tenant or authority",
        ) from None
    result = app.acquire_token_for_client(scopes=[config.scope])
    if isinstance(result, dict) and isinstance(result.get("access_token"), str):
        return AccessToken(
            result["access_token"], float(result.get("expires_in") or DEFAULT_LIFETIME_S)
        )
    error = result.get("error") if isinstance(result, dict) else None
    aadsts = result.get("error_codes") if isinstance(result, dict) else None
    raise from_error_response(config.flow, error, aadsts=aadsts)


def _is_rsa_private_key(pem: object) -> bool:
    """google-auth signs the JWT grant with RS256 only: an EC or Ed25519 key would load, then
    fail to sign with a TypeError."""
    if not isinstance(pem, str):
        return False
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return isinstance(key, rsa.RSAPrivateKey)


def _google_key(config: GoogleServiceAccountFlow, request: _RecordingRequest) -> AccessToken:
    assert config.key is not None
    info = dict(config.key)
    info["token_uri"] = config.token_uri
    invalid_key = IdentityProviderRefusedError(
        config.flow, "invalid_key", "oauth2.key.private_key is not a usable RSA private key"
    )
    if not _is_rsa_private_key(info["private_key"]):
        raise invalid_key
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, subject=config.username, scopes=[config.scope]
        )
    except (ValueError, TypeError):
        raise invalid_key from None
    credentials.refresh(request)
    return AccessToken(str(credentials.token), _lifetime(credentials.expiry))


def _google_keyless(config: GoogleServiceAccountFlow, request: _RecordingRequest) -> AccessToken:
    # The function's own identity (on Cloud Run: the metadata server) authorises signBlob calls
    # that sign the grant as config.service_account; no key of that account ever exists here.
    source, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE], request=request)
    signer = google.auth.iam.Signer(request, source, config.service_account)  # type: ignore[no-untyped-call]
    credentials = service_account.Credentials(  # type: ignore[no-untyped-call]
        signer,
        service_account_email=config.service_account,
        token_uri=config.token_uri,
        scopes=[config.scope],
        subject=config.username,
    )
    try:
        credentials.refresh(request)  # type: ignore[no-untyped-call]
    except google.auth.exceptions.TransportError:
        if request.iam_status in _IAM_REFUSALS:
            raise IdentityProviderRefusedError(
                config.flow,
                "iam_permission_denied",
                f"the IAM Credentials API refused to sign as {config.service_account} "
                f"(HTTP {request.iam_status}): the function's service account needs "
                "roles/iam.serviceAccountTokenCreator on it",
            ) from None
        raise
    return AccessToken(str(credentials.token), _lifetime(credentials.expiry))


def _refresh_token(config: RefreshTokenFlow, request: _RecordingRequest) -> AccessToken:
    credentials = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=config.refresh_token,
        token_uri=config.token_uri,
        client_id=config.client_id,
        client_secret=config.client_secret,
        scopes=list(config.scopes) or None,
    )
    credentials.refresh(request)  # type: ignore[no-untyped-call]
    return AccessToken(str(credentials.token), _lifetime(credentials.expiry))


def fetch_token(
    config: OAuth2Config, *, timeout_s: float, ca_file: str | None = None
) -> AccessToken:
    """Ask the IdP for a fresh token for *config*.

    *timeout_s* bounds each connect and read (pass what is left of the send deadline; the
    `TokenCache` bounds the whole wait); *ca_file* is ``OAUTH_CA_FILE``. Raises
    `IdentityProviderRefusedError` (a `ConfigurationError`) or `IdentityProviderUnavailableError` (a
    `TransientError`); their text names the flow and never holds a secret.
    """
    with contextlib.closing(http_session(ca_file, timeout_s)) as session:
        request = _RecordingRequest(session)
        try:
            if isinstance(config, MicrosoftFlow):
                return _microsoft(config, session)
            if isinstance(config, RefreshTokenFlow):
                return _refresh_token(config, request)
            if config.key is not None:
                return _google_key(config, request)
            return _google_keyless(config, request)
        except (
            google.auth.exceptions.GoogleAuthError,
            msal.exceptions.MsalError,
            requests.exceptions.RequestException,
            OSError,
        ) as exc:
            raise classify_token_error(config.flow, exc) from None
