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
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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


class _Deadline:
    """Per-step timeout that never runs past the session's deadline."""

    def __init__(self, step_s: float, total_s: float) -> None:
        self._step_s = step_s
        self._ends_at = time.monotonic() + total_s

    def next_step(self) -> float:
        remaining = self._ends_at - time.monotonic()
        if remaining <= 0:
            raise TransientError("the SMTP session ran past its deadline")
        return min(self._step_s, remaining)

    def arm(self, client: smtplib.SMTP) -> None:
        if client.sock is not None:
            client.sock.settimeout(self.next_step())


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


def _open(profile: SmtpProfile, context: ssl.SSLContext, deadline: _Deadline) -> smtplib.SMTP:
    # gethostname() needs no DNS, unlike smtplib's default getfqdn(), which can stall.
    ehlo_name = socket.gethostname() or "localhost"
    client: smtplib.SMTP
    if profile.security == "ssl":
        client = smtplib.SMTP_SSL(
            profile.host, profile.port, local_hostname=ehlo_name,
            timeout=deadline.next_step(), context=context,
        )  # fmt: skip
    else:
        client = smtplib.SMTP(
            profile.host, profile.port, local_hostname=ehlo_name, timeout=deadline.next_step()
        )
    try:
        deadline.arm(client)
        client.ehlo()
        if profile.security == "starttls":
            if not client.has_extn("starttls"):
                raise TlsError("the SMTP server does not offer STARTTLS; nothing was sent")
            deadline.arm(client)
            client.starttls(context=context)
            deadline.arm(client)
            client.ehlo()
    except BaseException:
        client.close()
        raise
    return client


def send(
    profile: SmtpProfile,
    envelope: Envelope,
    message: bytes,
    *,
    ca_file: str | None,
    step_timeout_s: float,
    deadline_s: float,
) -> dict[str, Refusal]:
    """Send one message; return the recipients the server refused (empty when all accepted).

    Raises smtplib/socket/ssl exceptions (classified by `outcome.classify`) or a `SendError`.
    """
    if profile.username and profile.security == "none":
        raise ConfigurationError("credentials are never sent without TLS: use ssl or starttls")
    context = tls_context(ca_file)
    deadline = _Deadline(step_timeout_s, deadline_s)
    client = _open(profile, context, deadline)
    try:
        if profile.username and profile.password is not None:
            deadline.arm(client)
            _authenticate(client, profile.username, profile.password)
        deadline.arm(client)
        refused = client.sendmail(envelope.mail_from, envelope.recipients, message)
    except BaseException:
        client.close()
        raise
    try:  # the server has accepted the message: a failing QUIT must not turn it into an error
        deadline.arm(client)
        client.quit()
    except (smtplib.SMTPException, OSError, TransientError):
        client.close()
    return refusals_from(refused)


def reset() -> None:
    """Forget cached TLS contexts (tests; a new instance starts like this)."""
    with _contexts_lock:
        _contexts.clear()
