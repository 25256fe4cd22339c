"""Authenticated SMTP sessions kept while the instance is warm, at most `size` per profile source.

Every email used to pay a TCP connect, a TLS handshake, EHLO and AUTH; a pooled session pays them
once and then sends one message per MAIL/RCPT/DATA transaction. The rules that keep it correct:

- A session is reused only if it still looks good when it is taken (`Session.looks_closed`, a
  zero-wait poll: no background thread, because Cloud Run throttles the CPU between requests),
  is younger than `SMTP_POOL_IDLE_S` since its last use and has sent fewer than
  `SMTP_SESSION_MAX_MESSAGES`. A server that closed it anyway shows up as a failed MAIL FROM
  (`StaleSessionError`): nothing was accepted, so the message goes out on a fresh session.
- Once DATA has begun nothing is resent here; after any failure the session is closed, never
  returned (its state is unknown). The exactly-once rules decide what happens next.
- Sessions belong to one profile *payload*: a rotated secret (new fingerprint) closes the old
  idle ones and never reuses a busy one; an authentication failure (a refused password or OAuth2
  token) empties the pool, so no session outlives the sign-in that was refused.
- At most `size` sessions are open at once, as the server counts them: a session being ended
  holds its slot until its QUIT is answered (a provider that allows 3 connections refuses a
  fourth opened while the third is still saying goodbye). A send that finds no slot waits,
  within its own deadline. `sender.instance` sets `size`: `SMTP_POOL_SIZE`, capped by the
  provider's limit of concurrent connections (Microsoft 365: 3 per mailbox).
- An OAuth2 profile's token is asked for only when a session is opened: a warm session needs none.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from collections.abc import Callable

from sender import transport
from sender.deadline import Deadline
from sender.errors import StaleSessionError, TransientError
from sender.mime import Envelope
from sender.outcome import Refusal
from sender.profile import SmtpProfile
from sender.transport import Session


class SessionPool:
    """The sessions of one profile source; thread-safe."""

    def __init__(
        self,
        *,
        size: int,
        idle_s: float,
        max_messages: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self._idle_s = idle_s
        self._max_messages = max_messages
        self._clock = clock
        self._changed = threading.Condition()
        self._idle: list[Session] = []  # last in, first out: the warmest session first
        self._open = 0  # idle + in use + being opened
        self._fingerprint: str | None = None

    def send(
        self,
        profile: SmtpProfile,
        fingerprint: str,
        envelope: Envelope,
        message: bytes,
        *,
        context: ssl.SSLContext,
        deadline: Deadline,
        access_token: Callable[[], str] | None = None,
    ) -> dict[str, Refusal]:
        """Send over a pooled session of `profile` (whose payload digest is `fingerprint`);
        *access_token* signs a new session in (oauth2 profiles)."""
        while True:
            session = self._checkout(fingerprint, deadline)
            reused = session is not None
            try:
                if session is None:
                    session = transport.open_session(
                        profile, context=context, deadline=deadline, access_token=access_token
                    )
                refused = session.send(envelope, message, deadline=deadline, reused=reused)
            except StaleSessionError:
                self._forget(session)
                continue  # nothing was accepted: the next (or a fresh) session takes it
            except smtplib.SMTPAuthenticationError:
                self._forget(session)
                self.drain()  # the credentials every idle session logged in with are suspect
                raise
            except BaseException:
                self._forget(session)
                raise
            self._checkin(session, fingerprint)
            return refused

    def resize(self, size: int) -> None:
        """At most *size* sessions from now on (busy ones beyond it close when they come back)."""
        with self._changed:
            if size == self.size:
                return
            self.size = size
            # The coldest idle sessions go first (the list ends with the warmest).
            count = max(0, min(len(self._idle), self._open - size))
            excess, self._idle = self._idle[:count], self._idle[count:]
        self._retire(excess)  # their slots are freed once their QUITs are answered

    def drain(self) -> None:
        """Close every idle session (credentials refused: none of them may be trusted)."""
        with self._changed:
            idle, self._idle = self._idle, []
        self._retire(idle)

    close = drain  # what `sender.instance.reset` calls on everything it drops

    def _usable(self, session: Session, now: float) -> bool:
        fresh = now - session.last_used_at < self._idle_s
        return fresh and session.messages_sent < self._max_messages and not session.looks_closed()

    def _checkout(self, fingerprint: str, deadline: Deadline) -> Session | None:
        """A good idle session, or None with a slot reserved for a new one; waits while all
        `size` sessions are busy (raising at the deadline)."""
        while True:
            retired: list[Session] = []
            found: Session | None = None
            with self._changed:
                if fingerprint != self._fingerprint:  # a rotated secret: none of these may serve
                    retired, self._idle = self._idle, []
                    self._fingerprint = fingerprint
                while self._idle and found is None:
                    session = self._idle.pop()
                    if self._usable(session, self._clock()):
                        found = session
                    else:
                        retired.append(session)
                if found is None and not retired:
                    if self._open < self.size:
                        self._open += 1
                        return None
                    left = deadline.left()
                    if left <= 0:
                        raise TransientError(
                            f"all {self.size} SMTP sessions stayed busy until the send deadline",
                            condition="pool_busy",
                        )
                    self._changed.wait(left)
                    continue
            self._retire(retired)  # outside the lock: QUIT may wait on the network
            if found is not None:
                return found

    def _checkin(self, session: Session, fingerprint: str) -> None:
        keep = session.messages_sent < self._max_messages
        with self._changed:
            if keep and fingerprint == self._fingerprint and self._open <= self.size:
                session.last_used_at = self._clock()
                self._idle.append(session)
                self._changed.notify()
                return
        self._retire([session])  # used up, or its profile was rotated meanwhile

    def _retire(self, sessions: list[Session]) -> None:
        """QUIT each session, then free its slot: the server has seen it end by then."""
        if not sessions:
            return
        for session in sessions:
            session.quit()
        with self._changed:
            self._open -= len(sessions)
            self._changed.notify_all()

    def _forget(self, session: Session | None) -> None:
        """A session that failed (already closed by `Session.send`) or never opened."""
        if session is not None:
            session.close()
        with self._changed:
            self._open -= 1
            self._changed.notify()
