"""One SMTP session with the stdlib `smtplib`: connect, secure, authenticate, send, quit.

Rules this module keeps, whatever the profile says:
- certificates are always verified (system roots plus `SMTP_CA_FILE`), hostname included;
- credentials go only over a socket that *is* TLS (the socket is checked, not the setting);
- every network step is bounded by `SMTP_TIMEOUT_S`, and the whole session by a deadline
  (`sender.deadline`), so the function never hangs past its own timeout;
- AUTH PLAIN/LOGIN encode the username and password as UTF-8 (RFC 4616): `smtplib.login()`
  raises UnicodeEncodeError on a non-ASCII password, so the exchange is done here;
- a profile with ``oauth2`` signs in with XOAUTH2 (OAUTHBEARER when only that is offered) and a
  bearer token asked for only once the socket is TLS and the server offers one of them; a 334
  error challenge is answered as RFC 7628 says (`sender.sasl`) to get the final reply.

The module knows no provider: presets and hints live in the profile layer. A `Trace` watches the
steps of opening a session (`python -m sender check` prints them; the send path passes none).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sender import sasl
from sender.deadline import Cancellable, Deadline
from sender.errors import (
    ConfigurationError,
    OutcomeUnknownError,
    SaslError,
    StaleSessionError,
    TlsError,
    TransientError,
)
from sender.mime import Envelope
from sender.outcome import Refusal, refusals_from
from sender.profile import SmtpProfile

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


def new_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: system roots plus the optional extra CA.

    Certificates and host names are always checked; `sender.instance` keeps one per CA file."""
    context = ssl.create_default_context()  # CERT_REQUIRED + check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError):
            raise ConfigurationError(f"SMTP_CA_FILE {ca_file} is not a PEM CA bundle") from None
    return context


def session_deadline_error() -> TransientError:
    """What running out of `SEND_DEADLINE_S` is: transient (a later delivery may be faster)."""
    return TransientError("the send ran past its deadline (SEND_DEADLINE_S)", condition="deadline")


class Trace:
    """Watches the steps of opening a session: `begin` before each, `ok` with a one-line detail
    after it succeeded. This base class does nothing (the send path); `sender.check` prints.

    Steps, in order: ``dns``, ``connect``, ``tls`` (implicit TLS), ``greeting``, ``ehlo``,
    ``tls`` (STARTTLS), ``ehlo`` again after it, ``auth``. Details never hold a credential."""

    def begin(self, step: str) -> None:
        """A step starts (a failure from here on belongs to it)."""

    def ok(self, step: str, detail: str) -> None:
        """The step succeeded."""


_QUIET = Trace()


class _Steps(Trace):
    """Passes a trace on and remembers the step under way (what a failure is classified by)."""

    def __init__(self, inner: Trace) -> None:
        self.inner = inner
        self.step = "connect"

    def begin(self, step: str) -> None:
        self.step = step
        self.inner.begin(step)

    def ok(self, step: str, detail: str) -> None:
        self.inner.ok(step, detail)


def tls_summary(sock: ssl.SSLSocket, now: datetime | None = None) -> str:
    """Protocol version, certificate subject, issuer and expiry of a verified TLS socket."""
    cert: Any = sock.getpeercert() or {}

    def name(field: str) -> str:
        pairs = [f"{k}={v}" for rdn in cert.get(field, ()) for k, v in rdn]
        return ", ".join(pairs) or "?"

    detail = f"{sock.version() or 'TLS'}, certificate {name('subject')} issued by {name('issuer')}"
    not_after = cert.get("notAfter")
    if isinstance(not_after, str):
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
        days = (expires - (now or datetime.now(UTC))).days
        detail += f", expires {expires:%Y-%m-%d} (in {days} days)"
    return detail


def _arm(client: smtplib.SMTP, deadline: Deadline) -> None:
    """Bound the socket's next blocking operation by the step timeout and the deadline."""
    if client.sock is not None:
        client.sock.settimeout(deadline.budget())


def _resolve(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """getaddrinfo, bounded: the resolver has no timeout of its own and can stall for long."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TransientError(f"resolving {host} took longer than {timeout:g} s") from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _connect(host: str, port: int, timeout: float, trace: Trace = _QUIET) -> socket.socket:
    trace.begin("dns")
    addresses = _resolve(host, port, timeout)
    shown = list(dict.fromkeys(str(a[4][0]) for a in addresses))
    trace.ok("dns", f"{host} -> {', '.join(shown[:4])}{' ...' if len(shown) > 4 else ''}")
    trace.begin("connect")
    last_error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        trace.ok("connect", f"{address[0]} port {port}")
        return sock
    raise last_error or OSError(f"no address for {host}")


class _Client(smtplib.SMTP):
    """smtplib.SMTP with a bounded DNS look-up, implicit TLS when given a context, and a record of
    whether the message's final `CRLF.CRLF` was handed to the socket.

    Once the dot went out, the server may have accepted the message even if its reply never
    arrives: that failure is `OutcomeUnknownError`, not a plain network error (see `send`).
    smtplib's `data()` writes the whole quoted message, dot included, with one `send()` call.
    """

    def __init__(
        self, *, local_hostname: str, implicit_tls: ssl.SSLContext | None, trace: Trace = _QUIET
    ) -> None:
        self._implicit_tls = implicit_tls
        self.trace = _Steps(trace)
        self.port = 0
        self.final_dot_sent = False
        super().__init__(local_hostname=local_hostname)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib records the name for STARTTLS's certificate check only when the constructor
        # connects; this client is built first and connected later (under the watchdog).
        self._host = host
        self.port = port
        sock = _connect(host, port, timeout, self.trace)
        if self._implicit_tls is not None:
            # The handshake verifies the certificate and the host name, as SMTP_SSL's would.
            self.trace.begin("tls")
            sock = self._implicit_tls.wrap_socket(sock, server_hostname=host)
            self.trace.ok("tls", tls_summary(sock))
        self.trace.begin("greeting")  # smtplib reads it next
        return sock

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.final_dot_sent = True


class _Watchdog:
    """Shuts a client's socket down at the deadline, so a blocked read or write fails at once."""

    def __init__(self, client: smtplib.SMTP, deadline: Deadline) -> None:
        self.fired = False
        self._client = client
        self._deadline = deadline
        self._alarm: Cancellable | None = None

    def _fire(self) -> None:
        self.fired = True
        sock = self._client.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._alarm = self._deadline.call_at_expiry(self._fire)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._alarm is not None:
            self._alarm.cancel()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _auth_mechanisms(client: smtplib.SMTP) -> list[str]:
    """The AUTH mechanisms offered, once the checks every credential needs have passed."""
    if not isinstance(client.sock, ssl.SSLSocket):
        # Defence in depth: the session setup already guarantees TLS, but a password or token
        # must never leave on a plaintext socket whatever a future change to that setup does.
        raise TlsError(
            "refusing to send credentials over a connection that is not TLS",
            condition="tls_required",
        )
    if not client.does_esmtp:
        raise ConfigurationError(
            "the SMTP server refused EHLO and speaks only HELO, which has no AUTH: point the "
            "profile at the provider's submission server, or remove the username for a relay "
            "that trusts the network",
            condition="helo_only",
        )
    if not client.has_extn("auth"):
        raise ConfigurationError(
            "the SMTP server does not offer AUTH; remove the username for a trusted relay",
            condition="auth_not_offered",
        )
    return client.esmtp_features["auth"].upper().split()


def _authenticate(client: smtplib.SMTP, username: str, password: str) -> tuple[str, int, bytes]:
    """AUTH PLAIN (preferred) or LOGIN with UTF-8 credentials; raises SMTPAuthenticationError.

    Returns the mechanism and the server's final reply."""
    mechanisms = _auth_mechanisms(client)
    user, secret = username.encode("utf-8"), password.encode("utf-8")
    if "PLAIN" in mechanisms:
        mechanism = "PLAIN"
        code, reply = client.docmd("AUTH", "PLAIN " + _b64(b"\0" + user + b"\0" + secret))
    elif "LOGIN" in mechanisms:
        mechanism = "LOGIN"
        code, reply = client.docmd("AUTH", "LOGIN")
        if code == 334:
            code, reply = client.docmd(_b64(user))
        if code == 334:
            code, reply = client.docmd(_b64(secret))
    else:
        raise ConfigurationError(
            f"the SMTP server offers no supported AUTH mechanism (offers {' '.join(mechanisms)})",
            condition="auth_mechanism",
        )
    if code != 235:
        if code == 334:  # a challenge we did not expect: end the exchange cleanly
            client.docmd("*")
        raise smtplib.SMTPAuthenticationError(code, reply)
    return mechanism, code, reply


def _oauth_mechanism(client: smtplib.SMTP) -> sasl.OAuthMechanism:
    """XOAUTH2 (what Google and Microsoft speak), else OAUTHBEARER (RFC 7628)."""
    mechanisms = _auth_mechanisms(client)
    if "XOAUTH2" in mechanisms:
        return "XOAUTH2"
    if "OAUTHBEARER" in mechanisms:
        return "OAUTHBEARER"
    raise ConfigurationError(
        "the SMTP server offers no OAuth2 mechanism (XOAUTH2 or OAUTHBEARER; it offers "
        f"{' '.join(mechanisms)}): sign in with a password, or use the provider's OAuth2 server",
        condition="auth_mechanism",
    )


def _authenticate_token(
    client: smtplib.SMTP, mechanism: sasl.OAuthMechanism, username: str, token: str
) -> tuple[int, bytes]:
    """AUTH with a bearer token; raises SMTPAuthenticationError when it is refused.

    A server refusing a token first answers ``334 <base64 JSON>`` (the error challenge); the
    client's answer (`sasl.error_challenge_reply`) gets the final 535/454 reply."""
    try:
        initial = sasl.initial_response(mechanism, username, token)
    except SaslError as exc:  # its text names the field, never the value
        raise ConfigurationError(f"cannot sign in with OAuth2: {exc}") from None
    code, reply = client.docmd("AUTH", f"{mechanism} {initial}")
    if code == 334:
        code, reply = client.docmd(sasl.error_challenge_reply(mechanism))
        if code == 334:  # a server that keeps challenging: cancel (RFC 4954)
            client.docmd("*")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)
    return code, reply


def _greet(client: _Client) -> None:
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


def _one_line(code: int, reply: bytes) -> str:
    """A (possibly multi-line) reply as one line, for a trace."""
    return f"{code} " + " / ".join(reply.decode("utf-8", "replace").splitlines())


def _extensions(client: smtplib.SMTP) -> str:
    features = client.esmtp_features
    return "extensions " + (
        # (smtplib keeps AUTH's parameters with a leading space: normalise the spacing)
        "; ".join(" ".join(f"{k.upper()} {v}".split()) for k, v in features.items()) or "(none)"
    )


def _open(
    client: _Client, profile: SmtpProfile, context: ssl.SSLContext, deadline: Deadline
) -> None:
    """Connect, EHLO and (for starttls) upgrade; raises before anything is sent if TLS fails."""
    client.timeout = deadline.budget()
    code, reply = client.connect(profile.host, profile.port)
    if code != 220:
        # A 421 or 554 greeting (RFC 5321 3.1): the server will not talk to us now, or at all.
        # smtplib checks the greeting only when its constructor connects, so it is checked here.
        raise smtplib.SMTPConnectError(code, reply)
    client.trace.ok("greeting", _one_line(code, reply))
    _arm(client, deadline)
    _greet(client)
    if profile.security == "starttls":
        client.trace.begin("tls")
        if not client.has_extn("starttls"):
            raise TlsError(
                "the SMTP server does not offer STARTTLS; nothing was sent",
                condition="starttls_missing",
            )
        _arm(client, deadline)
        client.starttls(context=context)
        assert isinstance(client.sock, ssl.SSLSocket)
        client.trace.ok("tls", "STARTTLS: " + tls_summary(client.sock))
        _arm(client, deadline)
        _greet(client)


def _sign_in(
    client: _Client,
    profile: SmtpProfile,
    deadline: Deadline,
    access_token: Callable[[], str] | None,
) -> None:
    """AUTH with the profile's password, or with a token from *access_token* (oauth2)."""
    assert profile.username is not None
    if profile.oauth2 is None:
        assert profile.password is not None
        client.trace.begin("auth")
        mechanism, code, reply = _authenticate(client, profile.username, profile.password)
    else:
        if access_token is None:
            raise ConfigurationError("an oauth2 profile needs an access token source")
        # Checked before a token is asked for: no token is fetched for a server that cannot
        # take it, and none ever goes out on a plaintext socket.
        client.trace.begin("auth")
        mechanism = _oauth_mechanism(client)
        token = access_token()
        client.trace.begin("auth")  # (the token source may have traced a step of its own)
        _arm(client, deadline)
        code, reply = _authenticate_token(client, mechanism, profile.username, token)
    client.trace.ok("auth", f"{mechanism} as {profile.username}: {_one_line(code, reply)}")


class Session:
    """One open SMTP session (authenticated when the profile has credentials).

    A session sends one message at a time. After any failure inside a transaction its state is
    unknown, so it is closed and must not be used again (`usable` turns False); a session that
    completed its transactions may be reused by a pool (`sender.session_pool`).
    """

    def __init__(self, client: _Client) -> None:
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
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

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
        with _Watchdog(client, deadline) as watchdog:
            try:
                _arm(client, deadline)
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
    exc: BaseException, client: _Client, watchdog: _Watchdog, deadline: Deadline
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
    client: _Client, envelope: Envelope, message: bytes, *, reused: bool
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
        if code == 421:  # the server is closing the session: every remaining RCPT would fail
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
    trace: Trace = _QUIET,
) -> Session:
    """Connect, secure and authenticate; raises before anything is sent if any of it fails.

    `deadline` (`SEND_DEADLINE_S`, steps capped at `SMTP_TIMEOUT_S`) bounds every network step,
    and a `_Watchdog` shuts the socket down when it passes, because a server that drips one byte
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
    client = _Client(local_hostname=ehlo_name, implicit_tls=implicit_tls, trace=trace)
    with _Watchdog(client, deadline) as watchdog:
        try:
            _open(client, profile, context, deadline)
            if profile.username and (profile.password is not None or profile.oauth2 is not None):
                _arm(client, deadline)
                _sign_in(client, profile, deadline, access_token)
        except BaseException as exc:  # noqa: BLE001 - closed, then re-raised as what it means
            client.close()
            raise _opening_failure(exc, client, watchdog, deadline) from None
    return Session(client)


def _opening_failure(
    exc: BaseException, client: _Client, watchdog: _Watchdog, deadline: Deadline
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
