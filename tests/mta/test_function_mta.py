"""The function against real Postfix + Dovecot SASL, as deployed: functions-framework running as
a process, its SMTP profile read from the Secret Manager stand-in.

What arrives is checked in the Maildir, what the client did in Postfix's log: real reply codes and
texts, real TLS, real SASL, pipelining and all the provider-ish details aiosmtpd does not have.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.checks import assert_no_secret
from tests.support.env import function_env
from tests.support.ff_process import FunctionsFrameworkProcess, HttpResult
from tests.support.maildir import Delivered
from tests.support.mta import MtaTier
from tests.support.mta_tier import DEFAULT_PASSWORD
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub

pytestmark = [pytest.mark.mta, pytest.mark.process]

SECRET_NAME = f"projects/{PROJECT}/secrets/mta-smtp-profile"
PROFILE_FROM = "Alerts <alerts@mta.test>"
UNICODE_PASSWORD = "p@ss:wörd/%?#&+ 🔑"
WRONG_PASSWORD = "Wrong-Pässwort-🔑-5521"


@pytest.fixture(scope="module")
def secret_manager() -> Iterator[SecretManagerStub]:
    with SecretManagerStub() as stub:
        yield stub


def _function_env(
    mta: MtaTier, secrets: SecretManagerStub, workdir: Path, **extra: str
) -> dict[str, str]:
    """These tests read each send's own SMTP session in Postfix's log (TLS, AUTH counts), so
    every send opens one: `SMTP_POOL_SIZE=0` (the pooled path has tests/mta/test_pool_mta.py)."""
    env = function_env(
        secret_manager=secrets.address,
        ca_file=mta.ca_file,
        gcloud_config=workdir / "gcloud",
        smtp_secret=SECRET_NAME,
        smtp_timeout_s="15",
    )
    # FunctionsFrameworkProcess adds the offline-gcloud variables.
    return {**env, "SMTP_POOL_SIZE": "0", **extra}


@pytest.fixture(scope="module")
def function(
    mta_tier: MtaTier, secret_manager: SecretManagerStub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionsFrameworkProcess]:
    """One warm instance for the module. Cache TTL 0: each test's newest secret version is read
    on its first send (rotation on a *cached* profile has its own instance below)."""
    workdir = tmp_path_factory.mktemp("ff-mta")
    env = _function_env(mta_tier, secret_manager, workdir, SMTP_PROFILE_CACHE_TTL_S="0")
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=workdir) as ff:
        yield ff


def _store_profile(
    secrets: SecretManagerStub,
    mta: MtaTier,
    security: str,
    *,
    password: str | None = None,
    username: str | None = "default",
) -> dict[str, Any]:
    port = {"ssl": mta.ports.ssl, "starttls": mta.ports.starttls, "none": mta.ports.plain}
    profile: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port[security],
        "security": security,
        "from": PROFILE_FROM,
    }
    if username is not None:
        profile["username"] = mta.user if username == "default" else username
        profile["password"] = mta.password if password is None else password
    secrets.put_secret(SECRET_NAME, json.dumps(profile))
    return profile


def _ours(token: str) -> Callable[[Delivered], bool]:
    return lambda m: token in m.subject


def _request(token: str, to: list[str], **more: Any) -> dict[str, Any]:
    return {"to": to, "subject": f"디스크 91% 경고 {token}", "text": f"본문 {token}", **more}


def _output_is_clean(ff: FunctionsFrameworkProcess, result: HttpResult, *secrets: str) -> None:
    """None of *secrets* in the process output or the response, in any form a leak could take."""
    assert_no_secret(ff.output(), result.text, secrets=secrets)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_both_tls_modes_deliver_unicode_mail_intact(
    mta: MtaTier,
    secret_manager: SecretManagerStub,
    function: FunctionsFrameworkProcess,
    security: str,
) -> None:
    _store_profile(secret_manager, mta, security)
    token = uuid.uuid4().hex
    to, cc, bcc = (f"{kind}-{token}@example.net" for kind in ("to", "cc", "bcc"))
    report = b"host,usage\ndb-1,91%\n"
    since = mta.settled_offset(security)
    result = function.post_json(
        "/",
        _request(
            token,
            [f"운영팀 <{to}>"],
            cc=[cc],
            bcc=[bcc],
            html=f"<p>디스크 <b>{token}</b></p>",
            headers={"X-Ticket": "42"},
            attachments=[
                {
                    "filename": "보고서.csv",
                    "content": base64.b64encode(report).decode(),
                    "content_type": "text/csv",
                }
            ],
        ),
    )
    assert result.status == 200, result.text
    body = result.json()
    assert body["status"] == "sent"
    assert sorted(body["accepted"]) == sorted([to, cc, bcc])

    copies = mta.wait_for_messages(_ours(token), count=3)
    assert sorted(m.original_recipient for m in copies) == sorted([to, cc, bcc])
    for got in copies:
        assert got.subject == f"디스크 91% 경고 {token}"
        assert got.header("From") == PROFILE_FROM
        assert got.header("To") == f"운영팀 <{to}>"
        assert got.header("Cc") == cc
        assert got.header("Bcc") is None
        assert got.header("X-Ticket") == "42"
        assert got.header("Message-ID") == body["message_id"]
        assert (got.body("plain") or "").strip() == f"본문 {token}"
        assert f"<b>{token}</b>" in (got.body("html") or "")
        [attachment] = got.attachments
        assert (attachment.filename, attachment.content) == ("보고서.csv", report)
    # Postfix saw an authenticated, encrypted session on the listener we configured.
    [session] = mta.sessions(security, since)
    assert (session.stats.get("auth"), session.stats.get("data")) == ("1", "1"), session


def test_mixed_transaction_reports_postfix_refusals(
    mta: MtaTier, secret_manager: SecretManagerStub, function: FunctionsFrameworkProcess
) -> None:
    _store_profile(secret_manager, mta, "ssl")
    token = uuid.uuid4().hex
    good, gone, later = (f"{k}-{token}@example.net" for k in ("good", "reject550", "defer450"))
    since = mta.log_offset()
    result = function.post_json("/", _request(token, [good, gone, later]))

    # Delivered to one, refused for two: a partial success, each refusal with the server's reply.
    assert result.status == 200, result.text
    body = result.json()
    assert body["status"] == "partial"
    assert body["accepted"] == [good]
    assert set(body["refused"]) == {gone, later}
    assert body["refused"][gone]["code"] == 550
    assert body["refused"][later]["code"] == 450
    log = mta.log_text(since)
    for addr, refusal in body["refused"].items():
        # The very reply Postfix sent (and logged), not a paraphrase.
        assert f"{refusal['code']} {refusal['message']};" in log, (addr, log)
    assert body["refused"][gone]["message"].startswith("5.1.1 ")
    assert body["refused"][later]["message"].startswith("4.2.1 ")
    [got] = mta.wait_for_messages(_ours(token))
    assert got.original_recipient == good


def test_every_recipient_deferred_is_503_and_nothing_arrives(
    mta: MtaTier, secret_manager: SecretManagerStub, function: FunctionsFrameworkProcess
) -> None:
    _store_profile(secret_manager, mta, "starttls")
    token = uuid.uuid4().hex
    rcpts = [f"defer450-a-{token}@example.net", f"defer450-b-{token}@example.net"]
    result = function.post_json("/", _request(token, rcpts))
    assert result.status == 503, result.text
    assert result.headers["Retry-After"]
    body = result.json()
    assert body["error"] == "unavailable"
    assert body["retryable"] is True
    assert {a: r["code"] for a, r in body["refused"].items()} == dict.fromkeys(rcpts, 450)
    assert mta.delivered_now(_ours(token)) == []


def test_oversize_message_gets_552_and_502(
    mta: MtaTier, secret_manager: SecretManagerStub, function: FunctionsFrameworkProcess
) -> None:
    _store_profile(secret_manager, mta, "ssl")
    token = uuid.uuid4().hex
    blob = os.urandom(mta.message_size_limit)  # base64 makes it ~1.35x: over Postfix's limit
    request = _request(
        token,
        [f"big-{token}@example.net"],
        attachments=[{"filename": "big.bin", "content": base64.b64encode(blob).decode()}],
    )
    result = function.post_json("/", request)
    assert result.status == 502, result.text
    body = result.json()
    assert body["error"] == "rejected"
    assert body["smtp_code"] == 552
    assert "size" in body["smtp_message"].lower()
    assert mta.delivered_now(_ours(token)) == []


def test_port_without_starttls_gets_no_mail_and_no_credentials(
    mta: MtaTier, secret_manager: SecretManagerStub, function: FunctionsFrameworkProcess
) -> None:
    # The profile says starttls, but the server on that port offers none (a stripped STARTTLS).
    profile = _store_profile(secret_manager, mta, "starttls")
    profile["port"] = mta.ports.plain
    secret_manager.put_secret(SECRET_NAME, json.dumps(profile))
    token = uuid.uuid4().hex
    since = mta.settled_offset("plain")
    result = function.post_json("/", _request(token, [f"ops-{token}@example.net"]))

    assert result.status in (502, 503), result.text
    assert "STARTTLS" in result.json()["detail"]
    assert any("STARTTLS" in json.dumps(r) for r in function.log_records())
    # The client connected, found no STARTTLS and left: no AUTH, no MAIL — Postfix's own count.
    [session] = mta.sessions("plain", since)
    assert not session.sent("auth"), session
    assert not session.sent("mail"), session
    assert mta.delivered_now(_ours(token)) == []
    _output_is_clean(function, result, mta.password)


def test_plain_port_is_a_working_trap(
    mta: MtaTier, secret_manager: SecretManagerStub, function: FunctionsFrameworkProcess
) -> None:
    """Control for the test above: the same port delivers what it is legitimately given (a
    credential-less profile on loopback), so "nothing arrived" there means the client refused."""
    _store_profile(secret_manager, mta, "none", username=None)
    token = uuid.uuid4().hex
    since = mta.settled_offset("plain")
    result = function.post_json("/", _request(token, [f"relay-{token}@example.net"]))
    assert result.status == 200, result.text
    assert mta.wait_for_messages(_ours(token))
    [session] = mta.sessions("plain", since)
    assert not session.sent("auth")


def test_wrong_password_is_a_clean_error_without_the_secret(
    mta: MtaTier, secret_manager: SecretManagerStub, function: FunctionsFrameworkProcess
) -> None:
    _store_profile(secret_manager, mta, "ssl", password=WRONG_PASSWORD)
    token = uuid.uuid4().hex
    since = mta.settled_offset("ssl")
    result = function.post_json("/", _request(token, [f"ops-{token}@example.net"]))

    assert result.status == 500, result.text
    body = result.json()
    assert body["error"] == "misconfigured"
    _output_is_clean(function, result, WRONG_PASSWORD, mta.password)
    # The secret was re-read, found unchanged, so no second login fed the lockout counters.
    [session] = mta.sessions("ssl", since)
    assert session.stats.get("auth") == "0/1", session
    assert not session.sent("mail")
    assert mta.delivered_now(_ours(token)) == []


def test_unicode_and_uri_hostile_password_authenticates(
    mta: MtaTier, secret_manager: SecretManagerStub, function: FunctionsFrameworkProcess
) -> None:
    mta.set_password(mta.user, UNICODE_PASSWORD)
    _store_profile(secret_manager, mta, "starttls", password=UNICODE_PASSWORD)
    token = uuid.uuid4().hex
    result = function.post_json("/", _request(token, [f"ops-{token}@example.net"]))
    assert result.status == 200, result.text
    assert mta.wait_for_messages(_ours(token))
    _output_is_clean(function, result, UNICODE_PASSWORD)


def test_rotation_on_a_warm_instance(
    mta: MtaTier, secret_manager: SecretManagerStub, tmp_path: Path
) -> None:
    """The instance has the old password cached (default TTL); the operator rotates the password
    at the provider and adds a secret version; the next send must get through."""
    env = _function_env(mta, secret_manager, tmp_path)
    with FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path) as ff:
        _store_profile(secret_manager, mta, "ssl")
        first = uuid.uuid4().hex
        assert ff.post_json("/", _request(first, [f"a-{first}@example.net"])).status == 200

        rotated = "Rotated-Pässwort-🔑-2"
        mta.set_password(mta.user, rotated)
        _store_profile(secret_manager, mta, "ssl", password=rotated)
        token = uuid.uuid4().hex
        since = mta.settled_offset("ssl")
        result = ff.post_json("/", _request(token, [f"b-{token}@example.net"]))

        assert result.status == 200, result.text
        assert result.json()["status"] == "sent"
        assert mta.wait_for_messages(_ours(token))
        # The cached (old) password failed once, then the re-read secret succeeded: proof the
        # instance was warm and recovered by itself.
        sessions = mta.sessions("ssl", since, count=2)
        assert [s.stats.get("auth") for s in sessions] == ["0/1", "1"], sessions
        _output_is_clean(ff, result, rotated, DEFAULT_PASSWORD)


@pytest.fixture(scope="module")
def event_function(
    mta_tier: MtaTier, secret_manager: SecretManagerStub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionsFrameworkProcess]:
    """The Pub/Sub (CloudEvent) trigger as a process, with the in-memory idempotency ledger."""
    workdir = tmp_path_factory.mktemp("ff-mta-events")
    env = _function_env(mta_tier, secret_manager, workdir, SMTP_PROFILE_CACHE_TTL_S="0")
    with FunctionsFrameworkProcess("send_pubsub", "cloudevent", env=env, log_dir=workdir) as ff:
        yield ff


def test_pubsub_redelivery_after_a_deferral_never_repeats_an_accepted_recipient(
    mta: MtaTier, secret_manager: SecretManagerStub, event_function: FunctionsFrameworkProcess
) -> None:
    _store_profile(secret_manager, mta, "starttls")
    token = uuid.uuid4().hex
    good, later = (f"{k}-{token}@example.net" for k in ("good", "defer450"))
    event_id = f"mta-{token}"
    message = _request(token, [good, later])

    first = event_function.post_cloudevent(message, event_id=event_id)
    # Postfix deferred one recipient: the function raises so that Pub/Sub delivers it again.
    assert first.status == 500, first.text
    [got] = mta.wait_for_messages(_ours(token))
    assert got.original_recipient == good

    # Postfix logs the delivery to <good> as it leaves the queue: wait for that, and for the
    # first session's summary, so the log read below holds only the redelivery's lines.
    assert mta.queue_is_empty()
    since = mta.settled_offset("starttls")
    again = event_function.post_cloudevent(message, event_id=event_id)
    assert again.status == 500, again.text  # Postfix still defers it: still owed
    log = mta.log_text(since)
    # The redelivery spoke to Postfix about the recipient still owed, and only about it.
    assert f"<{later}>" in log
    assert f"<{good}>" not in log
    assert len(mta.delivered_now(_ours(token))) == 1
