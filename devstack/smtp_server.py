"""An embedded SMTP server that behaves like a provider's submission port.

STARTTLS is required before anything else, AUTH (PLAIN or LOGIN) is required before MAIL,
and only the generated dev credentials log in — so the function's real transport code runs
exactly as it would against Gmail or SES. Every recipient is accepted and every message is
stored in the outbox directory instead of being delivered — unless chaos mode is on
(`devstack.chaos`): then `reject-*@`, `defer-*@` and `slow-*@` recipients meet the faults a real
provider has on a bad day, and each message's envelope notes what chaos did to it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import weakref
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from devstack.chaos import Chaos
from devstack.outbox import Envelope, Outbox
from devstack.tls import TlsFiles

#: Called after a message is stored: (message id, envelope).
OnMessage = Callable[[str, Envelope], None]
#: Called with one line whenever chaos mode refuses a recipient or holds a reply.
OnChaos = Callable[[str], None]

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
    """The aiosmtpd handler: writes each message to the outbox (and plays chaos, if on)."""

    def __init__(
        self,
        outbox: Outbox,
        on_message: OnMessage | None,
        chaos: Chaos | None = None,
        on_chaos: OnChaos | None = None,
    ) -> None:
        self._outbox = outbox
        self._on_message = on_message
        self._chaos = chaos
        self._on_chaos = on_chaos
        # Chaos notes per SMTP transaction; aiosmtpd makes a new envelope for each one.
        self._notes: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()

    def _note(self, envelope: Any, line: str) -> None:
        self._notes.setdefault(envelope, []).append(line)
        if self._on_chaos is not None:
            self._on_chaos(line)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._chaos.rcpt_reply(address) if self._chaos is not None else None
        if refusal is not None:
            self._note(envelope, f"{address} refused: {refusal}")
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content
        if isinstance(content, str):  # only with decode_data=True, which we do not set
            content = content.encode("utf-8")
        delay_s = self._chaos.reply_delay_s(envelope.rcpt_tos) if self._chaos is not None else 0
        if delay_s:
            self._note(envelope, f"answer to the final dot held {delay_s:g} s (slow-*)")
        info = Envelope(
            mail_from=str(envelope.mail_from),
            rcpt_tos=[str(r) for r in envelope.rcpt_tos],
            peer=str(session.peer[0]) if session.peer else "",
            login=session.auth_data if isinstance(session.auth_data, str) else None,
            chaos=list(self._notes.get(envelope, [])),
        )
        try:
            message_id = self._outbox.save(bytes(content), info)
        except OSError as exc:
            # A transient local failure, reported as a provider would: try again later.
            return f"451 4.3.0 could not store the message: {exc.strerror}"
        if self._on_message is not None:
            self._on_message(message_id, info)
        if delay_s:
            # Stored first, answered late: a real server that queued the message before it
            # replied. A client that gives up meanwhile cannot know the message arrived.
            await asyncio.sleep(delay_s)
        return f"250 2.0.0 OK queued as {message_id}"


class _Controller(Controller):
    """aiosmtpd's controller, remembering its connections so that `stop` can end them first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def factory(self) -> Any:
        protocol = super().factory()
        self.connections.add(protocol)
        return protocol

    def stop(self, no_assert: bool = False) -> None:
        # A client may keep its session open (the function's pool does), and from Python 3.12
        # on asyncio's server shutdown waits for every connection: end them first.
        for protocol in list(self.connections):
            transport = protocol.transport
            if transport is not None and self.loop.is_running():
                self.loop.call_soon_threadsafe(transport.abort)
        super().stop(no_assert=no_assert)


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
        chaos: Chaos | None = None,
        on_chaos: OnChaos | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._controller = _Controller(
            _StoreHandler(outbox, on_message, chaos, on_chaos),
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
