"""A canary password and a canary body never show up in a response, a log line or an exception.

The password is non-ASCII on purpose (see `tests.support.constants.CANARY_PASSWORD`): a leak
through ``repr`` would show it escaped, so the escaped forms are searched for too
(`tests.support.checks.assert_no_secret`).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import traceback
import uuid
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from tests.support import pubsub
from tests.support.certs import CertBundle
from tests.support.checks import assert_no_secret, oauth2_canaries
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.fake_idp import FakeIdP
from tests.support.fault_server import FaultServer, Script, reply
from tests.support.ff_process import MAIN_PY
from tests.support.oauth_accounts import entra_app, google_key_account
from tests.support.smtp_server import SmtpTestServer

BODY_CANARY = "body-canary-5d41402abc4b2a76"
MESSAGE: dict[str, Any] = {
    "to": "ops@example.com",
    "subject": "s",
    "text": f"secret report {BODY_CANARY}",
    "html": f"<p>{BODY_CANARY}</p>",
}
NEW_PASSWORD = "Neues-Pässwort-Ω-42"


def assert_clean(*texts: str) -> None:
    """Neither password (the stored one, the one the provider rotated to) nor the body leaked."""
    assert_no_secret(*texts, secrets=(CANARY_PASSWORD, NEW_PASSWORD))
    assert BODY_CANARY not in "\n".join(texts)


def test_success_and_auth_failure_leak_nothing_over_http(
    http_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ok = http_client.post("/", json=MESSAGE)
    server.set_password(SMTP_USER, NEW_PASSWORD)  # provider rotated, secret did not
    server.hang_up_idle()  # ... and dropped the session logged in with the old password
    failed = http_client.post("/", json=MESSAGE)
    out, err = capfd.readouterr()

    assert ok.status_code == 200
    assert failed.status_code >= 500
    assert out.strip()  # something was logged: the check below is not vacuous
    assert_clean(
        ok.get_data(as_text=True),
        failed.get_data(as_text=True),
        str(dict(failed.headers)),
        out,
        err,
    )


def test_every_failure_kind_leaks_nothing(
    http_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    responses = []
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    responses.append(http_client.post("/", json={**MESSAGE, "to": "gone@example.com"}))
    server.fail_data("451 4.3.0 Try later", times=1)
    responses.append(http_client.post("/", json=MESSAGE))
    server.disconnect_after_data(times=1)
    responses.append(http_client.post("/", json=MESSAGE))
    responses.append(http_client.post("/", json={**MESSAGE, "to": "x"}))  # invalid
    out, err = capfd.readouterr()

    assert [r.status_code for r in responses] == [502, 503, 503, 400]
    assert_clean(*(r.get_data(as_text=True) for r in responses), out, err)


def test_pubsub_auth_failure_leaks_nothing_in_logs_or_traceback(
    event_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server.set_password(SMTP_USER, NEW_PASSWORD)
    resp = pubsub.post_event(event_client, MESSAGE)
    out, err = capfd.readouterr()

    assert resp.status_code == 500
    assert out.strip()
    assert_clean(resp.get_data(as_text=True), out, err)


def _load_main() -> Any:
    spec = importlib.util.spec_from_file_location("smtp_sender_main_under_test", MAIN_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exception_raised_for_redelivery_carries_no_secret(
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """What the Pub/Sub trigger raises (and Cloud Logging prints as a traceback) is clean."""
    server.set_password(SMTP_USER, NEW_PASSWORD)
    main = _load_main()
    _, body = pubsub.cloudevent_request(MESSAGE)
    event = CloudEvent(
        {
            "id": "redaction-1",
            "source": f"//pubsub.googleapis.com/{pubsub.TOPIC}",
            "type": pubsub.PUBLISHED_TYPE,
            "specversion": "1.0",
            "time": pubsub.rfc3339(),
        },
        json.loads(body),
    )

    with pytest.raises(Exception) as caught:  # noqa: PT011 - any exception type; its text matters
        main.send_pubsub(event)
    out, err = capfd.readouterr()

    chain = "".join(traceback.format_exception(caught.value))
    context = caught.value.__context__
    assert_clean(str(caught.value), repr(caught.value), chain, repr(context), out, err)


# --- OAuth2: client secrets, keys, refresh tokens and access tokens --------------------------


def test_oauth2_secrets_and_tokens_leak_nowhere(
    *,
    http_client: Any,
    event_client: Any,
    sender_env: SenderEnv,
    test_ca: CertBundle,
    idp: FakeIdP,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Signed in, refused after the 334 challenge, the IdP refusing the grant or the client, the
    IdP down over HTTP and over Pub/Sub (a raised exception): none of it shows a client secret, a
    private key, a refresh token, an access token or the XOAUTH2 blob that carried one."""
    microsoft = entra_app(idp, SMTP_USER, tenant="redaction.onmicrosoft.com")
    google = google_key_account(
        idp, f"no-dwd-{uuid.uuid4().hex[:6]}@p.iam.gserviceaccount.com", delegated_scopes=()
    )
    wrong = {**microsoft, "client_secret": "expired-" + uuid.uuid4().hex}
    extensions = ("AUTH XOAUTH2 PLAIN", "ENHANCEDSTATUSCODES")
    challenge = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
    accepts = Script(replies={"AUTH": reply(235, "2.7.0 OK")}, extensions=extensions)
    refuses = Script(replies={"AUTH": reply(334, challenge)}, extensions=extensions)
    sender_env.set(OAUTH_CA_FILE=str(idp.ca_file), SMTP_PROFILE_CACHE_TTL_S="0")
    answers = []
    with (
        FaultServer(accepts, mode="ssl", certs=test_ca) as good,
        FaultServer(refuses, mode="ssl", certs=test_ca) as bad,
    ):
        for server, oauth2, sender in (
            (good, microsoft, "a@example.com"),  # sent
            (bad, microsoft, "a@example.com"),  # refused after the challenge (twice)
            (good, google, "a@example.com"),  # unauthorized_client: no DWD
            (good, wrong, "a@example.com"),  # invalid_client
            (good, microsoft, "b@example.com"),  # a cold token cache, and the IdP down
        ):
            if sender == "b@example.com":
                idp.fail("entra_token", 503)
            profile = {**server.profile(sender=sender), "username": SMTP_USER, "oauth2": oauth2}
            sender_env.store(json.dumps(profile))
            answers.append(http_client.post("/", json=MESSAGE))
        event = pubsub.post_event(event_client, MESSAGE)
    out, err = capfd.readouterr()

    assert [a.status_code for a in answers] == [200, 500, 500, 500, 503]
    assert event.status_code == 500  # raised for redelivery
    assert "unauthorized_client" in answers[2].get_json()["detail"]
    assert "invalid_client" in answers[3].get_json()["detail"]
    tokens = [t.value for t in idp.issued()]
    assert tokens
    canaries = [
        *oauth2_canaries(microsoft, tokens, SMTP_USER),
        *oauth2_canaries(google),
        *oauth2_canaries(wrong),
    ]
    texts = [a.get_data(as_text=True) for a in answers]
    assert_no_secret(*texts, event.get_data(as_text=True), out, err, secrets=canaries)
