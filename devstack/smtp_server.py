"""An embedded SMTP server that behaves like a provider's submission port.

STARTTLS is required before anything else, AUTH (PLAIN or LOGIN) is required before MAIL,
and only the generated dev credentials log in — so the function's real transport code runs
exactly as it would against Gmail or SES. Every recipient is accepted and every message is
stored in the outbox directory instead of being delivered.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from devstack.outbox import Envelope, Outbox
from devstack.tls import TlsFiles

#: Called after a message is stored: (message id, envelope).
OnMessage = Callable[[str, Envelope], None]

SERVER_NAME = "smtp.dev.localhost"


def _not_login_data_notice(record: logging.LogRecord) -> bool:
    # aiosmtpd 1.4 sets its own deprecated Session.login_data on every successful AUTH and
    # logs a warning about it: noise about its internals, not about anything we do.
    return "Session.login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_not_login_data_notice)


class _Credentials:
    """The aiosmtpd authenticator: accepts exactly one username/password pair."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode("utf-8")
        self._password = password.encode("utf-8")

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        # Compare both in constant time; `&` (not `and`) so the password check always runs.
        ok = hmac.compare_digest(auth_data.login, self._username) & hmac.compare_digest(
            auth_data.password, self._password
        )
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data.login.decode("utf-8", "replace"))


class _StoreHandler:
    """The aiosmtpd handler: writes each message to the outbox."""

    def __init__(self, outbox: Outbox, on_message: OnMessage | None) -> None:
        self._outbox = outbox
        self._on_message = on_message

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content
        if isinstance(content, str):  # only with decode_data=True, which we do not set
            content = content.encode("utf-8")
        info = Envelope(
            mail_from=str(envelope.mail_from),
            rcpt_tos=[str(r) for r in envelope.rcpt_tos],
            peer=str(session.peer[0]) if session.peer else "",
            login=session.auth_data if isinstance(session.auth_data, str) else None,
        )
        try:
            message_id = self._outbox.save(bytes(content), info)
        except OSError as exc:
            # A transient local failure, reported as a provider would: try again later.
            return f"451 4.3.0 could not store the message: {exc.strerror}"
        if self._on_message is not None:
            self._on_message(message_id, info)
        return f"250 2.0.0 OK queued as {message_id}"


class DevSmtpServer:
    """Owns the aiosmtpd controller (its own thread and event loop)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: TlsFiles,
        outbox: Outbox,
        username: str,
        password: str,
        on_message: OnMessage | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._controller = Controller(
            _StoreHandler(outbox, on_message),
            hostname=host,
            port=port,
            server_hostname=SERVER_NAME,
            ready_timeout=10.0,
            tls_context=tls.server_context(),
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=_Credentials(username, password),
            enable_SMTPUTF8=True,
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
