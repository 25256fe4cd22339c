"""What a Microsoft 365 / Workspace admin sets up at the identity provider, for one mailbox: the
profile `oauth2` object of each flow, ready to store, backed by the fake IdP (`FakeIdP`)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.fake_idp import FakeIdP, TokenFlow

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


def admin_setup(idp: FakeIdP, user: str) -> dict[str, dict[str, Any]]:
    """Register an Entra app, a keyed and a keyless service account and a refresh token for
    `user`; returns each flow's `oauth2` object (see `IDP_FLOW` for the names)."""
    client_id, secret = "app-" + uuid.uuid4().hex[:8], "entra-" + uuid.uuid4().hex
    idp.add_entra_app(TENANT, client_id, secret, user)
    account = idp.add_service_account(MAILER)
    idp.add_service_account(KEYLESS_MAILER)
    idp.allow_signing(KEYLESS_MAILER)  # roles/iam.serviceAccountTokenCreator for the function
    refresh = idp.add_refresh_token("rt-client", "rt-secret", user)
    return {
        "microsoft": {
            "flow": "microsoft",
            "tenant": TENANT,
            "client_id": client_id,
            "client_secret": secret,
            "authority": idp.authority(TENANT),
        },
        "google_key": {
            "flow": "google_service_account",
            "key": account.key_info(),
            "token_uri": idp.google_token_uri,
        },
        # Google's default token URL and IAM host: the CONNECT proxy takes them to the fake IdP.
        "google_keyless": {"flow": "google_service_account", "service_account": KEYLESS_MAILER},
        "refresh_token": {
            "flow": "refresh_token",
            "token_uri": idp.google_token_uri,
            "client_id": "rt-client",
            "client_secret": "rt-secret",
            "refresh_token": refresh,
        },
    }
