"""One SMTP session with the stdlib `smtplib`: connect, secure, authenticate, send, quit.

Rules this module keeps, whatever the profile says:
- certificates are always verified (system roots plus `SMTP_CA_FILE`), hostname included;
- credentials go only over a socket that *is* TLS (the socket is checked, not the setting);
- every network step is bounded by `SMTP_TIMEOUT_S`, and the whole session by a deadline
  (`sender.deadline`), so the function never hangs past its own timeout;
- AUTH PLAIN/LOGIN encode the username and password as UTF-8 (RFC 4616): `smtplib.login()`
  raises UnicodeEncodeError on a non-ASCII password, so the exchange is done here.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import smtplib
import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any

from sender.deadline import Deadline
from sender.errors import ConfigurationError, OutcomeUnknownError, TlsError, TransientError
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
    return TransientError("the send ran past its deadline (SEND_DEADLINE_S)")


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


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    last_error: OSError | None = None
    for family, kind, proto, _, address in _resolve(host, port, timeout):
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    raise last_error or OSError(f"no address for {host}")


class _Client(smtplib.SMTP):
    """smtplib.SMTP with a bounded DNS look-up, implicit TLS when given a context, and a record of
    whether the message's final `CRLF.CRLF` was handed to the socket.

    Once the dot went out, the server may have accepted the message even if its reply never
    arrives: that failure is `OutcomeUnknownError`, not a plain network error (see `send`).
    smtplib's `data()` writes the whole quoted message, dot included, with one `send()` call.
    """

    def __init__(self, *, local_hostname: str, implicit_tls: ssl.SSLContext | None) -> None:
        self._implicit_tls = implicit_tls
        self.final_dot_sent = False
        super().__init__(local_hostname=local_hostname)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib records the name for STARTTLS's certificate check only when the constructor
        # connects; this client is built first and connected later (under the watchdog).
        self._host = host
        sock = _connect(host, port, timeout)
        if self._implicit_tls is None:
            return sock
        # The handshake verifies the certificate and the host name, as SMTP_SSL's would.
        return self._implicit_tls.wrap_socket(sock, server_hostname=host)

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.final_dot_sent = True


class _Watchdog:
    """Shuts a client's socket down at the deadline, so a blocked read or write fails at once."""

    def __init__(self, client: smtplib.SMTP, deadline: Deadline) -> None:
        self.fired = False
        self._client = client
        self._timer = threading.Timer(max(deadline.left(), 0.0), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self._client.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _authenticate(client: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH PLAIN (preferred) or LOGIN with UTF-8 credentials; raises SMTPAuthenticationError."""
    if not isinstance(client.sock, ssl.SSLSocket):
        # Defence in depth: the session setup already guarantees TLS, but a password must never
        # leave on a plaintext socket whatever a future change to that setup does.
        raise TlsError("refusing to send credentials over a connection that is not TLS")
    if not client.does_esmtp:
        raise ConfigurationError(
            "the SMTP server refused EHLO and speaks only HELO, which has no AUTH: point the "
            "profile at the provider's submission server, or remove the username for a relay "
            "that trusts the network"
        )
    if not client.has_extn("auth"):
        raise ConfigurationError(
            "the SMTP server does not offer AUTH; remove the username for a trusted relay"
        )
    mechanisms = client.esmtp_features["auth"].upper().split()
    user, secret = username.encode("utf-8"), password.encode("utf-8")
    if "PLAIN" in mechanisms:
        code, reply = client.docmd("AUTH", "PLAIN " + _b64(b"\0" + user + b"\0" + secret))
    elif "LOGIN" in mechanisms:
        code, reply = client.docmd("AUTH", "LOGIN")
        if code == 334:
            code, reply = client.docmd(_b64(user))
        if code == 334:
            code, reply = client.docmd(_b64(secret))
    else:
        raise ConfigurationError(
            f"the SMTP server offers no supported AUTH mechanism (offers {' '.join(mechanisms)})"
        )
    if code != 235:
        if code == 334:  # a challenge we did not expect: end the exchange cleanly
            client.docmd("*")
        raise smtplib.SMTPAuthenticationError(code, reply)


def _greet(client: smtplib.SMTP) -> None:
    """EHLO, falling back to HELO when the server refuses it with a 5xx (RFC 5321 3.2).

    A 4xx (or 421) means "not now", not "no ESMTP": that is raised and classified as transient.
    """
    code, reply = client.ehlo()
    if code == 250:
        return
    if 500 <= code < 600:
        code, reply = client.helo()
        if code == 250:
            return
    raise smtplib.SMTPHeloError(code, reply)


def _open(
    client: smtplib.SMTP, profile: SmtpProfile, context: ssl.SSLContext, deadline: Deadline
) -> None:
    """Connect, EHLO and (for starttls) upgrade; raises before anything is sent if TLS fails."""
    client.timeout = deadline.budget()
    code, reply = client.connect(profile.host, profile.port)
    if code != 220:
        # A 421 or 554 greeting (RFC 5321 3.1): the server will not talk to us now, or at all.
        # smtplib checks the greeting only when its constructor connects, so it is checked here.
        raise smtplib.SMTPConnectError(code, reply)
    _arm(client, deadline)
    _greet(client)
    if profile.security == "starttls":
        if not client.has_extn("starttls"):
            raise TlsError("the SMTP server does not offer STARTTLS; nothing was sent")
        _arm(client, deadline)
        client.starttls(context=context)
        _arm(client, deadline)
        _greet(client)


def send(
    profile: SmtpProfile,
    envelope: Envelope,
    message: bytes,
    *,
    context: ssl.SSLContext,
    deadline: Deadline,
) -> dict[str, Refusal]:
    """Send one message; return the recipients the server refused (empty when all accepted).

    `deadline` (`SEND_DEADLINE_S`, steps capped at `SMTP_TIMEOUT_S`) bounds every network step,
    and a `_Watchdog` shuts the socket down when it passes, because a server that drips one byte
    per second never trips a per-read timeout. Raises smtplib/socket/ssl exceptions (classified
    by `sender.classify`) or a `SendError`.
    """
    if profile.username and profile.security == "none":
        raise ConfigurationError("credentials are never sent without TLS: use ssl or starttls")
    # gethostname() needs no DNS, unlike smtplib's default getfqdn(), which can stall.
    ehlo_name = socket.gethostname() or "localhost"
    implicit_tls = context if profile.security == "ssl" else None
    client = _Client(local_hostname=ehlo_name, implicit_tls=implicit_tls)
    with _Watchdog(client, deadline) as watchdog:
        try:
            _open(client, profile, context, deadline)
            if profile.username and profile.password is not None:
                _arm(client, deadline)
                _authenticate(client, profile.username, profile.password)
            _arm(client, deadline)
            refused = client.sendmail(envelope.mail_from, envelope.recipients, message)
        except BaseException as exc:
            client.close()
            lost_reply = isinstance(exc, OSError) and not isinstance(
                exc,
                smtplib.SMTPResponseException,  # a reply is the server's verdict
            )
            if client.final_dot_sent and lost_reply:
                # The message went out whole; only the server's verdict was lost.
                raise OutcomeUnknownError(
                    "the connection was lost after the message was sent: the server may have "
                    f"accepted it ({'deadline' if watchdog.fired else type(exc).__name__})"
                ) from None
            if watchdog.fired:
                raise deadline.error() from None
            raise
    try:  # the server has accepted the message: a failing QUIT must not turn it into an error
        client.timeout = 2.0
        if client.sock is not None:
            client.sock.settimeout(2.0)
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
    return refusals_from(refused)
