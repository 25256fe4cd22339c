"""One SMTP session: open it (connect, greeting, EHLO, STARTTLS, AUTH), send transactions over
it, quit. Which failure of a step means what is decided here; the client under the rules no
profile can change is `sender.smtp_client`, the AUTH exchanges are `sender.smtp_auth`.

The module knows no provider: presets and hints live in the profile layer.
"""

from __future__ import annotations

import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable

from sender import smtp_auth
from sender.deadline import Deadline
from sender.errors import (
    ConfigurationError,
    OutcomeUnknownError,
    StaleSessionError,
    TlsError,
    TransientError,
)
from sender.mime import Envelope
from sender.outcome import Refusal, refusals_from
from sender.profile import SmtpProfile
from sender.smtp_client import QUIET, SmtpClient, Trace, Watchdog, arm, one_line, tls_summary


def session_deadline_error() -> TransientError:
    """What running out of `SEND_DEADLINE_S` is: transient (a later delivery may be faster)."""
    return TransientError("the send ran past its deadline (SEND_DEADLINE_S)", condition="deadline")


def _greet(client: SmtpClient) -> None:
    """EHLO, falling back to HELO when the server refuses it with a 5xx (RFC 5321 3.2).

    A 4xx (or 421) means "not now", not "no ESMTP": that is raised and classified as transient.
    """
    client.trace.begin("ehlo")
    code, reply = client.ehlo()
    if code == 250:
        client.trace.ok("ehlo", _extensions(client))
        return
    if 500 <= code < 600:
        refused = code
        code, reply = client.helo()
        if code == 250:
            client.trace.ok("ehlo", f"EHLO refused ({refused}), HELO accepted: no extensions")
            return
    raise smtplib.SMTPHeloError(code, reply)


def _extensions(client: smtplib.SMTP) -> str:
    features = client.esmtp_features
    return "extensions " + (
        # (smtplib keeps AUTH's parameters with a leading space: normalise the spacing)
        "; ".join(" ".join(f"{k.upper()} {v}".split()) for k, v in features.items()) or "(none)"
    )


def _open(
    client: SmtpClient, profile: SmtpProfile, context: ssl.SSLContext, deadline: Deadline
) -> None:
    """Connect, EHLO and (for starttls) upgrade; raises before anything is sent if TLS fails."""
    client.timeout = deadline.budget()
    code, reply = client.connect(profile.host, profile.port)
    if code != 220:
        # A 421 or 554 greeting (RFC 5321 3.1): the server will not talk to us now, or at all.
        # smtplib checks the greeting only when its constructor connects, so it is checked here.
        raise smtplib.SMTPConnectError(code, reply)
    client.trace.ok("greeting", one_line(code, reply))
    arm(client, deadline)
    _greet(client)
    if profile.security == "starttls":
        client.trace.begin("tls")
        if not client.has_extn("starttls"):
            raise TlsError(
                "the SMTP server does not offer STARTTLS; nothing was sent",
                condition="starttls_missing",
            )
        arm(client, deadline)
        client.starttls(context=context)
        assert isinstance(client.sock, ssl.SSLSocket)
        client.trace.ok("tls", "STARTTLS: " + tls_summary(client.sock))
        arm(client, deadline)
        _greet(client)


class Session:
    """One open SMTP session (authenticated when the profile has credentials).

    A session sends one message at a time. After any failure inside a transaction its state is
    unknown, so it is closed and must not be used again (`usable` turns False); a session that
    completed its transactions may be reused by a pool (`sender.session_pool`).
    """

    def __init__(self, client: SmtpClient) -> None:
        self._client = client
        self.last_used_at = time.monotonic()  # kept up to date by the pool
        self.messages_sent = 0
        self.usable = True

    def looks_closed(self) -> bool:
        """Whether the server already hung up or spoke unasked (an idle timeout's 421 and FIN).

        A zero-wait poll, no round trip: an idle session must say nothing until we do.
        """
        sock = self._client.sock
        if not self.usable or sock is None:
            return True
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        # poll, not select: select refuses a descriptor numbered 1024 or more, which a busy
        # instance reaches, and every pooled session would then look closed.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return True

    def send(
        self, envelope: Envelope, message: bytes, *, deadline: Deadline, reused: bool = False
    ) -> dict[str, Refusal]:
        """One transaction: MAIL, RCPT for each recipient, DATA. Returns the refused recipients.

        `reused`: the session served earlier messages, so a server that closed it meanwhile
        shows up here as a failed MAIL FROM: that raises `StaleSessionError` (nothing was
        accepted; a fresh session may be tried). After DATA began nothing is ever retried here.
        """
        client = self._client
        client.final_dot_sent = False
        with Watchdog(client, deadline) as watchdog:
            try:
                arm(client, deadline)
                refused = _transaction(client, envelope, message, reused=reused)
            except BaseException as exc:  # noqa: BLE001 - closed, then re-raised as what it means
                self.close()
                raise _failure(exc, client, watchdog, deadline) from None
        self.messages_sent += 1
        return refusals_from(refused)

    def quit(self) -> None:
        """End the session politely (bounded); never raises: the messages are already sent."""
        if not self.usable:
            return
        self.usable = False
        client = self._client
        try:
            client.timeout = _QUIT_TIMEOUT_S
            if client.sock is not None:
                client.sock.settimeout(_QUIT_TIMEOUT_S)
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def close(self) -> None:
        """Drop the connection without a word (its state is unknown)."""
        self.usable = False
        self._client.close()


_QUIT_TIMEOUT_S = 2.0


def _failure(
    exc: BaseException, client: SmtpClient, watchdog: Watchdog, deadline: Deadline
) -> BaseException:
    """What an exception during a session step means, once the session is closed."""
    # A reply is the server's verdict, unless the watchdog cut it short (a partial "25").
    lost_reply = watchdog.fired or (
        isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPResponseException)
    )
    if client.final_dot_sent and lost_reply:
        # The message went out whole; only the server's verdict was lost.
        return OutcomeUnknownError(
            "the connection was lost after the message was sent: the server may have "
            f"accepted it ({'deadline' if watchdog.fired else type(exc).__name__})"
        )
    if watchdog.fired:
        return deadline.error()
    return exc


def _transaction(
    client: SmtpClient, envelope: Envelope, message: bytes, *, reused: bool
) -> dict[str, tuple[int, bytes]]:
    """MAIL FROM, RCPT TO, DATA, as smtplib's `sendmail` does, with the stage of a failure known.

    The message is 7-bit clean (`sender.mime`), so no 8BITMIME/SMTPUTF8 option is ever needed.
    """
    options = [f"SIZE={len(message)}"] if client.has_extn("size") else []
    try:
        code, reply = client.mail(envelope.mail_from, options)
    except (smtplib.SMTPServerDisconnected, OSError):
        if reused:
            raise StaleSessionError("the pooled session was closed by the server") from None
        raise
    if code != 250:
        if code == 421 and reused:  # the server's idle timeout, answered to our MAIL
            raise StaleSessionError("the pooled session was closed by the server")
        raise smtplib.SMTPSenderRefused(code, reply, envelope.mail_from)
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in envelope.recipients:
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
        if code == 421:
            # The server is closing the session before DATA: no recipient gets this message,
            # so every one without a final refusal is owed its 421 (a redelivery sends to them).
            for other in envelope.recipients:
                refused.setdefault(other, (code, reply))
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(envelope.recipients):
        # No RSET: an error ends the session anyway, and a server that never answers RSET must
        # not turn "every recipient refused" into a timeout.
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = client.data(message)
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return refused


def open_session(
    profile: SmtpProfile,
    *,
    context: ssl.SSLContext,
    deadline: Deadline,
    access_token: Callable[[], str] | None = None,
    trace: Trace = QUIET,
) -> Session:
    """Connect, secure and authenticate; raises before anything is sent if any of it fails.

    `deadline` (`SEND_DEADLINE_S`, steps capped at `SMTP_TIMEOUT_S`) bounds every network step,
    and a `Watchdog` shuts the socket down when it passes, because a server that drips one byte
    per second never trips a per-read timeout. *access_token* gives the bearer token of an
    ``oauth2`` profile (called once, only when the server can take it; the send's token cache).
    Raises smtplib/socket/ssl exceptions (classified by `sender.classify`) or a `SendError`.
    """
    if profile.username and profile.security == "none":
        raise ConfigurationError(
            "credentials are never sent without TLS: use ssl or starttls", condition="tls_required"
        )
    # gethostname() needs no DNS, unlike smtplib's default getfqdn(), which can stall.
    ehlo_name = socket.gethostname() or "localhost"
    implicit_tls = context if profile.security == "ssl" else None
    client = SmtpClient(local_hostname=ehlo_name, implicit_tls=implicit_tls, trace=trace)
    with Watchdog(client, deadline) as watchdog:
        try:
            _open(client, profile, context, deadline)
            if profile.username and (profile.password is not None or profile.oauth2 is not None):
                arm(client, deadline)
                smtp_auth.authenticate(client, profile, deadline, access_token)
        except BaseException as exc:  # noqa: BLE001 - closed, then re-raised as what it means
            client.close()
            raise _opening_failure(exc, client, watchdog, deadline) from None
    return Session(client)


def _opening_failure(
    exc: BaseException, client: SmtpClient, watchdog: Watchdog, deadline: Deadline
) -> BaseException:
    """`_failure`, plus one thing only the transport knows: silence where the greeting should
    be. A server that accepts the connection and says nothing (or hangs up) is most often an
    implicit-TLS port waiting for our handshake while we wait for its plaintext greeting."""
    silent = watchdog.fired or isinstance(
        exc, TimeoutError | smtplib.SMTPServerDisconnected | ConnectionResetError
    )
    if client.trace.step == "greeting" and silent:
        return TransientError(
            f"the SMTP server on port {client.port} sent no greeting"
            + (" before the deadline" if watchdog.fired else ""),
            condition="no_greeting",
        )
    return _failure(exc, client, watchdog, deadline)


def send(
    profile: SmtpProfile,
    envelope: Envelope,
    message: bytes,
    *,
    context: ssl.SSLContext,
    deadline: Deadline,
    access_token: Callable[[], str] | None = None,
) -> dict[str, Refusal]:
    """One message over a session of its own (no pool): open, send, QUIT.

    Returns the recipients the server refused (empty when all accepted).
    """
    session = open_session(profile, context=context, deadline=deadline, access_token=access_token)
    refused = session.send(envelope, message, deadline=deadline)
    session.quit()  # the server has accepted the message: a failing QUIT changes nothing
    return refused
