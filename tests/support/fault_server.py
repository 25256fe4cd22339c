"""A scripted SMTP server that misbehaves on purpose: raw sockets and one thread per connection.

Unlike `tests.support.smtp_server` (aiosmtpd, a well-behaved provider), every reply here is set by
the test: the greeting, each command's answer, whether the server hangs, drips its reply one byte
at a time, hangs up, or presents a certificate the client must refuse. A `Script` says what to do
at each *point* of the dialogue; anything not scripted gets the answer a correct server gives::

    script = Script(
        replies={"greeting": reply(554, "5.3.2 No service for you", then="linger")},
        rcpt={"gone@example.com": reply(550, "5.1.1 No such user")},
        extensions=("AUTH=PLAIN LOGIN", "X-UNHEARD-OF yes"),
    )
    with FaultServer(script, mode="ssl", certs=bundle, users={"u": "pw"}) as srv:
        profile = srv.profile(username="u", password="pw")
        ...
        srv.sessions[0].commands   # ["EHLO", "QUIT", ...] (what the client sent, in order)
        srv.delivered              # messages answered 2xx after the final dot

Points (`Point`): ``greeting``, the verbs ``EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP
QUIT``, ``body`` (while the message text arrives, after its first line: only `hang` and `hang_up`
mean anything there), ``after-dot`` (the reply to the final ``.``) and ``auth-final``: when the
scripted AUTH reply is a ``334`` (an OAuth2 error challenge, RFC 7628), the client's answer is read
(recorded as the command ``AUTH-ANSWER`` with its text) and answered with this step (default
``535 5.7.8``), as Google, Microsoft and Dovecot do. RCPT can also be scripted per
address (`Script.rcpt`, case-insensitive), which wins over ``replies["RCPT"]``.

A `Step` is one of: `reply(code, *lines, delay_s=, then=)` (a one- or multi-line reply, optionally
late), `drip(code, text, every_s=)` (the reply one byte per *every_s*), `hang()` (never answer; the
server keeps reading and ignoring input until the client gives up) or `hang_up()` (close without a
word). ``then`` says what follows a reply: ``"continue"`` the dialogue, ``"close"`` the connection,
or ``"linger"``: RFC 5321 3.1's refusing server, which answers every later command ``503`` and
closes only after ``QUIT``.

Modes: ``plain`` (no TLS offered), ``starttls`` (STARTTLS advertised, a handshake after its 220),
``ssl`` (implicit TLS from the first byte). *certs* is the `CertBundle` presented: pass an untrusted
CA's bundle, or `CertBundle.reissue` for another host name, to play a bad certificate.
`Script.refuse` binds the port without listening, so connecting is refused (no race for the port).

Records (thread-safe snapshots): `sessions` (`FaultSession`: commands in order, RCPT addresses,
AUTH attempts as `AuthAttempt` without any password, TLS facts), `messages` (`ReceivedMessage`:
envelope, raw bytes as received after dot-unstuffing, the reply code given after the dot or None
if none was given) and `delivered` (those answered 2xx). Decoded passwords are compared and
dropped, never stored; message bytes never appear in a repr.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, get_args

from tests.support.certs import CertBundle
from tests.support.constants import PROFILE_FROM
from tests.support.lifecycle import StartStop
from tests.support.smtp_server import AuthAttempt

__all__ = [
    "AuthAttempt",
    "FaultServer",
    "FaultSession",
    "ReceivedMessage",
    "Script",
    "Step",
    "drip",
    "hang",
    "hang_up",
    "reply",
]

Point = Literal[
    "greeting",
    "EHLO",
    "HELO",
    "STARTTLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA",
    "body",
    "after-dot",
    "auth-final",
    "RSET",
    "NOOP",
    "QUIT",
]
POINTS: frozenset[str] = frozenset(get_args(Point))
Then = Literal["continue", "close", "linger"]
Mode = Literal["plain", "starttls", "ssl"]

SERVER_NAME = "fault.test.invalid"
# How long a read may wait for the client before the connection thread gives up on it.
IDLE_LIMIT_S = 30.0
_POLL_S = 0.05
_MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Step:
    """What the server does at one point; build it with `reply`, `drip`, `hang` or `hang_up`."""

    lines: tuple[str, ...] = ()  # full reply lines without CRLF ("250-a", "250 b")
    delay_s: float = 0.0  # wait this long before answering
    drip_s: float | None = None  # send the reply one byte per drip_s
    hang: bool = False  # never answer
    then: Then = "continue"

    @property
    def code(self) -> int | None:
        """The reply code, or None when no reply is sent."""
        return int(self.lines[-1][:3]) if self.lines else None


def _lines(code: int, texts: tuple[str, ...]) -> tuple[str, ...]:
    texts = texts or ("",)
    return tuple(
        f"{code}{'-' if i < len(texts) - 1 else ' '}{text}".rstrip() for i, text in enumerate(texts)
    )


def reply(code: int, *texts: str, delay_s: float = 0.0, then: Then = "continue") -> Step:
    """Answer *code* with one line per text (``250-a`` / ``250 b``), after *delay_s*."""
    return Step(lines=_lines(code, texts), delay_s=delay_s, then=then)


def drip(code: int, text: str, *, every_s: float, then: Then = "continue") -> Step:
    """Answer one byte every *every_s*: each read succeeds, only a session deadline ends it."""
    return Step(lines=_lines(code, (text,)), drip_s=every_s, then=then)


def hang() -> Step:
    """Never answer (the connection stays open until the client or the server stops)."""
    return Step(hang=True)


def hang_up() -> Step:
    """Close the connection without a reply."""
    return Step(then="close")


@dataclass(frozen=True)
class Script:
    """A server's behaviour; see the module docstring. Unscripted points answer correctly."""

    replies: Mapping[str, Step] = field(default_factory=dict)  # by `Point`
    rcpt: Mapping[str, Step] = field(default_factory=dict)
    # EHLO keywords exactly as advertised (STARTTLS is dropped once TLS is on). None: the
    # defaults of a modern provider (see `FaultServer._extensions`).
    extensions: tuple[str, ...] | None = None
    refuse: bool = False  # bind the port but never listen: connecting is refused

    def __post_init__(self) -> None:
        unknown = set(self.replies) - POINTS
        if unknown:  # a typo'd point would otherwise script nothing, silently
            raise ValueError(f"unknown script points {sorted(unknown)}; known: {sorted(POINTS)}")

    def step(self, point: Point) -> Step | None:
        return self.replies.get(point)

    def rcpt_step(self, address: str) -> Step | None:
        lowered = {k.lower(): v for k, v in self.rcpt.items()}
        return lowered.get(address.lower()) or self.replies.get("RCPT")


@dataclass
class FaultSession:
    """What one client connection did, in order."""

    session_id: int
    tls_from_start: bool
    starttls_done: bool = False
    tls_error: str | None = None  # the handshake failed (e.g. the client refused our cert)
    commands: list[str] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    auth_attempts: list[AuthAttempt] = field(default_factory=list)
    # The client's lines after a scripted 334 challenge (never a password: an empty line or ^A).
    auth_answers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReceivedMessage:
    """A message text the server read up to its final dot."""

    session_id: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes = field(repr=False)  # CRLF line ends, dot-unstuffed
    reply_code: int | None  # what the server answered after the dot; None: no answer

    @property
    def accepted(self) -> bool:
        return self.reply_code is not None and 200 <= self.reply_code < 300


class _Closed(Exception):
    """The connection ended (client gone, server stopping, or a scripted hang-up)."""


class _Conn:
    """One client connection: buffered line reads and scripted writes."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self.buffer = b""
        sock.settimeout(_POLL_S)

    def _recv(self) -> bytes:
        waited = 0.0
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                waited += _POLL_S
                if waited > IDLE_LIMIT_S:
                    raise _Closed from None
                continue
            except OSError:
                raise _Closed from None
            if not chunk:
                raise _Closed
            return chunk
        raise _Closed

    def readline(self) -> bytes:
        """One line without its line end (CRLF or a bare LF)."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > _MAX_LINE:
                raise _Closed
            self.buffer += self._recv()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.removesuffix(b"\r")

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            raise _Closed from None

    def idle_until_closed(self) -> None:
        """Hang: read and ignore whatever arrives until the client or the server gives up."""
        while True:
            self.buffer = b""
            self._recv()

    def play(self, step: Step) -> None:
        """Carry out *step*'s reply part (delay, drip, hang); `then` is the caller's business."""
        if step.hang:
            self.idle_until_closed()
        if step.delay_s and self.stop.wait(step.delay_s):
            raise _Closed
        data = b"".join(line.encode("utf-8") + b"\r\n" for line in step.lines)
        if step.drip_s is None:
            self.write(data)
            return
        for index in range(len(data)):
            self.write(data[index : index + 1])
            if self.stop.wait(step.drip_s):
                raise _Closed

    def start_tls(self, context: ssl.SSLContext) -> None:
        # Whatever the client pipelined after STARTTLS is dropped, as a careful server must
        # (CVE-2011-0411): it was sent in clear and must not count as sent inside TLS.
        self.buffer = b""
        self.sock.settimeout(5.0)
        try:
            self.sock = context.wrap_socket(self.sock, server_side=True)
        finally:
            self.sock.settimeout(_POLL_S)


class FaultServer(StartStop):
    """The scripted server on 127.0.0.1 (any free port); see the module docstring."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        mode: Mode = "ssl",
        certs: CertBundle | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        if mode != "plain" and certs is None:
            raise ValueError(f"{mode} mode needs a CertBundle")
        self.script = script or Script()
        self.mode: Mode = mode
        self.host = "127.0.0.1"
        self._context = certs.server_context() if certs is not None else None
        self._users = dict(users or {})
        self._lock = threading.Lock()
        self._sessions: list[FaultSession] = []
        self._messages: list[ReceivedMessage] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._acceptor: threading.Thread | None = None

    def __repr__(self) -> str:  # never the users' passwords
        return f"FaultServer(mode={self.mode!r}, port={self.port})"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        if not self.script.refuse:
            self._listener.listen(64)
            self._listener.settimeout(_POLL_S)
            self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
            self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            with self._lock:
                self._open.add(sock)
                self._threads.append(thread)
            thread.start()

    # -- records -----------------------------------------------------------------------------
    @property
    def sessions(self) -> list[FaultSession]:
        """A snapshot of every connection so far, oldest first."""
        with self._lock:
            return [
                FaultSession(
                    s.session_id,
                    s.tls_from_start,
                    s.starttls_done,
                    s.tls_error,
                    list(s.commands),
                    list(s.rcpts),
                    list(s.auth_attempts),
                    list(s.auth_answers),
                )
                for s in self._sessions
            ]

    @property
    def commands(self) -> list[str]:
        """Every command verb any client sent, in order."""
        return [verb for session in self.sessions for verb in session.commands]

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        return [a for s in self.sessions for a in s.auth_attempts]

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every message text read up to its final dot, whatever the server then answered."""
        with self._lock:
            return list(self._messages)

    @property
    def delivered(self) -> list[ReceivedMessage]:
        """The messages the server answered 2xx after the dot."""
        return [m for m in self.messages if m.accepted]

    def profile(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        security: str | None = None,
        sender: str | None = PROFILE_FROM,
    ) -> dict[str, Any]:
        """An SMTP profile (the secret's payload) pointing here; *security* defaults to the
        mode (``plain`` -> ``none``, allowed for loopback without a username)."""
        default = {"ssl": "ssl", "starttls": "starttls", "plain": "none"}[self.mode]
        profile: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": security or default,
        }
        if username is not None:
            profile["username"] = username
        if password is not None:
            profile["password"] = password
        if sender is not None:
            profile["from"] = sender
        return profile

    # -- the dialogue --------------------------------------------------------------------------
    def _record(self, session: FaultSession, verb: str) -> None:
        with self._lock:
            session.commands.append(verb)

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            session = FaultSession(len(self._sessions) + 1, tls_from_start=self.mode == "ssl")
            self._sessions.append(session)
        conn = _Conn(sock, self._stop)
        try:
            if self.mode == "ssl":
                assert self._context is not None
                try:
                    conn.start_tls(self._context)
                except (ssl.SSLError, OSError) as exc:
                    with self._lock:
                        session.tls_error = type(exc).__name__
                    return
                with self._lock:
                    self._open.add(conn.sock)
            _Dialogue(self, conn, session).run()
        except _Closed:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()
            with self._lock:
                self._open.discard(sock)
                self._open.discard(conn.sock)

    def _extensions(self, tls: bool) -> list[str]:
        if self.script.extensions is not None:
            keywords = list(self.script.extensions)
        else:
            keywords = ["PIPELINING", "SIZE 10485760", "8BITMIME", "SMTPUTF8"]
            keywords.append("ENHANCEDSTATUSCODES")
            if self.mode == "starttls":
                keywords.append("STARTTLS")
            if self._users and (tls or self.mode == "plain"):
                keywords.append("AUTH PLAIN LOGIN")
        if tls:
            keywords = [k for k in keywords if k.upper() != "STARTTLS"]
        return keywords

    def _check_login(self, username: bytes, password: bytes) -> tuple[str | None, bool]:
        """(decoded username, whether the pair matches); the password is not kept."""
        try:
            user = username.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            return None, False
        return user, self._users.get(user) == secret


class _Dialogue:
    """The SMTP state machine of one connection."""

    def __init__(self, server: FaultServer, conn: _Conn, session: FaultSession) -> None:
        self.server = server
        self.conn = conn
        self.session = session
        self.script = server.script
        self.tls = server.mode == "ssl"
        self.greeted = False
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.lingering = False

    def _answer(self, step: Step | None, default: Step) -> Step:
        chosen = step or default
        self.conn.play(chosen)
        if chosen.then == "close":
            raise _Closed
        if chosen.then == "linger":
            self.lingering = True
        return chosen

    def run(self) -> None:
        self._answer(
            self.script.step("greeting"), reply(220, f"{SERVER_NAME} ESMTP fault server ready")
        )
        while True:
            line = self.conn.readline().decode("utf-8", "replace")
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            self.server._record(self.session, verb)
            if self.lingering and verb != "QUIT":
                self._answer(None, reply(503, "5.5.1 Bad sequence of commands"))
                continue
            handler = getattr(self, f"_{verb.lower()}", None)
            if handler is None:
                self._answer(None, reply(502, "5.5.2 Command not implemented"))
                continue
            handler(argument.strip())

    # -- commands ------------------------------------------------------------------------------
    def _ehlo(self, argument: str) -> None:
        keywords = self.server._extensions(self.tls)
        step = self._answer(
            self.script.step("EHLO"), reply(250, f"{SERVER_NAME} greets you", *keywords)
        )
        self._greeted_if(step)

    def _helo(self, argument: str) -> None:
        step = self._answer(self.script.step("HELO"), reply(250, SERVER_NAME))
        self._greeted_if(step)

    def _greeted_if(self, step: Step) -> None:
        if step.code == 250:
            self.greeted = True
            self.mail_from = None
            self.rcpts = []

    def _starttls(self, argument: str) -> None:
        offered = self.server.mode == "starttls" and not self.tls
        default = reply(220, "2.0.0 Ready to start TLS") if offered else reply(502, "5.5.1 No")
        step = self._answer(self.script.step("STARTTLS"), default)
        if step.code != 220:
            return
        assert self.server._context is not None
        try:
            self.conn.start_tls(self.server._context)
        except (ssl.SSLError, OSError) as exc:
            with self.server._lock:
                self.session.tls_error = type(exc).__name__
            raise _Closed from None
        self.tls = True
        self.greeted = False  # RFC 3207: forget everything said before TLS
        with self.server._lock:
            self.session.starttls_done = True
            self.server._open.add(self.conn.sock)

    def _auth(self, argument: str) -> None:
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        scripted = self.script.step("AUTH")
        if scripted is not None:
            username = _plain_username(initial) if mechanism == "PLAIN" else None
            self._attempt(mechanism, username, success=False)
            self._answer(scripted, scripted)
            if scripted.code == 334:  # an error challenge: the client answers, then the verdict
                answer = self.conn.readline().decode("utf-8", "replace")
                self.server._record(self.session, "AUTH-ANSWER")
                with self.server._lock:
                    self.session.auth_answers.append(answer)
                final = self.script.step("auth-final")
                self._answer(final, reply(535, "5.7.8 Authentication credentials invalid"))
            return
        if mechanism == "PLAIN":
            self._auth_plain(initial)
        elif mechanism == "LOGIN":
            self._auth_login(initial)
        else:
            self._attempt(mechanism, None, success=False)
            self._answer(None, reply(504, "5.5.4 Unrecognized authentication type"))

    def _read_auth_line(self) -> bytes | None:
        """A base64 line of an AUTH exchange; None when the client cancelled or sent junk."""
        line = self.conn.readline()
        if line.strip() == b"*":
            return None
        try:
            return base64.b64decode(line.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None

    def _auth_plain(self, initial: str) -> None:
        if initial:
            try:
                blob: bytes | None = base64.b64decode(initial, validate=True)
            except (binascii.Error, ValueError):
                blob = None
        else:
            self.conn.play(reply(334, ""))
            blob = self._read_auth_line()
        parts = blob.split(b"\0") if blob is not None else []
        if len(parts) != 3:
            self._attempt("PLAIN", None, success=False)
            self._answer(None, reply(501, "5.5.2 Malformed AUTH PLAIN"))
            return
        username, ok = self.server._check_login(parts[1], parts[2])
        self._finish_auth("PLAIN", username, ok)

    def _auth_login(self, initial: str) -> None:
        if initial:
            try:
                user: bytes | None = base64.b64decode(initial, validate=True)
            except (binascii.Error, ValueError):
                user = None
        else:
            self.conn.play(reply(334, "VXNlcm5hbWU6"))
            user = self._read_auth_line()
        password = None
        if user is not None:
            self.conn.play(reply(334, "UGFzc3dvcmQ6"))
            password = self._read_auth_line()
        if user is None or password is None:
            self._attempt("LOGIN", None, success=False)
            self._answer(None, reply(501, "5.7.0 Authentication cancelled"))
            return
        username, ok = self.server._check_login(user, password)
        self._finish_auth("LOGIN", username, ok)

    def _finish_auth(self, mechanism: str, username: str | None, ok: bool) -> None:
        self._attempt(mechanism, username, success=ok)
        if ok:
            self._answer(None, reply(235, "2.7.0 Authentication successful"))
        else:
            self._answer(None, reply(535, "5.7.8 Authentication credentials invalid"))

    def _attempt(self, mechanism: str, username: str | None, *, success: bool) -> None:
        with self.server._lock:
            self.session.auth_attempts.append(
                AuthAttempt(mechanism, username, success=success, encrypted=self.tls)
            )

    def _mail(self, argument: str) -> None:
        default = (
            reply(250, "2.1.0 Sender OK")
            if self.greeted
            else reply(503, "5.5.1 Say EHLO or HELO first")
        )
        step = self._answer(self.script.step("MAIL"), default)
        if step.code == 250:
            self.mail_from = _address(argument)
            self.rcpts = []

    def _rcpt(self, argument: str) -> None:
        address = _address(argument)
        with self.server._lock:
            self.session.rcpts.append(address)
        if self.mail_from is None:
            self._answer(None, reply(503, "5.5.1 MAIL first"))
            return
        step = self._answer(self.script.rcpt_step(address), reply(250, "2.1.5 Recipient OK"))
        if step.code in (250, 251):
            self.rcpts.append(address)

    def _data(self, argument: str) -> None:
        if self.mail_from is None or not self.rcpts:
            self._answer(None, reply(503, "5.5.1 No valid recipients"))
            return
        step = self._answer(self.script.step("DATA"), reply(354, "End data with <CR><LF>.<CR><LF>"))
        if step.code != 354:
            return
        lines: list[bytes] = []
        during = self.script.step("body")
        while True:
            line = self.conn.readline()
            if line == b".":
                break
            lines.append(line[1:] if line.startswith(b".") else line)
            if during is not None and len(lines) == 1:
                self._answer(during, during)  # hang or hang up while the text arrives
        raw = b"".join(line + b"\r\n" for line in lines)
        after = self.script.step("after-dot") or reply(250, "2.0.0 OK queued")
        with self.server._lock:
            self.server._messages.append(
                ReceivedMessage(
                    self.session.session_id,
                    self.mail_from,
                    tuple(self.rcpts),
                    raw,
                    reply_code=after.code,
                )
            )
        self.mail_from, self.rcpts = None, []
        self._answer(after, after)

    def _rset(self, argument: str) -> None:
        self.mail_from, self.rcpts = None, []
        self._answer(self.script.step("RSET"), reply(250, "2.0.0 Reset"))

    def _noop(self, argument: str) -> None:
        self._answer(self.script.step("NOOP"), reply(250, "2.0.0 OK"))

    def _quit(self, argument: str) -> None:
        self._answer(self.script.step("QUIT"), reply(221, "2.0.0 Bye"))
        raise _Closed


def _address(argument: str) -> str:
    """``FROM:<a@b> SIZE=1`` / ``TO:<a@b>`` -> ``a@b``."""
    _, _, rest = argument.partition(":")
    rest = rest.strip()
    if rest.startswith("<"):
        return rest[1:].partition(">")[0]
    return rest.split(" ", 1)[0]


def _plain_username(initial: str) -> str | None:
    try:
        parts = base64.b64decode(initial, validate=True).split(b"\0")
    except (binascii.Error, ValueError):
        return None
    return parts[1].decode("utf-8", "replace") if len(parts) == 3 else None
