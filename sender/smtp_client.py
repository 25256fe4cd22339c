"""The smtplib client every session uses, under the rules no profile can change.

- certificates are always verified (system roots plus `SMTP_CA_FILE`), host name included
  (`new_tls_context`);
- DNS and connect are bounded by the step timeout (the resolver has no timeout of its own);
- `arm` bounds each blocking socket operation by what is left of the deadline, and a `Watchdog`
  shuts the socket down when the deadline passes (a server dripping one byte a second never trips
  a per-read timeout);
- the client records whether the message's final ``CRLF.CRLF`` went out (after it, a lost reply
  is an unknown outcome, not a network error);
- a `Trace` watches the steps (`python -m sender check` prints them; the send path passes none).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import smtplib
import socket
import ssl
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sender.deadline import Cancellable, Deadline
from sender.errors import ConfigurationError, TransientError

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


class Trace:
    """Watches the steps of opening a session: `begin` before each, `ok` with a one-line detail
    after it succeeded. This base class does nothing (the send path); `sender.check` prints.

    Steps, in order: ``dns``, ``connect``, ``tls`` (implicit TLS), ``greeting``, ``ehlo``,
    ``tls`` (STARTTLS), ``ehlo`` again after it, ``auth``. Details never hold a credential."""

    def begin(self, step: str) -> None:
        """A step starts (a failure from here on belongs to it)."""

    def ok(self, step: str, detail: str) -> None:
        """The step succeeded."""


QUIET = Trace()


class StepTrace(Trace):
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


def arm(client: smtplib.SMTP, deadline: Deadline) -> None:
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


def _connect(host: str, port: int, timeout: float, trace: Trace = QUIET) -> socket.socket:
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


class SmtpClient(smtplib.SMTP):
    """smtplib.SMTP with a bounded DNS look-up, implicit TLS when given a context, and a record of
    whether the message's final `CRLF.CRLF` was handed to the socket.

    Once the dot went out, the server may have accepted the message even if its reply never
    arrives: that failure is `OutcomeUnknownError`, not a plain network error (see `send`).
    smtplib's `data()` writes the whole quoted message, dot included, with one `send()` call.
    """

    def __init__(
        self, *, local_hostname: str, implicit_tls: ssl.SSLContext | None, trace: Trace = QUIET
    ) -> None:
        self._implicit_tls = implicit_tls
        self.trace = StepTrace(trace)
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


class Watchdog:
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

    def __enter__(self) -> Watchdog:
        self._alarm = self._deadline.call_at_expiry(self._fire)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._alarm is not None:
            self._alarm.cancel()


def one_line(code: int, reply: bytes) -> str:
    """A (possibly multi-line) reply as one line, for a trace."""
    return f"{code} " + " / ".join(reply.decode("utf-8", "replace").splitlines())
