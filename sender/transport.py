"""One SMTP session with the stdlib `smtplib`: connect, secure, authenticate, send, quit.

Rules this module keeps, whatever the profile says:
- certificates are always verified (system roots plus `SMTP_CA_FILE`), hostname included;
- credentials go only over a socket that *is* TLS (the socket is checked, not the setting);
- every network step is bounded by `SMTP_TIMEOUT_S`, and the whole session by a deadline, so the
  function never hangs past its own timeout;
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sender.outcome import ConfigurationError, Refusal, TlsError, TransientError, refusals_from
from sender.profile import SmtpProfile


@dataclass(frozen=True, slots=True)
class Envelope:
    """What SMTP needs besides the message bytes: MAIL FROM and RCPT TO addresses (ASCII)."""

    mail_from: str
    recipients: list[str]


_contexts: dict[tuple[str | None, float], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: system roots plus the optional extra CA. Cached per file."""
    mtime = 0.0
    if ca_file:
        try:
            mtime = Path(ca_file).stat().st_mtime
        except OSError:
            raise ConfigurationError(f"SMTP_CA_FILE {ca_file} cannot be read") from None
    key = (ca_file, mtime)
    with _contexts_lock:
        context = _contexts.get(key)
        if context is None:
            context = ssl.create_default_context()  # CERT_REQUIRED + check_hostname
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if ca_file:
                try:
                    context.load_verify_locations(cafile=ca_file)
                except (OSError, ssl.SSLError):
                    raise ConfigurationError(
                        f"SMTP_CA_FILE {ca_file} is not a PEM CA bundle"
                    ) from None
            _contexts[key] = context
        return context


class Deadline:
    """One absolute deadline for everything a send does (both attempts of a rotation retry).

    `step()` bounds one network operation by `SMTP_TIMEOUT_S` and by what is left; `send` also
    runs a `_Watchdog` that shuts the socket down when the deadline passes, because a server that
    drips one byte per second never trips a per-read timeout.
    """

    def __init__(self, total_s: float, step_s: float) -> None:
        self._ends_at = time.monotonic() + total_s
        self._step_s = step_s

    def remaining(self) -> float:
        return self._ends_at - time.monotonic()

    def step(self) -> float:
        remaining = self.remaining()
        if remaining <= 0:
            raise TransientError("the SMTP session ran past its deadline")
        return min(self._step_s, remaining)

    def arm(self, client: smtplib.SMTP) -> None:
        if client.sock is not None:
            client.sock.settimeout(self.step())


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


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP with a bounded DNS look-up."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib records the name for STARTTLS's certificate check only when the constructor
        # connects; this client is built first and connected later (under the watchdog).
        self._host = host
        return _connect(host, port, timeout)


class _SMTPOverTLS(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL with a bounded DNS look-up (the handshake verifies as SMTP_SSL does)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = host
        return self.context.wrap_socket(_connect(host, port, timeout), server_hostname=host)


class _Watchdog:
    """Shuts a client's socket down at the deadline, so a blocked read or write fails at once."""

    def __init__(self, client: smtplib.SMTP, deadline: Deadline) -> None:
        self.fired = False
        self._client = client
        self._timer = threading.Timer(max(deadline.remaining(), 0.0), self._fire)
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


def _open(
    client: smtplib.SMTP, profile: SmtpProfile, context: ssl.SSLContext, deadline: Deadline
) -> None:
    """Connect, EHLO and (for starttls) upgrade; raises before anything is sent if TLS fails."""
    client.timeout = deadline.step()
    client.connect(profile.host, profile.port)
    deadline.arm(client)
    client.ehlo()
    if profile.security == "starttls":
        if not client.has_extn("starttls"):
            raise TlsError("the SMTP server does not offer STARTTLS; nothing was sent")
        deadline.arm(client)
        client.starttls(context=context)
        deadline.arm(client)
        client.ehlo()


def send(
    profile: SmtpProfile,
    envelope: Envelope,
    message: bytes,
    *,
    ca_file: str | None,
    deadline: Deadline,
) -> dict[str, Refusal]:
    """Send one message; return the recipients the server refused (empty when all accepted).

    Raises smtplib/socket/ssl exceptions (classified by `outcome.classify`) or a `SendError`.
    """
    if profile.username and profile.security == "none":
        raise ConfigurationError("credentials are never sent without TLS: use ssl or starttls")
    context = tls_context(ca_file)
    # gethostname() needs no DNS, unlike smtplib's default getfqdn(), which can stall.
    ehlo_name = socket.gethostname() or "localhost"
    client: smtplib.SMTP
    if profile.security == "ssl":
        client = _SMTPOverTLS(local_hostname=ehlo_name, context=context)
    else:
        client = _SMTP(local_hostname=ehlo_name)
    with _Watchdog(client, deadline) as watchdog:
        try:
            _open(client, profile, context, deadline)
            if profile.username and profile.password is not None:
                deadline.arm(client)
                _authenticate(client, profile.username, profile.password)
            deadline.arm(client)
            refused = client.sendmail(envelope.mail_from, envelope.recipients, message)
        except BaseException:
            client.close()
            if watchdog.fired:
                raise TransientError("the SMTP session ran past its deadline") from None
            raise
    try:  # the server has accepted the message: a failing QUIT must not turn it into an error
        client.timeout = 2.0
        if client.sock is not None:
            client.sock.settimeout(2.0)
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
    return refusals_from(refused)


def reset() -> None:
    """Forget cached TLS contexts (tests; a new instance starts like this)."""
    with _contexts_lock:
        _contexts.clear()
