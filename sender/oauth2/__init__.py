"""Signing in with OAuth2: the profile's ``oauth2`` object, token fetches, and the token cache.

- `parse_oauth2` (config): the profile's ``oauth2`` dict -> `MicrosoftFlow` /
  `GoogleServiceAccountFlow` / `RefreshTokenFlow`, or a `ConfigurationError` naming the field.
- `fetch_token` (flows): one fresh `AccessToken` from MSAL or google-auth; failures are
  `IdentityProviderRefusedError` (misconfigured) or `IdentityProviderUnavailableError` (transient).
- `TokenCache` (cache): per-key reuse until shortly before expiry, single-flight, bounded wait,
  `invalidate` for a token the SMTP server refused.

The names are loaded on first use: parsing a profile (`sender.profile` imports `config`) must not
load MSAL, google-auth and requests into every cold start, only into those that fetch a token.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# name -> the module that defines it
_WHERE = {
    "IdentityProviderRefusedError": "sender.errors",
    "IdentityProviderUnavailableError": "sender.errors",
    "TokenCache": "sender.oauth2.cache",
    "AccessToken": "sender.oauth2.flows",
    "fetch_token": "sender.oauth2.flows",
    **dict.fromkeys(
        (
            "FLOWS", "GOOGLE_MAIL_SCOPE", "GOOGLE_TOKEN_URI", "MICROSOFT_SCOPE", "Flow",
            "GoogleServiceAccountFlow", "MicrosoftFlow", "OAuth2Config", "RefreshTokenFlow",
            "parse_oauth2",
        ),
        "sender.oauth2.config",
    ),
}  # fmt: skip

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
