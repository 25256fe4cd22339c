"""Signing in with OAuth2: the profile's ``oauth2`` object, token fetches, and the token cache.

- `parse_oauth2` (config): the profile's ``oauth2`` dict -> `MicrosoftFlow` /
  `GoogleServiceAccountFlow` / `RefreshTokenFlow`, or a `ConfigurationError` naming the field.
- `fetch_token` (flows): one fresh `AccessToken` from MSAL or google-auth; failures are
  `IdentityProviderRefusedError` (misconfigured) or `IdentityProviderUnavailableError` (transient).
- `TokenCache` (cache): per-key reuse until shortly before expiry, single-flight, bounded wait,
  `invalidate` for a token the SMTP server refused.
"""

from sender.errors import IdentityProviderRefusedError, IdentityProviderUnavailableError
from sender.oauth2.cache import TokenCache
from sender.oauth2.config import (
    FLOWS,
    GOOGLE_MAIL_SCOPE,
    GOOGLE_TOKEN_URI,
    MICROSOFT_SCOPE,
    Flow,
    GoogleServiceAccountFlow,
    MicrosoftFlow,
    OAuth2Config,
    RefreshTokenFlow,
    parse_oauth2,
)
from sender.oauth2.flows import AccessToken, fetch_token

__all__ = [
    "FLOWS",
    "GOOGLE_MAIL_SCOPE",
    "GOOGLE_TOKEN_URI",
    "MICROSOFT_SCOPE",
    "AccessToken",
    "Flow",
    "GoogleServiceAccountFlow",
    "IdentityProviderRefusedError",
    "IdentityProviderUnavailableError",
    "MicrosoftFlow",
    "OAuth2Config",
    "RefreshTokenFlow",
    "TokenCache",
    "fetch_token",
    "parse_oauth2",
]
