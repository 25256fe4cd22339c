"""A real SMTP server for tests: aiosmtpd in a background thread on 127.0.0.1, any free port.

`SmtpTestServer` runs in one of three modes (`SmtpMode`):

- ``SSL``: implicit TLS from the first byte (port-465 style).
- ``STARTTLS``: plaintext greeting, STARTTLS offered, AUTH only after TLS (port-587 style).
- ``PLAIN``: no STARTTLS offered, yet AUTH is advertised and accepted on the plain socket, so a
  test can prove that the client never sent credentials in clear (`SmtpTestServer.auth_attempts`).

Usage::

    with SmtpTestServer(SmtpMode.SSL, certs=bundle, users={"u": "pässword"}) as srv:
        ...  # srv.host, srv.port, srv.profile(username="u", password="pässword")
        srv.wait_for_messages(1, timeout=10)
        srv.messages[0].message["Subject"]

Behaviour knobs (all thread-safe, may be changed while running):

- ``users``: username -> password. AUTH PLAIN and LOGIN decode the client's bytes as UTF-8
  (RFC 4616); aiosmtpd hands over raw bytes, and comparing ``str`` passwords needs this decode.
- `set_password`, `reject_recipient(addr, "550 5.1.1 No such user")`.
- `fail_mail_from(reply, times=None)`, `fail_data(reply, times=None)`: reply instead of accepting;
  ``times=None`` means every time, otherwise only the next *times* attempts.
- `disconnect_after_data(times=None)`: read the whole message, then drop the connection without
  replying (the client cannot know whether it was accepted); nothing is recorded as delivered.
- `stall(at, seconds)`: ``at`` in ``"greeting" | "mail" | "data"``: sleep before answering.
- `hang_up_idle(reply)`: close every open connection unasked, as an idle timeout does.
- `clear_faults()`, `clear_records()`.

Records:

- `messages`: `DeliveredMessage` (envelope ``mail_from``, ``rcpt_tos``, ``raw`` bytes as received
  with CRLF, ``message`` parsed from the LF-normalised bytes with ``email.policy.default``), in
  order of delivery; `copies_for(address)` counts those addressed to one envelope recipient.
- `sessions`: `SessionLog` per client connection that said EHLO/HELO: the command verbs in order,
  whether TLS was active from the start, whether STARTTLS completed, AUTH attempts
  (`AuthAttempt`: mechanism, username, success, encrypted). Passwords are never recorded.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.certs import CertBundle
from tests.support.constants import PROFILE_FROM
from tests.support.lifecycle import StartStop

StallPoint = Literal["greeting", "mail", "data"]


class SmtpMode(StrEnum):
    """How the test server speaks TLS."""

    SSL = "ssl"
    STARTTLS = "starttls"
    PLAIN = "plain"


@dataclass(frozen=True)
class DeliveredMessage:
    """One message the server accepted (end of DATA answered 250)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    session_id: int


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH command as the server saw it (never the password)."""

    mechanism: str
    username: str | None
    success: bool
    encrypted: bool


@dataclass
class SessionLog:
    """What one client connection did, in order."""

    session_id: int
    tls_from_start: bool
    starttls_done: bool = False
    commands: list[str] = field(default_factory=list)
    auth_attempts: list[AuthAttempt] = field(default_factory=list)

    @property
    def auth_attempted(self) -> bool:
        """True when the client sent any AUTH command on this connection."""
        return "AUTH" in self.commands


@dataclass
class _Fault:
    reply: str
    remaining: int | None  # None = forever

    def take(self) -> bool:
        """Consume one use; False when exhausted."""
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


class _State:
    """Everything the server threads and the test thread share, behind one lock."""

    def __init__(self, users: dict[str, str]) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.users = dict(users)
        self.recipient_replies: dict[str, str] = {}
        self.mail_fault: _Fault | None = None
        self.data_fault: _Fault | None = None
        self.disconnect_fault: _Fault | None = None
        self.stalls: dict[str, float] = {}
        self.live: set[_RecordingSMTP] = set()  # connections open right now
        self.messages: list[DeliveredMessage] = []
        self.sessions: list[SessionLog] = []
        self.ids = itertools.count(1)


def _decode_utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


# How long a hung-up connection may take to close politely before it is aborted.
_CLOSE_GRACE_S = 0.2


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP with a per-connection command log and stalls."""

    def __init__(self, handler: _Handler, state: _State, tls_from_start: bool, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._state = state
        self._tls_from_start = tls_from_start
        self.log: SessionLog | None = None

    def _encrypted(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def _record(self, verb: str) -> SessionLog:
        with self._state.lock:
            if self.log is None:
                self.log = SessionLog(next(self._state.ids), tls_from_start=self._tls_from_start)
                self._state.sessions.append(self.log)
            self.log.commands.append(verb)
            return self.log

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrading = self._original_transport is not None
        super().connection_made(transport)
        with self._state.lock:
            self._state.live.add(self)
        # Called a second time when the STARTTLS handshake completed.
        if upgrading and self.log is not None:
            with self._state.lock:
                self.log.starttls_done = True

    def connection_lost(self, error: Exception | None) -> None:
        with self._state.lock:
            self._state.live.discard(self)
        super().connection_lost(error)

    def hang_up(self, reply: str | None) -> None:
        """Say `reply` unasked (a server's idle-timeout 421) and close; on the server's loop.

        A TLS close waits for the client's close_notify, which an idle client never sends: the
        connection is aborted shortly after, as a server's own shutdown would."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        assert isinstance(transport, asyncio.WriteTransport)
        if reply is None:
            transport.abort()
            return
        transport.write(reply.encode("ascii") + b"\r\n")
        transport.close()
        asyncio.get_running_loop().call_later(_CLOSE_GRACE_S, transport.abort)

    async def _handle_client(self) -> None:
        delay = self._state.stalls.get("greeting")
        if delay:
            await asyncio.sleep(delay)
        await super()._handle_client()

    async def smtp_EHLO(self, hostname: str) -> None:
        self._record("EHLO")
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self._record("HELO")
        await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self._record("STARTTLS")
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        log = self._record("AUTH")
        mechanism = (arg.split() or ["?"])[0].upper()
        before = len(log.auth_attempts)
        await super().smtp_AUTH(arg)
        # Refused before reaching the authenticator (e.g. 538 encryption required): still log it.
        if len(log.auth_attempts) == before:
            with self._state.lock:
                log.auth_attempts.append(
                    AuthAttempt(mechanism, None, success=False, encrypted=self._encrypted())
                )

    async def smtp_MAIL(self, arg: str) -> None:
        self._record("MAIL")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        self._record("RCPT")
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._record("DATA")
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self._record("RSET")
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self._record("QUIT")
        await super().smtp_QUIT(arg)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd authenticator: UTF-8 username/password checked against the user map."""
        assert isinstance(data, LoginPassword)
        username = _decode_utf8(data.login)
        password = _decode_utf8(data.password)
        with self._state.lock:
            expected = self._state.users.get(username) if username is not None else None
            ok = expected is not None and password == expected
            if self.log is not None:
                self.log.auth_attempts.append(
                    AuthAttempt(mechanism, username, success=ok, encrypted=self._encrypted())
                )
        if ok:
            return AuthResult(success=True, auth_data=data)
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
        )


class _Handler:
    """aiosmtpd handler hooks: recipient rules, injected failures, recording deliveries."""

    def __init__(self, state: _State) -> None:
        self._state = state

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        delay = self._state.stalls.get("mail")
        if delay:
            await asyncio.sleep(delay)
        with self._state.lock:
            fault = self._state.mail_fault
            if fault is not None and fault.take():
                return fault.reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self._state.lock:
            reply = self._state.recipient_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        delay = self._state.stalls.get("data")
        if delay:
            await asyncio.sleep(delay)
        with self._state.lock:
            drop = self._state.disconnect_fault
            if drop is not None and drop.take():
                transport = server.transport
                assert isinstance(transport, asyncio.Transport)
                # abort(): no reply, no FIN handshake politeness; the client sees a dead socket.
                transport.abort()
                return "421 4.4.2 connection dropped by test"
            fault = self._state.data_fault
            if fault is not None and fault.take():
                return fault.reply
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):  # only when decode_data=True, which we never set
            raw = raw.encode("utf-8", "surrogateescape")
        # SMTP lines end in CRLF; a mailbox stores LF. Parse the LF form so text parts read back
        # exactly as written (the email package would otherwise keep a "\r" on each line).
        parsed = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        log = getattr(server, "log", None)
        delivered = DeliveredMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=parsed,
            session_id=log.session_id if log is not None else 0,
        )
        with self._state.changed:
            self._state.messages.append(delivered)
            self._state.changed.notify_all()
        return "250 2.0.0 Message accepted for delivery"


class _Controller(Controller):
    """Controller bound to a pre-opened listening socket, so port 0 works without races."""

    def __init__(
        self,
        handler: _Handler,
        state: _State,
        mode: SmtpMode,
        server_ctx: ssl.SSLContext | None,
        auth_mechanisms: frozenset[str] | None,
    ) -> None:
        self._auth_mechanisms = auth_mechanisms
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        port = self._sock.getsockname()[1]
        self._state = state
        self._mode = mode
        self._server_ctx = server_ctx
        super().__init__(
            handler,
            hostname="127.0.0.1",
            port=port,
            ssl_context=server_ctx if mode is SmtpMode.SSL else None,
            ready_timeout=10.0,
        )

    def factory(self) -> SMTP:
        kwargs: dict[str, Any] = {
            "hostname": "smtp.test.invalid",
            "ident": "smtp-sender test server",
            "enable_SMTPUTF8": True,
            "timeout": 60,
        }
        if self._mode is SmtpMode.STARTTLS:
            kwargs.update(tls_context=self._server_ctx, require_starttls=False)
            kwargs["auth_require_tls"] = True
        else:
            # SSL: the whole socket is TLS but aiosmtpd only knows about STARTTLS, so it must
            # not demand it. PLAIN: advertise AUTH in clear on purpose (a trap for the client).
            kwargs["auth_require_tls"] = False
        if self._auth_mechanisms is not None:
            kwargs["auth_exclude_mechanism"] = {"PLAIN", "LOGIN"} - self._auth_mechanisms
        smtp = _RecordingSMTP(
            self.handler,
            self._state,
            tls_from_start=self._mode is SmtpMode.SSL,
            **kwargs,
        )
        smtp._authenticator = smtp.authenticate  # per-connection authenticator with its log
        return smtp

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def stop(self, no_assert: bool = False) -> None:
        try:
            super().stop(no_assert=no_assert)
        finally:
            self._sock.close()


class SmtpTestServer(StartStop):
    """A threaded aiosmtpd server; see the module docstring for the knobs and records."""

    def __init__(
        self,
        mode: SmtpMode,
        certs: CertBundle | None = None,
        users: dict[str, str] | None = None,
        auth_mechanisms: set[str] | None = None,
    ) -> None:
        """*auth_mechanisms* limits what EHLO advertises (e.g. ``{"LOGIN"}``); default both."""
        if mode is not SmtpMode.PLAIN and certs is None:
            raise ValueError(f"{mode} mode needs a CertBundle")
        self.mode = mode
        self.certs = certs
        self._state = _State(users or {})
        server_ctx = certs.server_context() if certs is not None else None
        self._controller = _Controller(
            _Handler(self._state),
            self._state,
            mode,
            server_ctx,
            frozenset(m.upper() for m in auth_mechanisms) if auth_mechanisms else None,
        )
        self.host = "127.0.0.1"
        self.port: int = self._controller.port
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the server thread; returns self."""
        self._controller.start()
        self._started = True
        # The controller's own readiness probe opened a session that said nothing: forget it.
        self.clear_records()
        return self

    def stop(self) -> None:
        """Close every client connection, then stop the server and close the listening socket
        (idempotent). Connections go first: a client may keep a session open (the function's
        pool does), and from Python 3.12 on asyncio's server shutdown waits for them."""
        if self._started:
            self._started = False
            self.hang_up_idle(reply=None)
            self._controller.stop(no_assert=True)

    # -- configuration -----------------------------------------------------------------------
    def set_password(self, username: str, password: str) -> None:
        """Add a user or change its password (e.g. to simulate a rotation at the provider)."""
        with self._state.lock:
            self._state.users[username] = password

    def reject_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Answer RCPT TO for *address* (case-insensitive) with *reply*, e.g. a 450 or 550."""
        with self._state.lock:
            self._state.recipient_replies[address.lower()] = reply

    def fail_mail_from(self, reply: str, times: int | None = None) -> None:
        """Answer MAIL FROM with *reply* (e.g. ``"451 4.3.0 Try later"``)."""
        with self._state.lock:
            self._state.mail_fault = _Fault(reply, times)

    def fail_data(self, reply: str, times: int | None = None) -> None:
        """Answer the end of DATA with *reply* (e.g. ``"552 5.3.4 Too big"``)."""
        with self._state.lock:
            self._state.data_fault = _Fault(reply, times)

    def disconnect_after_data(self, times: int | None = None) -> None:
        """Drop the connection after the message body arrived, without a reply."""
        with self._state.lock:
            self._state.disconnect_fault = _Fault("", times)

    def stall(self, at: StallPoint, seconds: float) -> None:
        """Sleep *seconds* before the greeting, the MAIL reply or the DATA reply."""
        with self._state.lock:
            self._state.stalls[at] = seconds

    def clear_faults(self) -> None:
        """Forget recipient rules, injected failures and stalls."""
        with self._state.lock:
            self._state.recipient_replies.clear()
            self._state.mail_fault = None
            self._state.data_fault = None
            self._state.disconnect_fault = None
            self._state.stalls.clear()

    def hang_up_idle(self, reply: str | None = "421 4.4.2 idle timeout, closing connection") -> int:
        """Close every open client connection, as a server's idle timeout does (saying `reply`
        first, or nothing with None). Returns how many were closed."""
        with self._state.lock:
            live = list(self._state.live)
        for protocol in live:
            self._controller.loop.call_soon_threadsafe(protocol.hang_up, reply)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._state.lock:
                if not self._state.live & set(live):
                    break
            time.sleep(0.01)
        return len(live)

    def clear_records(self) -> None:
        """Forget delivered messages and session logs."""
        with self._state.lock:
            self._state.messages.clear()
            self._state.sessions.clear()

    # -- records -----------------------------------------------------------------------------
    @property
    def messages(self) -> list[DeliveredMessage]:
        """A snapshot of the delivered messages, oldest first."""
        with self._state.lock:
            return list(self._state.messages)

    @property
    def sessions(self) -> list[SessionLog]:
        """A snapshot of the connections that said EHLO/HELO, oldest first."""
        with self._state.lock:
            return [
                SessionLog(
                    s.session_id,
                    s.tls_from_start,
                    s.starttls_done,
                    list(s.commands),
                    list(s.auth_attempts),
                )
                for s in self._state.sessions
            ]

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        """Every AUTH command seen, across sessions."""
        return [a for s in self.sessions for a in s.auth_attempts]

    def copies_for(self, address: str) -> int:
        """How many delivered messages had *address* among their envelope recipients."""
        return sum(address in m.rcpt_tos for m in self.messages)

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[DeliveredMessage]:
        """Block until at least *count* messages were delivered; raise TimeoutError after
        *timeout* seconds. Returns the snapshot."""
        deadline = time.monotonic() + timeout
        with self._state.changed:
            while len(self._state.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self._state.messages)} of {count} messages after {timeout}s"
                    )
                self._state.changed.wait(left)
            return list(self._state.messages)

    # -- helpers for tests -------------------------------------------------------------------
    def profile(
        self,
        username: str | None = None,
        password: str | None = None,
        sender: str | None = PROFILE_FROM,
        security: str | None = None,
    ) -> dict[str, Any]:
        """An SMTP profile (the secret's JSON payload) pointing at this server.

        *security* defaults to the mode (``plain`` servers get ``starttls``: the profile a
        user would write, which must then fail because STARTTLS is not offered).
        """
        sec = security or ("starttls" if self.mode is SmtpMode.PLAIN else self.mode.value)
        profile: dict[str, Any] = {"host": self.host, "port": self.port, "security": sec}
        if username is not None:
            profile["username"] = username
        if password is not None:
            profile["password"] = password
        if sender is not None:
            profile["from"] = sender
        return profile
