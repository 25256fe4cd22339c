"""OAuth2 sign-in against the real tier: tokens fetched by `sender.oauth2` from the fake IdP
through the real MSAL and google-auth, presented with `sender.sasl` over raw smtplib, verified by
Dovecot's oauth2 passdb (introspection at the same IdP), mail delivered by Postfix.

If these fail, the function's OAuth2 tests in this folder would prove nothing: a token that does
not log in here, or a refusal that does not look like a provider's, would hide real bugs.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any, Literal

import pytest

from sender import sasl
from sender.oauth2 import (
    AccessToken,
    IdentityProviderRefusedError,
    IdentityProviderUnavailableError,
    TokenCache,
    fetch_token,
    parse_oauth2,
)
from tests.support.checks import assert_no_secret
from tests.support.fake_idp import FakeIdP
from tests.support.load import all_at_once
from tests.support.mta import MtaTier
from tests.support.mta_tier import ssl_context
from tests.support.oauth_accounts import IDP_FLOW, KEYLESS_MAILER, admin_setup
from tests.support.oauth_fetch import fetch_in_process

pytestmark = pytest.mark.mta

Listener = Literal["ssl", "starttls", "plain"]
# Every token a test here obtained, for the "never in a log" check at the end of the module.
SEEN_TOKENS: list[str] = []


@pytest.fixture(scope="module")
def accounts(mta_tier: MtaTier) -> dict[str, Any]:
    """The IdP-side setup a Microsoft 365 / Workspace admin would have made for the tier's user."""
    return admin_setup(mta_tier.idp, mta_tier.user)


def _token(mta: MtaTier, oauth2: dict[str, Any]) -> str:
    config = parse_oauth2(oauth2, username=mta.user)
    token = fetch_token(config, timeout_s=10, ca_file=str(mta.idp.ca_file)).value
    SEEN_TOKENS.append(token)
    return token


def _connect(mta: MtaTier, listener: Listener) -> smtplib.SMTP:
    if listener == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", mta.ports.ssl, context=ssl_context(mta.state), timeout=15
        )
        client.ehlo()
        return client
    client = smtplib.SMTP("127.0.0.1", getattr(mta.ports, listener), timeout=15)
    client.ehlo()
    if listener == "starttls":
        client.starttls(context=ssl_context(mta.state))
        client.ehlo()
    return client


@pytest.fixture
def session_factory(mta: MtaTier) -> Iterator[Any]:
    opened: list[smtplib.SMTP] = []

    def open_session(listener: Listener) -> smtplib.SMTP:
        client = _connect(mta, listener)
        opened.append(client)
        return client

    yield open_session
    for client in opened:
        client.close()


def _auth(
    client: smtplib.SMTP, mechanism: sasl.OAuthMechanism, user: str, token: str
) -> tuple[int, bytes]:
    return client.docmd("AUTH", f"{mechanism} {sasl.initial_response(mechanism, user, token)}")


def _message(token: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alerts <alerts@mta.test>"
    msg["To"] = f"ops-{token}@example.net"
    msg["Subject"] = f"oauth2 {token}"
    msg.set_content(f"signed in with a bearer token {token}\n")
    return msg


@pytest.mark.parametrize(
    ("flow", "listener"),
    [
        ("microsoft", "ssl"),
        ("microsoft", "starttls"),
        ("google_key", "starttls"),
        ("refresh_token", "ssl"),
    ],
)
def test_each_flows_token_signs_in_with_xoauth2_and_the_mail_lands(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any, flow: str, listener: Listener
) -> None:
    idp_flow = IDP_FLOW[flow]
    before = mta.idp.token_requests(idp_flow)
    subjects_before = len(mta.idp.jwt_subjects)
    token = _token(mta, accounts[flow])
    assert mta.idp.token_requests(idp_flow) == before + 1
    if flow == "microsoft":
        assert len(token) >= 2000, "Entra-sized token: the AUTH line must survive its length"
    if flow == "google_key":
        assert mta.idp.jwt_subjects[subjects_before:] == [mta.user], "DWD subject = the mailbox"
    client = session_factory(listener)
    code, reply = _auth(client, "XOAUTH2", mta.user, token)
    assert (code, reply[:5]) == (235, b"2.7.0")
    mark = uuid.uuid4().hex
    client.send_message(_message(mark))
    [got] = mta.wait_for_messages(lambda m: mark in m.subject)
    assert got.original_recipient == f"ops-{mark}@example.net"


def test_keyless_google_token_from_a_function_process_signs_in(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any
) -> None:
    """The Cloud Run case: no key anywhere. The child process gets its own identity from the
    metadata server, has IAM signBlob sign the grant as the mailer account (through the proxy to
    Google's fixed host), and exchanges it at Google's default token URL (proxied too)."""
    idp = mta.idp
    tunnels_before = len(idp.proxy.tunnels) if idp.proxy else 0
    result = fetch_in_process(accounts["google_keyless"], mta.user, idp.process_env())
    assert result.error is None, result.reason
    assert result.token is not None
    SEEN_TOKENS.append(result.token)
    assert idp.proxy is not None
    assert idp.proxy.tunnels[tunnels_before:] == [
        "iamcredentials.googleapis.com:443",
        "oauth2.googleapis.com:443",
    ]
    assert idp.proxy.refused == [], "nothing tried to reach another host"
    assert idp.jwt_subjects[-1] == mta.user
    client = session_factory("ssl")
    assert _auth(client, "XOAUTH2", mta.user, result.token)[0] == 235
    mark = uuid.uuid4().hex
    client.send_message(_message(mark))
    assert mta.wait_for_messages(lambda m: mark in m.subject)


def test_keyless_without_the_token_creator_grant_is_misconfigured(
    mta: MtaTier, accounts: dict[str, Any]
) -> None:
    mta.idp.deny_signing(KEYLESS_MAILER)
    try:
        result = fetch_in_process(accounts["google_keyless"], mta.user, mta.idp.process_env())
    finally:
        mta.idp.allow_signing(KEYLESS_MAILER)
    assert result.token is None
    assert result.disposition == "misconfigured"
    assert "roles/iam.serviceAccountTokenCreator" in (result.reason or "")
    assert "google_service_account" in (result.reason or "")


@pytest.mark.parametrize("listener", ["ssl", "starttls"])
def test_oauthbearer_signs_in_too(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any, listener: Listener
) -> None:
    token = _token(mta, accounts["refresh_token"])
    client = session_factory(listener)
    assert "OAUTHBEARER" in client.esmtp_features["auth"].split()
    assert _auth(client, "OAUTHBEARER", mta.user, token)[0] == 235
    mark = uuid.uuid4().hex
    client.send_message(_message(mark))
    assert mta.wait_for_messages(lambda m: mark in m.subject)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_a_revoked_token_gets_the_error_challenge_then_535(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any, mechanism: sasl.OAuthMechanism
) -> None:
    token = _token(mta, accounts["microsoft"])
    mta.idp.revoke(token)
    client = session_factory("starttls")
    code, challenge = _auth(client, mechanism, mta.user, token)
    assert code == 334
    decoded = sasl.decode_error_challenge(challenge)
    # XOAUTH2 speaks HTTP codes (as Google does); OAUTHBEARER RFC 6750 errors (RFC 7628).
    assert decoded.status == {"XOAUTH2": "401", "OAUTHBEARER": "invalid_token"}[mechanism]
    if mechanism == "XOAUTH2":
        assert (decoded.schemes or "").lower() == "bearer"
    code, final = client.docmd(sasl.error_challenge_reply(mechanism))
    assert code == 535
    assert final.startswith(b"5.7.8")
    # Not signed in: relaying is still refused.
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        client.sendmail("alerts@mta.test", ["x@example.net"], b"Subject: x\r\n\r\nx")


def test_a_token_for_another_mailbox_or_an_expired_one_is_refused(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any
) -> None:
    token = _token(mta, accounts["refresh_token"])
    client = session_factory("ssl")
    code, _ = _auth(client, "XOAUTH2", "someone-else@mta.test", token)
    assert code == 334
    assert client.docmd("")[0] == 535
    mta.idp.expire(token)
    client = session_factory("ssl")
    assert _auth(client, "XOAUTH2", mta.user, token)[0] == 334
    assert client.docmd("")[0] == 535


def test_an_introspection_endpoint_in_trouble_is_a_535_too(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any
) -> None:
    """Dovecot sees a temporary failure, but Postfix answers 535 all the same: a client cannot
    tell "IdP down at the provider" from "token refused" by the reply code."""
    token = _token(mta, accounts["refresh_token"])
    mta.idp.fail("introspect", 503)
    client = session_factory("ssl")
    code, reply = _auth(client, "XOAUTH2", mta.user, token)
    if code == 334:
        code, reply = client.docmd("")
    assert code == 535, reply
    mta.idp.clear_faults()
    client = session_factory("ssl")
    assert _auth(client, "XOAUTH2", mta.user, token)[0] == 235


def test_password_accounts_keep_working_beside_oauth2(mta: MtaTier, session_factory: Any) -> None:
    client = session_factory("ssl")
    assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"]
    code, _ = client.docmd("AUTH", "PLAIN " + sasl.plain(mta.user, mta.password))
    assert code == 235


def test_a_password_is_never_sent_to_the_identity_provider(
    mta: MtaTier, session_factory: Any
) -> None:
    """PLAIN/LOGIN go to the passwd-file only: a wrong password is not introspected as a token."""
    before = mta.idp.count("introspect")
    client = session_factory("ssl")
    assert client.docmd("AUTH", "PLAIN " + sasl.plain(mta.user, "wrong-password"))[0] == 535
    assert mta.idp.count("introspect") == before


def test_the_trap_listener_offers_xoauth2_in_clear_and_the_log_shows_a_use(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any
) -> None:
    """The no-STARTTLS trap is real for tokens too: XOAUTH2 is advertised there and would work,
    and Postfix's session summary shows ``auth=1``. A correct client therefore leaves
    ``auth`` out of every ``plain`` session summary (what the function tests assert)."""
    since = mta.settled_offset("plain")
    client = session_factory("plain")
    assert not client.has_extn("starttls")
    assert "XOAUTH2" in client.esmtp_features["auth"].split()
    token = _token(mta, accounts["refresh_token"])
    assert _auth(client, "XOAUTH2", mta.user, token)[0] == 235
    client.quit()
    mta.idp.revoke(token)  # it went over plaintext: dead from now on, as a provider would do
    [session] = mta.sessions("plain", since)
    assert session.stats["auth"] == "1"


def test_fifty_fetches_through_the_cache_make_one_token_request(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any
) -> None:
    config = parse_oauth2(accounts["microsoft"], username=mta.user)
    cache = TokenCache()
    before = mta.idp.token_requests("microsoft")

    def fetch(budget_s: float) -> AccessToken:
        return fetch_token(config, timeout_s=budget_s, ca_file=str(mta.idp.ca_file))

    tokens = {cache.get("profile-a", fetch, deadline_s=10, flow=config.flow) for _ in range(50)}
    assert mta.idp.token_requests("microsoft") == before + 1
    [token] = tokens
    SEEN_TOKENS.append(token.value)
    client = session_factory("ssl")
    assert _auth(client, "XOAUTH2", mta.user, token.value)[0] == 235

    # The server refuses it (revoked): invalidate, and the next caller gets a fresh one.
    mta.idp.revoke(token.value)
    cache.invalidate("profile-a", token)
    fresh = cache.get("profile-a", fetch, deadline_s=10, flow=config.flow)
    SEEN_TOKENS.append(fresh.value)
    assert fresh != token
    assert mta.idp.token_requests("microsoft") == before + 2
    client = session_factory("ssl")
    assert _auth(client, "XOAUTH2", mta.user, fresh.value)[0] == 235


def test_eight_concurrent_callers_with_a_cold_cache_make_one_token_request(
    mta: MtaTier, accounts: dict[str, Any]
) -> None:
    config = parse_oauth2(accounts["google_key"], username=mta.user)
    cache = TokenCache()
    before = mta.idp.token_requests("google_service_account")

    def caller(_: int) -> AccessToken:
        return cache.get(
            "profile-g",
            lambda budget: fetch_token(config, timeout_s=budget, ca_file=str(mta.idp.ca_file)),
            deadline_s=15,
            flow=config.flow,
        )

    got = all_at_once(caller, list(range(8)))
    assert len({t.value for t in got}) == 1
    SEEN_TOKENS.append(got[0].value)
    assert mta.idp.token_requests("google_service_account") == before + 1


def test_idp_refusals_and_outages_through_the_real_libraries(
    mta: MtaTier, accounts: dict[str, Any]
) -> None:
    idp: FakeIdP = mta.idp
    ms = parse_oauth2(accounts["microsoft"], username=mta.user)
    ca = str(idp.ca_file)
    idp.refuse("entra_token", "invalid_client")
    with pytest.raises(IdentityProviderRefusedError) as refused:
        fetch_token(ms, timeout_s=10, ca_file=ca)
    assert refused.value.code == "invalid_client"
    assert "microsoft" in refused.value.reason
    assert refused.value.http_status == 500
    idp.fail("entra_token", 503)
    with pytest.raises(IdentityProviderUnavailableError) as unavailable:
        fetch_token(ms, timeout_s=10, ca_file=ca)
    assert unavailable.value.http_status == 503
    idp.clear_faults()
    idp.refuse("google_token", "unauthorized_client")
    google = parse_oauth2(accounts["google_key"], username=mta.user)
    with pytest.raises(IdentityProviderRefusedError) as dwd:
        fetch_token(google, timeout_s=10, ca_file=ca)
    assert dwd.value.code == "unauthorized_client"
    assert "google_service_account" in dwd.value.reason


def test_a_hanging_token_endpoint_costs_a_caller_its_deadline_not_more(
    mta: MtaTier, accounts: dict[str, Any]
) -> None:
    config = parse_oauth2(accounts["refresh_token"], username=mta.user)
    cache = TokenCache()
    mta.idp.hang("google_token")
    deadline_s = 1.0
    started = time.monotonic()
    with pytest.raises(IdentityProviderUnavailableError) as caught:
        cache.get(
            "profile-h",
            lambda budget: fetch_token(config, timeout_s=budget, ca_file=str(mta.idp.ca_file)),
            deadline_s=deadline_s,
            flow=config.flow,
        )
    waited = time.monotonic() - started
    assert "refresh_token" in caught.value.reason
    assert "deadline" in caught.value.reason
    # Not a benchmark: a bound generous enough for a loaded machine, far below the 30 s a
    # caller blocked on the hanging endpoint would wait.
    assert waited < deadline_s + 4.0, f"the caller waited {waited:.1f}s on a {deadline_s}s deadline"


def test_no_token_shows_up_in_the_tiers_logs(
    mta: MtaTier, accounts: dict[str, Any], session_factory: Any
) -> None:
    """Tokens accepted and refused, by both mechanisms, never show in what Postfix and Dovecot
    logged (Dovecot's auth debug would print them); nor does any token the tests before this one
    used (placed last in the module, it sees them all when the module runs whole)."""
    for mechanism in ("XOAUTH2", "OAUTHBEARER"):
        good = _token(mta, accounts["microsoft"])
        assert _auth(session_factory("ssl"), mechanism, mta.user, good)[0] == 235
        bad = _token(mta, accounts["refresh_token"])
        mta.idp.revoke(bad)
        client = session_factory("starttls")
        assert _auth(client, mechanism, mta.user, bad)[0] == 334
        assert client.docmd(sasl.error_challenge_reply(mechanism))[0] == 535
    assert mta.queue_is_empty()
    logs = mta.log_text() + mta.dovecot_log_text()
    assert "oauth2 failed" in logs, "Dovecot logged the OAuth2 refusals, so the logs were read"
    blobs = [
        sasl.initial_response(m, mta.user, t)
        for t in SEEN_TOKENS
        for m in ("XOAUTH2", "OAUTHBEARER")
    ]
    assert_no_secret(logs, secrets=[*SEEN_TOKENS, *blobs])
    assert_no_secret(logs, secrets=[t[-40:] for t in SEEN_TOKENS])


def test_tier_cli_accepts_the_oauth2_options() -> None:
    from tests.support.mta_tier import _parse_oauth2_args

    parsed = _parse_oauth2_args(["--oauth2-introspection", "https://a:b@h/i", "--oauth2-ca", "c"])
    assert parsed is not None
    assert parsed.url == "https://a:b@h/i"
    assert _parse_oauth2_args([]) is None
    with pytest.raises(ValueError, match="together"):
        _parse_oauth2_args(["--oauth2-ca", "c"])
