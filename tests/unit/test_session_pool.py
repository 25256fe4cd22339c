"""`SessionPool` rules with stand-in sessions: what is reused, what is closed, and when."""

from __future__ import annotations

import smtplib
import ssl
import threading
from typing import Any

import pytest

from sender import transport
from sender.deadline import Deadline
from sender.errors import StaleSessionError, TransientError
from sender.mime import Envelope
from sender.profile import SmtpProfile
from sender.session_pool import SessionPool
from tests.support.fakes import FakeClock

PROFILE = SmtpProfile("smtp.example.com", 465, "ssl", "u", "p")
ENVELOPE = Envelope("a@example.com", ["b@example.com"])


class FakeSession:
    """Stands in for `transport.Session`: records what the pool did with it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.last_used_at = 0.0
        self.messages_sent = 0
        self.closed_by_server = False
        self.fail_with: BaseException | None = None
        self.ended: str | None = None  # "quit" or "close"

    def looks_closed(self) -> bool:
        return self.closed_by_server

    def send(self, envelope: Envelope, message: bytes, **_: Any) -> dict[str, Any]:
        if self.fail_with is not None:
            self.ended = "close"
            raise self.fail_with
        self.messages_sent += 1
        return {}

    def quit(self) -> None:
        self.ended = self.ended or "quit"

    def close(self) -> None:
        self.ended = self.ended or "close"


class Opener:
    """Replaces `transport.open_session`; `refuse` makes the next opens fail with a 535 (once
    `gate` is set, so a test can act while a login is under way)."""

    def __init__(self) -> None:
        self.opened: list[FakeSession] = []
        self.calls: list[dict[str, Any]] = []  # the keyword arguments of each open
        self.refuse = False
        self.gate = threading.Event()
        self.gate.set()
        self.logging_in = threading.Event()

    def __call__(self, profile: SmtpProfile, **kwargs: Any) -> FakeSession:
        self.calls.append(kwargs)
        if self.refuse:
            self.logging_in.set()
            self.gate.wait(10)
            raise smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials")
        session = FakeSession(len(self.opened) + 1)
        self.opened.append(session)
        return session


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch) -> Opener:
    fake = Opener()
    monkeypatch.setattr(transport, "open_session", fake)
    return fake


def deadline(seconds: float = 5) -> Deadline:
    return Deadline(seconds, expired=lambda: TransientError("deadline"))


def send(pool: SessionPool, fingerprint: str = "v1", within: float = 5) -> None:
    context = ssl.create_default_context()
    pool.send(PROFILE, fingerprint, ENVELOPE, b"m", context=context, deadline=deadline(within))


def make_pool(clock: FakeClock, size: int = 2, max_messages: int = 100) -> SessionPool:
    return SessionPool(size=size, idle_s=30, max_messages=max_messages, clock=clock)


def test_the_warm_session_is_reused(opener: Opener) -> None:
    pool = make_pool(FakeClock())
    for _ in range(5):
        send(pool)
    assert len(opener.opened) == 1
    assert opener.opened[0].messages_sent == 5


def test_an_idle_session_past_its_idle_time_is_closed_not_reused(opener: Opener) -> None:
    clock = FakeClock()
    pool = make_pool(clock)
    send(pool)
    clock.advance(31)
    send(pool)
    first, second = opener.opened
    assert (first.ended, second.ended) == ("quit", None)


def test_a_session_that_looks_closed_is_replaced(opener: Opener) -> None:
    pool = make_pool(FakeClock())
    send(pool)
    opener.opened[0].closed_by_server = True
    send(pool)
    assert len(opener.opened) == 2


def test_a_stale_session_found_at_mail_from_is_replaced_and_the_message_sent(
    opener: Opener,
) -> None:
    pool = make_pool(FakeClock())
    send(pool)
    opener.opened[0].fail_with = StaleSessionError("closed")
    send(pool)
    first, second = opener.opened
    assert (first.ended, second.messages_sent) == ("close", 1)


def test_a_failed_session_is_closed_and_never_returned(opener: Opener) -> None:
    pool = make_pool(FakeClock())
    send(pool)
    opener.opened[0].fail_with = smtplib.SMTPDataError(451, b"4.3.0 try later")
    with pytest.raises(smtplib.SMTPDataError):
        send(pool)
    opener.opened[0].fail_with = None
    send(pool)
    assert len(opener.opened) == 2  # the failed one was not used again


def test_a_session_is_replaced_after_its_message_quota(opener: Opener) -> None:
    pool = make_pool(FakeClock(), max_messages=3)
    for _ in range(4):
        send(pool)
    assert [s.messages_sent for s in opener.opened] == [3, 1]
    assert opener.opened[0].ended == "quit"


def test_a_session_saying_goodbye_still_holds_its_slot(
    opener: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server counts a session until its QUIT is answered: a replacement opened earlier
    would be one connection more than the pool's size (a provider's limit)."""
    pool = make_pool(FakeClock(), size=1, max_messages=1)
    quitting, answered = threading.Event(), threading.Event()

    def slow_quit(self: FakeSession) -> None:
        quitting.set()
        assert answered.wait(10)
        self.ended = "quit"

    monkeypatch.setattr(FakeSession, "quit", slow_quit)
    first = threading.Thread(target=send, args=(pool,))
    first.start()  # one message: its quota is used up, so the session is ended after it
    assert quitting.wait(10)
    second = threading.Thread(target=send, args=(pool,))
    second.start()
    second.join(timeout=0.3)

    assert second.is_alive()  # waiting for the slot, not opening a second connection
    assert len(opener.opened) == 1
    answered.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert [s.ended for s in opener.opened] == ["quit", "quit"]
    assert pool._open == 0


def test_a_rotated_profile_closes_the_old_idle_sessions(opener: Opener) -> None:
    pool = make_pool(FakeClock())
    send(pool, "v1")
    send(pool, "v2")
    first, second = opener.opened
    assert (first.ended, second.ended, second.messages_sent) == ("quit", None, 1)


def test_credentials_refused_close_every_idle_session(opener: Opener) -> None:
    pool = make_pool(FakeClock(), size=3)
    opener.refuse = True
    opener.gate.clear()
    failures: list[BaseException] = []

    def login_that_will_fail() -> None:
        try:
            send(pool)
        except smtplib.SMTPAuthenticationError as exc:
            failures.append(exc)

    thread = threading.Thread(target=login_that_will_fail)
    thread.start()
    assert opener.logging_in.wait(10)
    # Meanwhile another send returns a healthy session, logged in with the same credentials.
    assert pool._checkout("v1", deadline()) is None
    other = FakeSession(99)
    pool._checkin(other, "v1")  # type: ignore[arg-type]
    opener.gate.set()  # now the first login gets its 535
    thread.join(timeout=10)

    assert len(failures) == 1
    assert other.ended == "quit"  # drained, never used with suspect credentials
    assert pool._open == 0


def test_a_send_waits_for_a_busy_pool_and_gives_up_at_its_deadline(opener: Opener) -> None:
    pool = make_pool(FakeClock(), size=1)
    assert pool._checkout("v1", deadline()) is None  # the only slot, held by another send
    with pytest.raises(TransientError, match="busy"):
        send(pool, within=0.2)
    assert opener.opened == []


def test_a_smaller_size_closes_the_coldest_idle_sessions_and_caps_new_ones(opener: Opener) -> None:
    """The pool follows the profile's provider limit (Microsoft 365: 3 per mailbox)."""
    pool = make_pool(FakeClock(), size=3)
    held = [pool._checkout("v1", deadline()) for _ in range(3)]
    assert held == [None, None, None]  # three slots taken: open three sessions into them
    sessions = [FakeSession(n) for n in range(3)]
    for session in sessions:
        pool._checkin(session, "v1")  # type: ignore[arg-type]
    pool.resize(1)
    assert [s.ended for s in sessions] == ["quit", "quit", None]  # the warmest one stays
    assert pool._open == 1
    send(pool)
    assert sessions[2].messages_sent == 1
    assert opener.opened == []
    taken: object = pool._checkout("v1", deadline())
    assert taken is sessions[2]  # taken by another send ...
    with pytest.raises(TransientError, match="busy"):
        send(pool, within=0.2)  # ... so this one finds none free and opens none


def test_the_token_is_asked_for_only_when_a_session_is_opened(opener: Opener) -> None:
    pool = make_pool(FakeClock())

    def token() -> str:
        return "t"

    context = ssl.create_default_context()
    for _ in range(3):
        pool.send(PROFILE, "v1", ENVELOPE, b"m", context=context, deadline=deadline(),
                  access_token=token)  # fmt: skip
    assert len(opener.opened) == 1
    assert opener.calls[0]["access_token"] is token
