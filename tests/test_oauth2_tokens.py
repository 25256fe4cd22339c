"""`sender.oauth2.fetch_token` against the fake IdP through the real MSAL and google-auth: the
refusals an IdP really gives (not injected) come back as misconfigured errors naming the flow
and the code, outages as transient ones, and certificates are really checked."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sender.oauth2 import (
    IdentityProviderRefusedError,
    IdentityProviderUnavailableError,
    fetch_token,
    parse_oauth2,
)
from tests.support import jwt_rs256
from tests.support.fake_idp import FakeIdP, ServiceAccount
from tests.support.oauth_accounts import entra_app, google_key_account, refresh_token_account

USER = "alerts@example.com"


def _fetch(idp: FakeIdP, oauth2: dict[str, Any], ca_file: str | None = "idp") -> Any:
    config = parse_oauth2(oauth2, username=USER)
    return fetch_token(config, timeout_s=10, ca_file=str(idp.ca_file) if ca_file else None)


def _entra(idp: FakeIdP, secret: str | None = None) -> dict[str, Any]:
    """A fresh Entra app in a tenant of its own; *secret* in place of its client secret."""
    oauth2 = entra_app(idp, USER, tenant=f"t{uuid.uuid4().hex[:8]}.onmicrosoft.com")
    return oauth2 if secret is None else {**oauth2, "client_secret": secret}


def test_entra_token_is_entra_sized_and_counted_once(idp: FakeIdP) -> None:
    before = idp.token_requests("microsoft")
    token = _fetch(idp, _entra(idp))
    assert 2300 <= len(token.value) <= 2500
    assert token.expires_in_s == pytest.approx(3600)
    assert idp.token_requests("microsoft") == before + 1


def test_a_wrong_client_secret_is_invalid_client_with_its_aadsts_number(idp: FakeIdP) -> None:
    with pytest.raises(IdentityProviderRefusedError) as caught:
        _fetch(idp, _entra(idp, secret="expired-secret"))
    assert caught.value.code == "invalid_client"
    assert caught.value.reason == (
        "oauth2 flow microsoft: the identity provider answered invalid_client (AADSTS7000215)"
    )
    assert "expired-secret" not in caught.value.reason


def test_an_unknown_tenant_is_misconfigured(idp: FakeIdP) -> None:
    with pytest.raises(IdentityProviderRefusedError) as caught:
        _fetch(
            idp,
            {
                "flow": "microsoft",
                "authority": idp.authority("nope.example"),
                "client_id": "c",
                "client_secret": "s",
            },
        )
    assert "check tenant or authority" in caught.value.reason


def test_without_the_idps_ca_the_certificate_is_refused(idp: FakeIdP) -> None:
    with pytest.raises(IdentityProviderUnavailableError) as caught:
        _fetch(idp, _entra(idp), ca_file=None)
    assert "OAUTH_CA_FILE" in caught.value.reason


def test_a_key_the_idp_does_not_know_is_invalid_grant(idp: FakeIdP) -> None:
    """The JWT signature is really checked: a key of the same account but not registered."""
    email = f"sa-{uuid.uuid4().hex[:8]}@p.iam.gserviceaccount.com"
    idp.add_service_account(email)
    forged = ServiceAccount(email, jwt_rs256.new_key(), "forged", frozenset())
    with pytest.raises(IdentityProviderRefusedError) as caught:
        _fetch(
            idp,
            {
                "flow": "google_service_account",
                "key": forged.key_info(),
                "token_uri": idp.google_token_uri,
            },
        )
    assert caught.value.code == "invalid_grant"


def test_delegation_not_authorised_for_mail_is_unauthorized_client(idp: FakeIdP) -> None:
    email = f"sa-{uuid.uuid4().hex[:8]}@p.iam.gserviceaccount.com"
    oauth2 = google_key_account(
        idp, email, delegated_scopes=["https://www.googleapis.com/auth/drive"]
    )
    with pytest.raises(IdentityProviderRefusedError) as caught:
        _fetch(idp, oauth2)
    assert caught.value.code == "unauthorized_client"
    assert "google_service_account" in caught.value.reason


def test_key_flow_sends_the_mailbox_as_subject(idp: FakeIdP) -> None:
    email = f"sa-{uuid.uuid4().hex[:8]}@p.iam.gserviceaccount.com"
    _fetch(idp, google_key_account(idp, email))
    assert idp.jwt_subjects[-1] == USER
    [issued] = [t for t in idp.issued("google_service_account") if t.client == email]
    assert issued.subject == USER
    assert issued.scopes == {"https://mail.google.com/"}


def test_a_revoked_refresh_token_is_invalid_grant(idp: FakeIdP) -> None:
    oauth2 = refresh_token_account(idp, USER)
    refresh = oauth2["refresh_token"]
    assert _fetch(idp, oauth2).value.startswith("ya29.")
    idp.revoke_refresh_token(refresh)
    with pytest.raises(IdentityProviderRefusedError) as caught:
        _fetch(idp, oauth2)
    assert caught.value.code == "invalid_grant"
    assert refresh not in caught.value.reason


def test_a_google_token_endpoint_answering_503_is_transient_after_google_auths_retries(
    idp: FakeIdP,
) -> None:
    oauth2 = refresh_token_account(idp, USER)
    before = idp.token_requests("refresh_token")
    idp.fail("google_token", 503)
    with pytest.raises(IdentityProviderUnavailableError) as caught:
        _fetch(idp, oauth2)
    assert caught.value.http_status == 503
    # google-auth retries a 503 itself (3 attempts); the IdP saw each of them.
    assert idp.token_requests("refresh_token") - before == 3


def test_an_unreachable_idp_is_transient(idp: FakeIdP) -> None:
    with pytest.raises(IdentityProviderUnavailableError) as caught:
        _fetch(
            idp,
            {
                "flow": "refresh_token",
                "token_uri": "https://127.0.0.1:9/token",
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": "r",
            },
        )
    assert caught.value.reason.endswith("could not be reached")


@pytest.mark.parametrize("curve", ["ec", "ed25519"])
def test_a_key_that_is_not_rsa_is_invalid_key_and_nothing_is_requested(
    idp: FakeIdP, curve: str
) -> None:
    """google-auth signs the grant with RS256 only: an EC or Ed25519 private key loads, then
    failed to sign with a TypeError (a 500 internal). It is the operator's key to replace."""
    account = idp.add_service_account(f"sa-{uuid.uuid4().hex[:8]}@p.iam.gserviceaccount.com")
    other = (
        ec.generate_private_key(ec.SECP256R1()) if curve == "ec" else Ed25519PrivateKey.generate()
    )
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    before = idp.token_requests("google_service_account")
    key = {**account.key_info(token_uri=idp.google_token_uri), "private_key": pem}
    with pytest.raises(IdentityProviderRefusedError) as caught:
        _fetch(idp, {"flow": "google_service_account", "key": key})
    assert caught.value.code == "invalid_key"
    assert caught.value.http_status == 500
    assert "oauth2.key.private_key" in caught.value.reason
    assert "PRIVATE KEY" not in caught.value.reason
    assert idp.token_requests("google_service_account") == before
