"""The fault matrix: a scripted SMTP server plays one fault per row, through both triggers.

Each row of `FAULTS` is one way a provider, a middlebox or the network misbehaves
(`tests.support.fault_server`). For each, through the HTTP trigger and the Pub/Sub trigger (in
process, profile in the Secret Manager stand-in), the test asserts what a user would see:

- HTTP: the status, ``status``/``error``, ``smtp_code`` and per-recipient refusals of the body,
  and ``Retry-After`` on every 503;
- Pub/Sub: ack (2xx) or raise for redelivery (500), and the outcome log line's fields;
- the send ended within ``SEND_DEADLINE_S`` (3 s here) plus `MARGIN_S`, whatever the server did;
- what the server saw: messages accepted, commands the client must or must never send, AUTH only
  ever inside TLS and as often as the row says;
- no password and no body text in any log line or response;
- where it matters, whether the ``outcome unknown after DATA`` WARNING was logged.

Expected statuses follow PRODUCT.md, README ("HTTP responses", "Delivery guarantees") and issue 12.
Rows today's code gets wrong are marked ``xfail(strict=True)`` with the issue item, so the suite is
green now and the fix turns them into passes (a strict xfail that passes fails the run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from tests.support import pubsub
from tests.support.certs import CertBundle
from tests.support.checks import assert_no_secret, assert_retryable, log_records
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.fault_server import (
    FaultServer,
    Mode,
    Script,
    drip,
    hang,
    hang_up,
    reply,
)

SEND_DEADLINE_S = 3.0
SMTP_TIMEOUT_S = 1.0
# Scheduling on a busy 2-core machine, the Secret Manager read and a hung QUIT (bounded on its
# own, after the session deadline) fit in this; a send that ignored its deadline does not.
MARGIN_S = 2.5
BODY_CANARY = "fault-body-canary-4e07408562bedb8b"
OK, BUSY, GONE, THIRD = (
    "ops@example.com",
    "busy@example.com",
    "gone@example.com",
    "third@example.com",
)
UNKNOWN_OUTCOME = "outcome unknown after DATA"
LONG_TEXT = "fault.test.invalid ESMTP " + "x" * 200


@dataclass(frozen=True)
class Expect:
    """What the caller, Pub/Sub, the server and the logs must see for one fault."""

    status: int  # HTTP status
    outcome: str  # "sent" / "partial" (200), else the body's "error"
    pubsub: Literal["ack", "raise"]
    smtp_code: int | None = None
    refused: Mapping[str, int] = field(default_factory=dict)  # address -> reply code
    delivered: int = 0  # messages the server answered 2xx after the dot, per trigger
    detail: str | None = None  # a phrase the error's detail must contain
    sends: tuple[str, ...] = ()  # commands the client must send
    never: tuple[str, ...] = ()  # commands the client must never send
    auth_attempts: int | None = None  # AUTH commands per trigger call
    unknown_outcome: bool | None = None  # the UNKNOWN_OUTCOME WARNING: must / must not / n/a


SENT = Expect(200, "sent", "ack", delivered=1)
NOTHING = ("AUTH", "MAIL")  # a row that must fail before credentials or mail leave


def unavailable(code: int | None = None, **kw: Any) -> Expect:
    """503 + Retry-After; Pub/Sub redelivers."""
    return Expect(503, "unavailable", "raise", smtp_code=code, **kw)


def rejected(code: int | None = None, **kw: Any) -> Expect:
    """502; Pub/Sub acks (a redelivery would be refused the same way)."""
    return Expect(502, "rejected", "ack", smtp_code=code, **kw)


def misconfigured(**kw: Any) -> Expect:
    """500; Pub/Sub redelivers while an operator fixes the profile."""
    return Expect(500, "misconfigured", "raise", **kw)


@dataclass(frozen=True)
class Fault:
    """One row: the server's script and setting, the profile, the recipients, the expectation."""

    name: str
    script: Script
    expect: Expect
    mode: Mode = "ssl"
    cert: Literal["trusted", "untrusted", "wrong-name"] = "trusted"
    security: str | None = None  # the profile's; default: what fits the mode
    login: bool = True  # the profile has a username and password
    to: tuple[str, ...] = (OK,)
    issue: str | None = None  # today's code gets it wrong: xfail(strict) with this reason
    http_issue: str | None = None  # the same, for the HTTP answer only


def at(**steps: Any) -> Script:
    """`Script` from keyword points: ``at(MAIL=reply(451, ..))``; ``after_dot`` is "after-dot"."""
    return Script(replies={name.replace("_", "-"): step for name, step in steps.items()})


def rcpt(**by_address: Any) -> Script:
    return Script(rcpt=dict(by_address))


FAULTS: list[Fault] = [
    # -- connecting -------------------------------------------------------------------------------
    Fault("refused", Script(refuse=True), unavailable(detail="refused the connection")),
    Fault("blackhole-accepts-never-greets", at(greeting=hang()), unavailable(never=NOTHING)),
    Fault(
        "greeting-dripped-past-the-deadline",
        at(greeting=drip(220, LONG_TEXT, every_s=0.2)),
        unavailable(detail="deadline", never=NOTHING),
    ),
    Fault("slow-greeting-within-the-timeout", at(greeting=reply(220, "hi", delay_s=0.5)), SENT),
    Fault(
        "slow-greeting-beyond-the-timeout",
        at(greeting=reply(220, "hi", delay_s=2.5)),
        unavailable(never=NOTHING),
    ),
    Fault("greeting-then-hang-up", at(greeting=reply(220, "hi", then="close")), unavailable()),
    # -- refused at the greeting (RFC 5321 3.1) ---------------------------------------------------
    Fault(
        "greeting-421-hang-up",
        at(greeting=reply(421, "4.3.2 Service not available", then="close")),
        unavailable(421, never=NOTHING),
    ),
    Fault(
        "greeting-421-linger",
        at(greeting=reply(421, "4.3.2 Service not available", then="linger")),
        unavailable(421, never=NOTHING),
    ),
    Fault(
        "greeting-554-hang-up",
        at(greeting=reply(554, "5.3.2 No SMTP service here", then="close")),
        rejected(554, never=NOTHING),
    ),
    Fault(
        "greeting-554-linger",
        at(greeting=reply(554, "5.3.2 No SMTP service here", then="linger")),
        rejected(554, never=NOTHING),
    ),
    # -- TLS --------------------------------------------------------------------------------------
    Fault(
        "untrusted-certificate",
        Script(),
        unavailable(detail="certificate", never=("EHLO", *NOTHING)),
        cert="untrusted",
    ),
    Fault(
        "certificate-for-another-name",
        Script(),
        unavailable(detail="certificate", never=("EHLO", *NOTHING)),
        cert="wrong-name",
    ),
    Fault(
        "untrusted-certificate-after-starttls",
        Script(),
        unavailable(detail="certificate", never=NOTHING),
        mode="starttls",
        cert="untrusted",
    ),
    Fault(
        "starttls-not-offered",
        Script(extensions=("8BITMIME", "AUTH PLAIN LOGIN")),
        unavailable(detail="STARTTLS", never=("STARTTLS", *NOTHING)),
        mode="starttls",
    ),
    Fault(
        "starttls-454",
        at(STARTTLS=reply(454, "4.7.0 TLS not available due to temporary reason")),
        unavailable(454, never=NOTHING),
        mode="starttls",
    ),
    Fault(
        "starttls-220-then-hang-up",
        at(STARTTLS=reply(220, "2.0.0 Go ahead", then="close")),
        unavailable(never=NOTHING),
        mode="starttls",
    ),
    Fault(
        "ssl-profile-against-a-plaintext-port",
        Script(),
        unavailable(never=NOTHING),
        mode="plain",
        security="ssl",
    ),
    Fault(
        "starttls-profile-against-an-implicit-tls-port",
        Script(),
        unavailable(never=NOTHING),
        security="starttls",
    ),
    # -- authentication ---------------------------------------------------------------------------
    Fault(
        "auth-535",
        at(AUTH=reply(535, "5.7.8 Username and Password not accepted")),
        misconfigured(smtp_code=535, never=("MAIL",), auth_attempts=1),
    ),
    Fault(
        "auth-454",
        at(AUTH=reply(454, "4.7.0 Temporary authentication failure")),
        unavailable(454, never=("MAIL",), auth_attempts=1),
    ),
    Fault(
        "auth-not-offered",
        Script(extensions=("8BITMIME", "SMTPUTF8")),
        misconfigured(detail="does not offer AUTH", never=NOTHING),
    ),
    Fault(
        "auth-only-an-unsupported-mechanism",
        Script(extensions=("AUTH CRAM-MD5",)),
        misconfigured(detail="CRAM-MD5", never=NOTHING),
    ),
    Fault("auth-login-only", Script(extensions=("AUTH LOGIN",)), SENT),
    Fault(
        "odd-ehlo-old-auth-equals-and-unknown-extensions",
        Script(
            extensions=(
                "X-EXPERIMENTAL-THING yes please",
                "AUTH=PLAIN LOGIN",
                "XCLIENT NAME ADDR PROTO",
                "SIZE",
                "chunking",
            )
        ),
        Expect(200, "sent", "ack", delivered=1, auth_attempts=1),
    ),
    Fault(
        "530-at-mail-relay-wants-auth",
        at(MAIL=reply(530, "5.7.0 Authentication required")),
        # The profile lacks credentials the server needs: an operator must act; keep the alert.
        misconfigured(smtp_code=530),
        login=False,
    ),
    # -- the mail transaction ---------------------------------------------------------------------
    Fault("mail-451", at(MAIL=reply(451, "4.3.0 Try again later")), unavailable(451)),
    Fault("mail-550", at(MAIL=reply(550, "5.7.1 Sender not allowed")), rejected(550)),
    Fault(
        "mail-421-closing",
        at(MAIL=reply(421, "4.4.5 Too busy, closing", then="close")),
        unavailable(421),
    ),
    Fault("mail-never-answered", at(MAIL=hang()), unavailable(never=("RCPT",))),
    Fault(
        "rcpt-250-and-550",
        rcpt(**{GONE: reply(550, "5.1.1 No such user")}),
        Expect(200, "partial", "ack", refused={GONE: 550}, delivered=1),
        to=(OK, GONE),
    ),
    Fault(
        "rcpt-250-and-450",
        rcpt(**{BUSY: reply(450, "4.2.1 Mailbox busy")}),
        Expect(200, "partial", "raise", refused={BUSY: 450}, delivered=1),
        to=(OK, BUSY),
    ),
    Fault(
        "rcpt-450-and-550-none-accepted",
        rcpt(**{BUSY: reply(450, "4.2.1 Mailbox busy"), GONE: reply(550, "5.1.1 No such user")}),
        unavailable(refused={BUSY: 450, GONE: 550}, never=("DATA",)),
        to=(BUSY, GONE),
    ),
    Fault(
        "rcpt-all-450",
        at(RCPT=reply(450, "4.2.1 Mailbox busy")),
        unavailable(refused={OK: 450, BUSY: 450}, never=("DATA",)),
        to=(OK, BUSY),
    ),
    Fault(
        "rcpt-all-550",
        at(RCPT=reply(550, "5.1.1 No such user")),
        rejected(refused={OK: 550, GONE: 550}, never=("DATA",)),
        to=(OK, GONE),
    ),
    Fault(
        "rcpt-all-550-and-rset-never-answered",
        Script(replies={"RCPT": reply(550, "5.1.1 No such user"), "RSET": hang()}),
        rejected(refused={OK: 550, GONE: 550}, never=("DATA",)),
        to=(OK, GONE),
    ),
    Fault(
        "rcpt-452-too-many-recipients-for-the-third",
        rcpt(**{THIRD: reply(452, "4.5.3 Too many recipients")}),
        Expect(200, "partial", "raise", refused={THIRD: 452}, delivered=1),
        to=(OK, GONE, THIRD),
    ),
    Fault(
        "rcpt-421-closing-on-the-second",
        rcpt(**{BUSY: reply(421, "4.3.2 Shutting down", then="close")}),
        # OK's RCPT was accepted, but no DATA followed: it is owed the message as much as BUSY.
        unavailable(refused={OK: 421, BUSY: 421}, never=("DATA",)),
        to=(OK, BUSY),
    ),
    # -- DATA and after the dot -------------------------------------------------------------------
    Fault("data-554", at(DATA=reply(554, "5.7.1 Message refused")), rejected(554)),
    Fault("data-451", at(DATA=reply(451, "4.3.0 Try again later")), unavailable(451)),
    Fault(
        "after-dot-451",
        at(after_dot=reply(451, "4.7.1 Greylisted, try again")),
        unavailable(451, unknown_outcome=False),
    ),
    Fault(
        "after-dot-552",
        at(after_dot=reply(552, "5.3.4 Message too big")),
        rejected(552, unknown_outcome=False),
    ),
    Fault(
        "after-dot-554",
        at(after_dot=reply(554, "5.7.1 Spam detected")),
        rejected(554, unknown_outcome=False),
    ),
    # The whole (small) message and its dot fit the socket's buffer before the server hangs up:
    # from the client's side this is indistinguishable from a hang-up after the dot.
    Fault("hang-up-mid-data", at(body=hang_up()), unavailable(unknown_outcome=True)),
    Fault(
        "hang-up-after-the-dot",
        at(after_dot=hang_up()),
        unavailable(unknown_outcome=True),
    ),
    Fault(
        "after-dot-never-answered",
        at(after_dot=hang()),
        unavailable(unknown_outcome=True),
    ),
    # The server accepted (it chose 250), but the deadline cuts the session while the reply's
    # code is still arriving: the client cannot know, so this is the unknown outcome. Every
    # step is slow but under SMTP_TIMEOUT_S, so the dot goes at >= 2 s: "2" and maybe "5"
    # arrive before the 3 s deadline, "0" (>= 3.2 s) never does.
    Fault(
        "after-dot-reply-cut-by-the-deadline",
        at(
            greeting=reply(220, "slow but alive", delay_s=0.5),
            MAIL=reply(250, "2.1.0 OK", delay_s=0.5),
            RCPT=reply(250, "2.1.5 OK", delay_s=0.5),
            DATA=reply(354, "go ahead", delay_s=0.5),
            after_dot=drip(250, "2.0.0 queued", every_s=0.6),
        ),
        unavailable(detail="deadline", delivered=1, unknown_outcome=True),
    ),
    # -- after the message was accepted -----------------------------------------------------------
    Fault("quit-421-after-250", at(QUIT=reply(421, "4.3.2 Bye anyway", then="close")), SENT),
    Fault("quit-never-answered-after-250", at(QUIT=hang()), SENT),
    # -- what EHLO says ---------------------------------------------------------------------------
    Fault(
        "no-8bitmime-no-smtputf8-unicode-message",
        Script(extensions=("AUTH PLAIN",)),
        SENT,
    ),
    Fault("ehlo-never-answered", at(EHLO=hang()), unavailable(never=NOTHING)),
    Fault(
        "ehlo-421-closing",
        at(EHLO=reply(421, "4.3.2 Too many connections", then="close")),
        unavailable(421, never=NOTHING),
    ),
    Fault(
        "ehlo-500-helo-fallback-relay",
        at(EHLO=reply(500, "5.5.1 Command unrecognized")),
        Expect(200, "sent", "ack", delivered=1, sends=("HELO",)),
        login=False,
    ),
    Fault(
        "ehlo-502-helo-fallback-relay",
        at(EHLO=reply(502, "5.5.2 Not implemented")),
        Expect(200, "sent", "ack", delivered=1, sends=("HELO",)),
        login=False,
    ),
    Fault(
        "ehlo-502-helo-fallback-with-a-login",
        at(EHLO=reply(502, "5.5.2 Not implemented")),
        misconfigured(sends=("HELO",), never=NOTHING),
    ),
]


def _params(trigger: Literal["http", "pubsub"]) -> list[Any]:
    params = []
    for fault in FAULTS:
        reason = fault.issue or (fault.http_issue if trigger == "http" else None)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(fault, id=fault.name, marks=marks))
    return params


def test_the_matrix_has_at_least_thirty_distinct_faults() -> None:
    names = [fault.name for fault in FAULTS]
    assert len(set(names)) == len(names) >= 30


@pytest.fixture(scope="module")
def wrong_name_certs(tmp_path_factory: pytest.TempPathFactory, test_ca: CertBundle) -> CertBundle:
    """Issued by the trusted CA, for a name the profile's host is not."""
    return test_ca.reissue(tmp_path_factory.mktemp("wrong-name"), "smtp.other.example")


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Fault:
    row: Fault = request.param
    return row


@pytest.fixture
def fault_server(
    fault: Fault,
    sender_env: SenderEnv,
    test_ca: CertBundle,
    untrusted_ca: CertBundle,
    wrong_name_certs: CertBundle,
) -> Iterator[FaultServer]:
    """The row's server running, its profile stored, the short deadlines set."""
    certs = {"trusted": test_ca, "untrusted": untrusted_ca, "wrong-name": wrong_name_certs}
    with FaultServer(
        fault.script,
        mode=fault.mode,
        certs=certs[fault.cert] if fault.mode != "plain" else None,
        users={SMTP_USER: CANARY_PASSWORD},
    ) as server:
        login = {"username": SMTP_USER, "password": CANARY_PASSWORD} if fault.login else {}
        sender_env.store(json.dumps(server.profile(security=fault.security, **login)))
        sender_env.set(SEND_DEADLINE_S=f"{SEND_DEADLINE_S:g}", SMTP_TIMEOUT_S=f"{SMTP_TIMEOUT_S:g}")
        yield server


def _message(fault: Fault) -> dict[str, Any]:
    return {
        "to": list(fault.to),
        "subject": "Disk 91% on db-1 · 디스크 91%",
        "text": f"db-1: /var is 91% full. {BODY_CANARY}",
        "html": f"<p>db-1: /var is 91% full. {BODY_CANARY}</p>",
    }


def _check_server(fault: Fault, server: FaultServer) -> None:
    expect = fault.expect
    commands = server.commands
    assert len(server.delivered) == expect.delivered, commands
    for verb in expect.sends:
        assert verb in commands, commands
    for verb in expect.never:
        assert verb not in commands, commands
    attempts = server.auth_attempts
    assert all(attempt.encrypted for attempt in attempts), attempts
    if expect.auth_attempts is not None:
        assert len(attempts) == expect.auth_attempts, attempts
    for message in server.delivered:
        # 7-bit clean whatever the server advertised (no 8BITMIME, no SMTPUTF8 needed).
        assert message.raw.isascii()


def _check_logs(out: str, err: str, *answers: str) -> list[dict[str, Any]]:
    """No password or body anywhere; the unknown-outcome WARNING as the row says (checked
    last: it is what issue 12.6 changes). Returns the log records."""
    assert_no_secret(out, err, *answers)
    assert BODY_CANARY not in "\n".join([out, err, *answers])
    records = log_records(out)
    assert records  # the checks above saw real log output
    return records


def _check_unknown_outcome(fault: Fault, records: list[dict[str, Any]]) -> None:
    if fault.expect.unknown_outcome is None:
        return
    warned = [
        r
        for r in records
        if UNKNOWN_OUTCOME in str(r.get("message", "")) and r.get("severity") == "WARNING"
    ]
    wanted = "a" if fault.expect.unknown_outcome else "no"
    assert bool(warned) is fault.expect.unknown_outcome, (
        f"expected {wanted} WARNING {UNKNOWN_OUTCOME!r}; "
        f"logged: {[r.get('message') for r in records]}"
    )


def _within_deadline(started: float) -> None:
    elapsed = time.monotonic() - started
    assert elapsed < SEND_DEADLINE_S + MARGIN_S, f"{elapsed:.1f} s"


@pytest.mark.parametrize("fault", _params("http"), indirect=True)
def test_http(
    fault: Fault,
    fault_server: FaultServer,
    http_client: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    expect = fault.expect
    started = time.monotonic()
    response = http_client.post("/", json=_message(fault))
    _within_deadline(started)
    out, err = capfd.readouterr()
    text = response.get_data(as_text=True)

    assert response.status_code == expect.status, text
    body = response.get_json()
    assert body.get("status", body.get("error")) == expect.outcome, body
    assert body.get("smtp_code") == expect.smtp_code, body
    refused = {address: r["code"] for address, r in body.get("refused", {}).items()}
    assert refused == dict(expect.refused), body
    if expect.detail is not None:
        assert expect.detail in body["detail"], body
    if expect.status == 503:
        assert_retryable(response)
    _check_server(fault, fault_server)
    records = _check_logs(out, err, text, str(dict(response.headers)))
    _check_unknown_outcome(fault, records)


@pytest.mark.parametrize("fault", _params("pubsub"), indirect=True)
def test_pubsub(
    fault: Fault,
    fault_server: FaultServer,
    event_client: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    expect = fault.expect
    started = time.monotonic()
    response = pubsub.post_event(event_client, _message(fault), event_id=f"fault-{fault.name}")
    _within_deadline(started)
    out, err = capfd.readouterr()
    text = response.get_data(as_text=True)

    acked = 200 <= response.status_code < 300
    assert acked is (expect.pubsub == "ack"), (response.status_code, out)
    if not acked:
        assert response.status_code == 500
    records = _check_logs(out, err, text)
    if expect.status == 200:
        message = "email partially sent" if expect.refused else "email sent"
        found = [r for r in records if r.get("message") == message]
        assert len(found) == 1, records
        outcome = found[0]
        assert outcome["accepted_count"] == len(fault.to) - len(expect.refused)
    else:
        found = [r for r in records if r.get("message") in {"email not sent", UNKNOWN_OUTCOME}]
        assert len(found) == 1, records
        outcome = found[0]
        assert outcome["error"] == expect.outcome, outcome
        assert outcome.get("smtp_code") == expect.smtp_code, outcome
        assert outcome["severity"] == ("WARNING" if expect.status == 503 else "ERROR")
    refused = {address: r["code"] for address, r in outcome.get("refused", {}).items()}
    assert refused == dict(expect.refused), outcome
    _check_server(fault, fault_server)
    _check_unknown_outcome(fault, records)
