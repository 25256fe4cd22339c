"""The transport's OAuth2 sign-in against the scripted server (in process, tokens from the fake
identity provider through MSAL): the mechanism it picks, the error challenge, and when it does not
even ask for a token."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.support.certs import CertBundle
from tests.support.constants import SMTP_USER
from tests.support.env import SenderEnv
from tests.support.fake_idp import FakeIdP
from tests.support.fault_server import FaultServer, Mode, Script, reply
from tests.support.oauth_accounts import entra_app
from tests.support.plain_listener import CountingListener

TENANT = "transport.onmicrosoft.com"
MESSAGE = {"to": "ops@example.com", "subject": "s", "text": "t"}
CHALLENGE = base64.b64encode(b'{"status":"invalid_token","scope":"mail"}').decode()


@pytest.fixture
def oauth2(idp: FakeIdP) -> dict[str, Any]:
    return entra_app(idp, SMTP_USER, tenant=TENANT)


def _use(
    sender_env: SenderEnv, idp: FakeIdP, server: FaultServer, oauth2: dict[str, Any], **more: Any
) -> None:
    profile = {**server.profile(), "username": SMTP_USER, "oauth2": oauth2, **more}
    sender_env.store(json.dumps(profile))
    sender_env.set(OAUTH_CA_FILE=str(idp.ca_file))


def _server(script: Script, test_ca: CertBundle, mode: Mode = "ssl") -> FaultServer:
    return FaultServer(script, mode=mode, certs=test_ca if mode != "plain" else None)


def test_oauthbearer_when_the_server_offers_only_that(
    sender_env: SenderEnv, test_ca: CertBundle, idp: FakeIdP, oauth2: Any, http_client: Any
) -> None:
    script = Script(replies={"AUTH": reply(235, "2.7.0 Accepted")},
                    extensions=("AUTH OAUTHBEARER", "ENHANCEDSTATUSCODES"))  # fmt: skip
    with _server(script, test_ca) as server:
        _use(sender_env, idp, server, oauth2)
        response = http_client.post("/", json=MESSAGE)
    assert response.status_code == 200, response.get_data(as_text=True)
    [attempt] = server.auth_attempts
    assert (attempt.mechanism, attempt.encrypted) == ("OAUTHBEARER", True)
    assert len(server.delivered) == 1


def test_xoauth2_is_preferred_when_both_are_offered(
    sender_env: SenderEnv, test_ca: CertBundle, idp: FakeIdP, oauth2: Any, http_client: Any
) -> None:
    script = Script(replies={"AUTH": reply(235, "2.7.0 Accepted")},
                    extensions=("AUTH PLAIN OAUTHBEARER XOAUTH2",))  # fmt: skip
    with _server(script, test_ca) as server:
        _use(sender_env, idp, server, oauth2)
        assert http_client.post("/", json=MESSAGE).status_code == 200
    assert [a.mechanism for a in server.auth_attempts] == ["XOAUTH2"]


def test_an_oauthbearer_error_challenge_is_answered_with_control_a(
    sender_env: SenderEnv, test_ca: CertBundle, idp: FakeIdP, oauth2: Any, http_client: Any
) -> None:
    """RFC 7628 3.2.3: the client answers the error challenge with a single ^A, then gets the
    final 535. The token was fetched for this send (nothing cached), so no second one: the
    secret is re-read, found unchanged: 500."""
    before = idp.token_requests("microsoft")
    script = Script(replies={"AUTH": reply(334, CHALLENGE)}, extensions=("AUTH OAUTHBEARER",))
    with _server(script, test_ca) as server:
        _use(sender_env, idp, server, oauth2)
        response = http_client.post("/", json=MESSAGE)
    assert response.status_code == 500
    assert response.get_json()["smtp_code"] == 535
    assert [s.auth_answers for s in server.sessions if s.auth_answers] == [["AQ=="]]
    assert idp.token_requests("microsoft") == before + 1
    assert server.delivered == []


def test_no_token_is_asked_for_a_server_that_cannot_take_one(
    sender_env: SenderEnv, test_ca: CertBundle, idp: FakeIdP, oauth2: Any, http_client: Any
) -> None:
    before = idp.token_requests("microsoft")
    with _server(Script(extensions=("AUTH PLAIN LOGIN",)), test_ca) as server:
        _use(sender_env, idp, server, oauth2)
        response = http_client.post("/", json=MESSAGE)
    assert response.status_code == 500
    body = response.get_json()
    assert "no OAuth2 mechanism" in body["detail"]
    assert "XOAUTH2 or OAUTHBEARER" in body["hint"]
    assert server.auth_attempts == []
    assert idp.token_requests("microsoft") == before


def test_no_token_on_a_server_without_tls(
    sender_env: SenderEnv, test_ca: CertBundle, idp: FakeIdP, oauth2: Any, http_client: Any
) -> None:
    """A plaintext server advertising XOAUTH2 (the trap): starttls is missing, so nothing."""
    before = idp.token_requests("microsoft")
    script = Script(extensions=("AUTH XOAUTH2",))
    with _server(script, test_ca, mode="plain") as server:
        _use(sender_env, idp, server, oauth2, security="starttls")
        response = http_client.post("/", json=MESSAGE)
    assert response.status_code == 503
    assert "STARTTLS" in response.get_json()["detail"]
    assert "AUTH" not in server.commands
    assert idp.token_requests("microsoft") == before


def test_a_service_account_keys_plain_http_token_uri_is_refused_before_any_request(
    sender_env: SenderEnv, test_ca: CertBundle, idp: FakeIdP, http_client: Any
) -> None:
    """The key file's own token_uri is where the signed JWT grant would go: an http:// one is a
    configuration error naming the field, and neither it nor the SMTP server hears anything."""
    account = idp.add_service_account(f"sa-{uuid.uuid4().hex[:8]}@p.iam.gserviceaccount.com")
    script = Script(replies={"AUTH": reply(235, "2.7.0 Accepted")}, extensions=("AUTH XOAUTH2",))
    with CountingListener() as listener, _server(script, test_ca) as server:
        key = account.key_info(token_uri=f"http://127.0.0.1:{listener.port}/token")
        _use(sender_env, idp, server, {"flow": "google_service_account", "key": key})
        response = http_client.post("/", json=MESSAGE)
        requested = listener.connections
    assert response.status_code == 500, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == "misconfigured"
    assert "invalid key.token_uri (an https:// URL is needed)" in body["detail"]
    assert "PRIVATE KEY" not in response.get_data(as_text=True)
    assert requested == 0
    assert server.auth_attempts == []
    assert server.delivered == []
