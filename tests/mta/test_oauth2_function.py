"""OAuth2 sign-in through the function as deployed: functions-framework as a process, the profile
in the Secret Manager stand-in, tokens from the fake identity provider through the real MSAL and
google-auth (keyless signing through the IAM API as the function's own identity, from the fake
metadata server), verified by Dovecot's introspection, mail delivered by Postfix to the Maildir.

Each test writes a profile of its own (a unique ``from``), so its token cache starts cold: the
instance keys tokens by the profile payload.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.checks import assert_no_secret, oauth2_canaries
from tests.support.env import function_env
from tests.support.fake_idp import FakeIdP
from tests.support.ff_process import FunctionsFrameworkProcess, HttpResult
from tests.support.load import all_at_once
from tests.support.maildir import Delivered
from tests.support.mta import MtaTier
from tests.support.oauth_accounts import IDP_FLOW, admin_setup
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub

pytestmark = [pytest.mark.mta, pytest.mark.process]

SECRET_NAME = f"projects/{PROJECT}/secrets/mta-oauth2-profile"
# The profiles below, and the flow the IdP counts their token requests under.


@pytest.fixture(scope="module")
def secret_manager() -> Iterator[SecretManagerStub]:
    with SecretManagerStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def accounts(mta_tier: MtaTier) -> dict[str, dict[str, Any]]:
    """What the Microsoft 365 / Workspace admin set up for the tier's mailbox, per flow."""
    return admin_setup(mta_tier.idp, mta_tier.user)


def _env(mta: MtaTier, secrets: SecretManagerStub, workdir: Path, **extra: str) -> dict[str, str]:
    env = function_env(
        secret_manager=secrets.address,
        ca_file=mta.ca_file,
        gcloud_config=workdir / "gcloud",
        smtp_secret=SECRET_NAME,
        smtp_timeout_s="10",
    )
    # Every send opens (and signs in) a session of its own unless a test says otherwise, so the
    # token cache, not the session pool, is what saves the token requests.
    return {**env, **mta.idp.process_env(), "SMTP_POOL_SIZE": "0", **extra}


@pytest.fixture(scope="module")
def function(
    mta_tier: MtaTier, secret_manager: SecretManagerStub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionsFrameworkProcess]:
    """One warm instance; cache TTL 0 so each test's newest profile version is read."""
    workdir = tmp_path_factory.mktemp("ff-oauth2")
    env = _env(mta_tier, secret_manager, workdir, SMTP_PROFILE_CACHE_TTL_S="0")
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=workdir) as ff:
        yield ff


def _store(
    secrets: SecretManagerStub,
    mta: MtaTier,
    oauth2: dict[str, Any],
    *,
    listener: str = "starttls",
    security: str | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    """A profile signing in as the tier's user with *oauth2*; its unique ``from`` gives it a
    token cache entry of its own."""
    port = getattr(mta.ports, listener)
    profile: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": security or ("ssl" if listener == "ssl" else "starttls"),
        "username": mta.user,
        "from": f"Alerts <alerts-{uuid.uuid4().hex[:10]}@mta.test>",
        "oauth2": oauth2,
    }
    if provider:
        profile["provider"] = provider
    secrets.put_secret(SECRET_NAME, json.dumps(profile))
    return profile


def _ours(token: str) -> Callable[[Delivered], bool]:
    return lambda m: token in m.subject


def _request(mark: str, to: str | None = None) -> dict[str, Any]:
    return {
        "to": to or f"ops-{mark}@example.net",
        "subject": f"OAuth2 경고 {mark}",
        "text": f"signed in with a token {mark}",
    }


def _clean(
    ff: FunctionsFrameworkProcess, idp: FakeIdP, *answers: HttpResult, **profiles: Any
) -> None:
    """No client secret, refresh token, key or access token (nor its XOAUTH2 blob) anywhere."""
    tokens = [t.value for t in idp.issued()]
    secrets: list[str] = []
    for oauth2 in profiles.values():
        secrets += oauth2_canaries(oauth2, tokens, "alerts@mta.test")
    assert_no_secret(ff.output(), *(a.text for a in answers), secrets=secrets)


@pytest.mark.parametrize(
    ("flow", "listener"),
    [
        ("microsoft", "starttls"),
        ("google_key", "ssl"),
        ("google_keyless", "starttls"),
        ("refresh_token", "ssl"),
    ],
)
def test_each_flow_signs_in_and_the_mail_lands(
    *,
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    function: FunctionsFrameworkProcess,
    accounts: dict[str, dict[str, Any]],
    flow: str,
    listener: str,
) -> None:
    oauth2 = accounts[flow]
    _store(secret_manager, mta, oauth2, listener=listener)
    idp_flow = IDP_FLOW[flow]
    before = mta.idp.token_requests(idp_flow)
    mark = uuid.uuid4().hex
    since = mta.settled_offset(listener)
    result = function.post_json("/", _request(mark))

    assert result.status == 200, result.text
    assert result.json()["status"] == "sent"
    [got] = mta.wait_for_messages(_ours(mark))
    assert got.original_recipient == f"ops-{mark}@example.net"
    assert mta.idp.token_requests(idp_flow) == before + 1
    [session] = mta.sessions(listener, since)
    assert (session.stats.get("auth"), session.stats.get("data")) == ("1", "1"), session
    if flow.startswith("google"):
        assert mta.idp.jwt_subjects[-1] == mta.user, "domain-wide delegation as the mailbox"
    _clean(function, mta.idp, result, profile=oauth2)


def test_fifty_sends_in_a_row_make_one_token_request(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    function: FunctionsFrameworkProcess,
    accounts: dict[str, dict[str, Any]],
) -> None:
    _store(secret_manager, mta, accounts["microsoft"], listener="ssl")
    before = mta.idp.token_requests("microsoft")
    since = mta.settled_offset("ssl")
    marks = [uuid.uuid4().hex for _ in range(50)]
    for mark in marks:
        result = function.post_json("/", _request(mark))
        assert result.status == 200, result.text
    assert mta.idp.token_requests("microsoft") == before + 1
    # Fifty sessions, each signed in with the one cached token (no session pool here).
    sessions = mta.sessions("ssl", since, count=50)
    assert [s.stats.get("auth") for s in sessions] == ["1"] * 50
    assert len(mta.wait_for_messages(lambda m: any(k in m.subject for k in marks), count=50)) == 50


def test_eight_concurrent_sends_on_a_cold_instance_make_one_token_request(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    accounts: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    _store(secret_manager, mta, accounts["google_key"], listener="starttls")
    env = _env(mta, secret_manager, tmp_path, THREADS="8")
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path) as ff:
        before = mta.idp.token_requests("google_service_account")
        marks = [uuid.uuid4().hex for _ in range(8)]
        results = all_at_once(lambda mark: ff.post_json("/", _request(mark)), marks)
        assert [r.status for r in results] == [200] * 8, [r.text for r in results]
        assert mta.idp.token_requests("google_service_account") == before + 1
        delivered = mta.wait_for_messages(lambda m: any(k in m.subject for k in marks), count=8)
        assert len(delivered) == 8


def test_a_revoked_token_gets_one_fresh_token_and_the_mail_goes_out(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    function: FunctionsFrameworkProcess,
    accounts: dict[str, dict[str, Any]],
) -> None:
    _store(secret_manager, mta, accounts["refresh_token"], listener="ssl")
    first = uuid.uuid4().hex
    assert function.post_json("/", _request(first)).status == 200
    cached = mta.idp.issued("refresh_token")[-1]
    mta.idp.revoke(cached.value)  # the provider revoked it: the cache does not know
    before = mta.idp.token_requests("refresh_token")
    since = mta.settled_offset("ssl")  # the first send's session has ended
    mark = uuid.uuid4().hex
    result = function.post_json("/", _request(mark))

    assert result.status == 200, result.text
    assert mta.wait_for_messages(_ours(mark))
    assert mta.idp.token_requests("refresh_token") == before + 1
    sessions = mta.sessions("ssl", since, count=2)
    assert [s.stats.get("auth") for s in sessions] == ["0/1", "1"], sessions
    assert any(
        r.get("message") == "SMTP server refused the OAuth2 token; fetching a fresh one"
        for r in function.log_records()
    )


def test_invalid_client_is_500_with_a_hint_and_a_rotated_client_secret_is_picked_up(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    accounts: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """The cached profile holds an expired client secret: 500 naming the flow and the code, with
    the hint, after one re-read. The operator stores a new secret version; the next send re-reads
    it on the refusal and goes out, although the instance caches profiles for 300 s."""
    good = accounts["microsoft"]
    expired = {**good, "client_secret": "expired-" + uuid.uuid4().hex}
    _store(secret_manager, mta, expired, listener="starttls")
    env = _env(mta, secret_manager, tmp_path)  # default profile cache TTL: 300 s
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path) as ff:
        since = mta.settled_offset("starttls")
        refused = ff.post_json("/", _request(uuid.uuid4().hex))
        assert refused.status == 500, refused.text
        body = refused.json()
        assert body["error"] == "misconfigured"
        assert "microsoft" in body["detail"]
        assert "invalid_client" in body["detail"]
        assert "client secret" in body["hint"]
        [line] = [r for r in ff.log_records() if r.get("message") == "email not sent"]
        assert (line["severity"], line["hint"]) == ("ERROR", body["hint"])
        # The client secret was refused before any AUTH: the session never signed in.
        assert [s.sent("auth") for s in mta.sessions("starttls", since)] == [False]

        _store(secret_manager, mta, good, listener="starttls")  # the rotated client secret
        mark = uuid.uuid4().hex
        result = ff.post_json("/", _request(mark))
        assert result.status == 200, result.text
        assert mta.wait_for_messages(_ours(mark))
        _clean(ff, mta.idp, refused, result, expired=expired, good=good)


def test_identity_provider_down_is_503_and_the_pubsub_trigger_raises(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    function: FunctionsFrameworkProcess,
    accounts: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    _store(secret_manager, mta, accounts["microsoft"], listener="starttls")
    mta.idp.fail("entra_token", 503)
    result = function.post_json("/", _request(uuid.uuid4().hex))
    assert result.status == 503, result.text
    assert result.headers["Retry-After"]
    body = result.json()
    assert body["retryable"] is True
    assert "microsoft" in body["detail"]
    assert "Pub/Sub retries" in body["hint"]

    env = _env(mta, secret_manager, tmp_path)
    with FunctionsFrameworkProcess("send_pubsub", "cloudevent", env=env, log_dir=tmp_path) as ff:
        event = ff.post_cloudevent(_request(uuid.uuid4().hex), event_id=uuid.uuid4().hex)
        assert event.status == 500, event.text  # raised: Pub/Sub delivers it again
        [line] = [r for r in ff.log_records() if r.get("message") == "email not sent"]
        assert (line["severity"], line["error"], line["redeliver"]) == (
            "WARNING", "unavailable", True,
        )  # fmt: skip
        assert "hint" in line
        mta.idp.clear_faults()
        again = ff.post_cloudevent(_request(uuid.uuid4().hex), event_id=uuid.uuid4().hex)
        assert again.status < 300, again.text
        _clean(ff, mta.idp, event, again, profile=accounts["microsoft"])


def test_a_hanging_token_endpoint_is_503_within_the_send_deadline(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    accounts: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    deadline_s = 6.0
    _store(secret_manager, mta, accounts["refresh_token"], listener="ssl")
    env = _env(mta, secret_manager, tmp_path, SEND_DEADLINE_S=f"{deadline_s:g}", SMTP_TIMEOUT_S="4")
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path) as ff:
        mta.idp.hang("google_token")
        started = time.monotonic()
        result = ff.post_json("/", _request(uuid.uuid4().hex))
        took = time.monotonic() - started
        mta.idp.release()
    assert result.status == 503, result.text
    assert "refresh_token" in result.json()["detail"]
    print(f"token endpoint hanging: 503 after {took:.2f} s (SEND_DEADLINE_S={deadline_s:g})")
    assert took < deadline_s, "the token request counts in SEND_DEADLINE_S"


def test_a_token_never_goes_out_in_plaintext(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    function: FunctionsFrameworkProcess,
    accounts: dict[str, dict[str, Any]],
) -> None:
    """The plain listener offers XOAUTH2 in clear and would accept it (the tier's trap): a
    starttls profile pointed at it stops at the missing STARTTLS, before any token is fetched;
    a profile saying security none with oauth2 is refused before connecting at all."""
    before = mta.idp.token_requests("microsoft")
    _store(secret_manager, mta, accounts["microsoft"], listener="plain", security="starttls")
    since = mta.settled_offset("plain")
    stripped = function.post_json("/", _request(uuid.uuid4().hex))
    assert stripped.status == 503, stripped.text
    assert "STARTTLS" in stripped.json()["detail"]
    [session] = mta.sessions("plain", since)
    assert not session.sent("auth"), session
    assert not session.sent("mail"), session
    assert mta.idp.token_requests("microsoft") == before, (
        "no token for a server that cannot take it"
    )

    _store(secret_manager, mta, accounts["microsoft"], listener="plain", security="none")
    since = mta.settled_offset("plain")
    clear = function.post_json("/", _request(uuid.uuid4().hex))
    assert clear.status == 500, clear.text
    assert "only ever sent over TLS" in clear.json()["detail"]
    assert mta.sessions("plain", since) == []
    assert mta.idp.token_requests("microsoft") == before


def test_the_microsoft365_preset_caps_the_pool_at_three_sessions(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    accounts: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """SMTP_POOL_SIZE=8 with provider microsoft365: at most 3 sessions open at once (Exchange
    Online's limit per mailbox), however many sends run concurrently."""
    _store(secret_manager, mta, accounts["microsoft"], listener="starttls", provider="microsoft365")
    env = _env(mta, secret_manager, tmp_path, SMTP_POOL_SIZE="8", THREADS="8")
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path) as ff:
        since = mta.settled_offset("starttls")
        marks = [uuid.uuid4().hex for _ in range(12)]
        results = all_at_once(lambda mark: ff.post_json("/", _request(mark)), marks)
        assert [r.status for r in results] == [200] * len(marks), [r.text for r in results]
    # The process stopped, so every session ended; Postfix logs each one's summary.
    sessions = _sessions_until(mta, since, lambda found: _data(found) == len(marks))
    assert _data(sessions) == len(marks), sessions
    assert 1 <= len(sessions) <= 3, sessions


def _data(sessions: list[Any]) -> int:
    return sum(int(s.stats.get("data", "0")) for s in sessions)


def _sessions_until(
    mta: MtaTier, since: int, done: Callable[[list[Any]], bool], timeout: float = 15.0
) -> list[Any]:
    """The starttls listener's session summaries, once *done* says they are complete (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        found = mta.sessions("starttls", since)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
