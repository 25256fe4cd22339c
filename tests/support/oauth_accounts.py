"""What a Microsoft 365 / Workspace admin sets up at the identity provider, for one mailbox: the
profile `oauth2` object of each flow, ready to store, backed by the fake IdP (`FakeIdP`). One
helper per flow (`entra_app`, `google_key_account`, `google_keyless_account`,
`refresh_token_account`); `admin_setup` registers all four."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from tests.support.fake_idp import FakeIdP, TokenFlow
from tests.support.idp_model import GOOGLE_MAIL_SCOPE

TENANT = "contoso.onmicrosoft.com"
MAILER = "mailer@fake-project.iam.gserviceaccount.com"
KEYLESS_MAILER = "keyless-mailer@fake-project.iam.gserviceaccount.com"
# The profile shapes `admin_setup` returns, and the flow the IdP counts their token requests under.
IDP_FLOW: dict[str, TokenFlow] = {
    "microsoft": "microsoft",
    "google_key": "google_service_account",
    "google_keyless": "google_service_account",
    "refresh_token": "refresh_token",
}


def entra_app(idp: FakeIdP, user: str, *, tenant: str = TENANT) -> dict[str, Any]:
    """Register an Entra app in *tenant* (client credentials, allowed to send as *user*, a fresh
    client id and secret); returns its ``microsoft`` `oauth2` object."""
    client_id, secret = "app-" + uuid.uuid4().hex[:8], "entra-" + uuid.uuid4().hex
    idp.add_entra_app(tenant, client_id, secret, user)
    return {
        "flow": "microsoft",
        "tenant": tenant,
        "client_id": client_id,
        "client_secret": secret,
        "authority": idp.authority(tenant),
    }


def google_key_account(
    idp: FakeIdP,
    email: str = MAILER,
    *,
    delegated_scopes: Iterable[str] = (GOOGLE_MAIL_SCOPE,),
) -> dict[str, Any]:
    """Register a service account with a downloaded key, domain-wide delegation for
    *delegated_scopes* (Gmail's by default); returns its ``google_service_account`` object."""
    account = idp.add_service_account(email, delegated_scopes=delegated_scopes)
    return {
        "flow": "google_service_account",
        "key": account.key_info(),
        "token_uri": idp.google_token_uri,
    }


def google_keyless_account(idp: FakeIdP, email: str = KEYLESS_MAILER) -> dict[str, Any]:
    """Register a service account without a key that the function may sign as
    (roles/iam.serviceAccountTokenCreator); returns its ``google_service_account`` object, which
    uses Google's default token URL and IAM host (the CONNECT proxy takes them to the fake IdP)."""
    idp.add_service_account(email)
    idp.allow_signing(email)
    return {"flow": "google_service_account", "service_account": email}


def refresh_token_account(idp: FakeIdP, user: str) -> dict[str, Any]:
    """Register an OAuth client and a refresh token *user* granted it; returns its
    ``refresh_token`` `oauth2` object."""
    refresh = idp.add_refresh_token("rt-client", "rt-secret", user)
    return {
        "flow": "refresh_token",
        "token_uri": idp.google_token_uri,
        "client_id": "rt-client",
        "client_secret": "rt-secret",
        "refresh_token": refresh,
    }


def admin_setup(idp: FakeIdP, user: str) -> dict[str, dict[str, Any]]:
    """Register an Entra app, a keyed and a keyless service account and a refresh token for
    `user`; returns each flow's `oauth2` object (see `IDP_FLOW` for the names)."""
    return {
        "microsoft": entra_app(idp, user),
        "google_key": google_key_account(idp),
        "google_keyless": google_keyless_account(idp),
        "refresh_token": refresh_token_account(idp, user),
    }
