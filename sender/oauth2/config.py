"""The profile's ``oauth2`` object, parsed into one typed value per flow.

Errors name the flow and the field, never a value: a malformed object may hold a client secret,
a refresh token or a private key in the wrong place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from sender.errors import ConfigurationError
from sender.header_safety import has_control_characters
from sender.key_names import unknown_keys

Flow = Literal["microsoft", "google_service_account", "refresh_token"]
FLOWS: tuple[Flow, ...] = ("microsoft", "google_service_account", "refresh_token")

MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"
# Exchange Online's resource; ".default" asks for the app roles granted to the Entra app
# (SMTP.SendAsApp).
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret

_KEYS: dict[Flow, frozenset[str]] = {
    "microsoft": frozenset({"flow", "tenant", "client_id", "client_secret", "authority", "scope"}),
    "google_service_account": frozenset({"flow", "service_account", "key", "token_uri"}),
    "refresh_token": frozenset(
        {"flow", "token_uri", "client_id", "client_secret", "refresh_token", "scope"}
    ),
}
# The fields of a service account key file that google-auth needs to sign a JWT grant.
_KEY_FIELDS = ("client_email", "private_key")


@dataclass(frozen=True, slots=True)
class MicrosoftFlow:
    """Entra ID client credentials (MSAL): the app's own token for Exchange Online."""

    username: str
    client_id: str
    client_secret: str = field(repr=False)
    authority: str
    scope: str = MICROSOFT_SCOPE
    flow: Literal["microsoft"] = "microsoft"


@dataclass(frozen=True, slots=True)
class GoogleServiceAccountFlow:
    """Domain-wide delegation: a JWT grant for ``username`` signed by a service account.

    ``key`` set: signed locally with that key. ``key`` None: signed by the IAM Credentials API as
    ``service_account``, authorised by the function's own identity (keyless).
    """

    username: str
    service_account: str
    # The profile's token_uri, else the key's own, else Google's: always https (checked).
    token_uri: str
    key: Mapping[str, Any] | None = field(default=None, repr=False)
    scope: str = GOOGLE_MAIL_SCOPE
    flow: Literal["google_service_account"] = "google_service_account"

    @property
    def keyless(self) -> bool:
        return self.key is None


@dataclass(frozen=True, slots=True)
class RefreshTokenFlow:
    """The standard refresh grant against any OAuth2 token endpoint."""

    username: str
    token_uri: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    flow: Literal["refresh_token"] = "refresh_token"


OAuth2Config = MicrosoftFlow | GoogleServiceAccountFlow | RefreshTokenFlow


def _problem(flow: str, text: str) -> ConfigurationError:
    return ConfigurationError(f"the SMTP profile's oauth2 (flow {flow}) {text}")


def _text(
    raw: Mapping[str, Any], flow: str, name: str, *, required: bool, label: str | None = None
) -> str | None:
    """*raw[name]*, stripped; *label* is how errors name the field (default *name*)."""
    label = label or name
    value = raw.get(name)
    if value is None or value == "":
        if required:
            raise _problem(flow, f"needs {label}")
        return None
    if not isinstance(value, str) or not value.strip() or has_control_characters(value):
        raise _problem(flow, f"has an invalid {label} (a non-empty single-line string is needed)")
    return value.strip()


def _https_url(
    raw: Mapping[str, Any], flow: str, name: str, *, required: bool, label: str | None = None
) -> str | None:
    """*raw[name]* as an https URL; *label* is how errors name the field (default *name*)."""
    label = label or name
    value = _text(raw, flow, name, required=required, label=label)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        # Tokens, client secrets and signed grants never travel over plain HTTP.
        raise _problem(flow, f"has an invalid {label} (an https:// URL is needed)")
    return value


def _scopes(raw: Mapping[str, Any], flow: str) -> tuple[str, ...]:
    value = raw.get("scope")
    if value is None or value == "":
        return ()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(
        isinstance(s, str) and s and not has_control_characters(s) for s in items
    ):
        raise _problem(flow, "has an invalid scope (a string or a list of strings is needed)")
    return tuple(items)


def _microsoft(raw: Mapping[str, Any], username: str) -> MicrosoftFlow:
    flow = "microsoft"
    client_id = _text(raw, flow, "client_id", required=True)
    client_secret = _text(raw, flow, "client_secret", required=True)
    authority = _https_url(raw, flow, "authority", required=False)
    tenant = _text(raw, flow, "tenant", required=authority is None)
    if authority is None:
        if tenant is None or "/" in tenant or "?" in tenant or "#" in tenant:
            raise _problem(flow, "has an invalid tenant (a tenant id or domain is needed)")
        authority = f"{MICROSOFT_AUTHORITY_HOST}/{tenant}"
    elif not urlsplit(authority).path.strip("/"):
        raise _problem(flow, "has an authority without the tenant in its path")
    scopes = _scopes(raw, flow)
    if len(scopes) > 1:
        raise _problem(flow, "takes one scope (the resource's /.default)")
    assert client_id is not None  # required=True
    assert client_secret is not None
    return MicrosoftFlow(
        username=username,
        client_id=client_id,
        client_secret=client_secret,
        authority=authority.rstrip("/"),
        scope=scopes[0] if scopes else MICROSOFT_SCOPE,
    )


def _service_account_key(raw: Mapping[str, Any], flow: str) -> Mapping[str, Any] | None:
    value = raw.get("key")
    if value is None:
        return None
    if isinstance(value, str):  # the key file's JSON pasted as a string
        try:
            value = json.loads(value)
        except ValueError:
            raise _problem(flow, "has a key that is not a service account key JSON") from None
    if not isinstance(value, dict) or value.get("type") != "service_account":
        raise _problem(flow, 'has a key whose "type" is not "service_account"')
    missing = [name for name in _KEY_FIELDS if not isinstance(value.get(name), str)]
    if missing:
        raise _problem(flow, f"has a key without {', '.join(missing)}")
    return MappingProxyType(dict(value))


def _google_service_account(raw: Mapping[str, Any], username: str) -> GoogleServiceAccountFlow:
    flow = "google_service_account"
    key = _service_account_key(raw, flow)
    account = _text(raw, flow, "service_account", required=key is None)
    if key is not None:
        key_email = str(key["client_email"])
        if account is not None and account.lower() != key_email.lower():
            raise _problem(flow, "has a service_account that is not the key's client_email")
        account = key_email
    assert account is not None  # required when there is no key
    if "@" not in account:
        raise _problem(flow, "has an invalid service_account (an email address is needed)")
    token_uri = _https_url(raw, flow, "token_uri", required=False)
    if token_uri is None and key is not None:
        # The key file's own token_uri is where the signed grant goes: held to the same rule.
        token_uri = _https_url(key, flow, "token_uri", required=False, label="key.token_uri")
    return GoogleServiceAccountFlow(
        username=username,
        service_account=account,
        token_uri=token_uri or GOOGLE_TOKEN_URI,
        key=key,
    )


def _refresh_token(raw: Mapping[str, Any], username: str) -> RefreshTokenFlow:
    flow = "refresh_token"
    token_uri = _https_url(raw, flow, "token_uri", required=True)
    client_id = _text(raw, flow, "client_id", required=True)
    client_secret = _text(raw, flow, "client_secret", required=True)
    refresh_token = _text(raw, flow, "refresh_token", required=True)
    # All required=True: present from here on.
    assert token_uri is not None
    assert client_id is not None
    assert client_secret is not None
    assert refresh_token is not None
    return RefreshTokenFlow(
        username=username,
        token_uri=token_uri,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        scopes=_scopes(raw, flow),
    )


def parse_oauth2(raw: object, *, username: str | None) -> OAuth2Config:
    """Parse the profile's ``oauth2`` value; *username* is the profile's (the mailbox).

    Raises `ConfigurationError` naming the flow and the field at fault.
    """
    if not isinstance(raw, dict):
        raise ConfigurationError("the SMTP profile's oauth2 must be a JSON object")
    flow = raw.get("flow")
    if flow not in FLOWS:
        raise ConfigurationError(
            f"the SMTP profile's oauth2.flow must be one of {', '.join(FLOWS)}"
        )
    unknown = unknown_keys(raw, _KEYS[flow])
    if unknown:
        raise _problem(flow, f"has {unknown}")
    if not username or has_control_characters(username):
        raise _problem(flow, "needs the profile's username: the mailbox the token signs in as")
    if flow == "microsoft":
        return _microsoft(raw, username)
    if flow == "google_service_account":
        return _google_service_account(raw, username)
    return _refresh_token(raw, username)
