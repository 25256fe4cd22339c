"""The dev stack's outbox as its tests use it: an SMTP server + page running in the test process
(`LocalOutbox`, handed out by the ``local_outbox`` fixture) and messages shaped like the
function's output (`alert`)."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from devstack import tls
from devstack.outbox import Outbox
from devstack.settings import HOST

USERNAME = "dev"
PASSWORD = "s3cret-dev-password"


@dataclass
class LocalOutbox:
    """An SMTP server and outbox page running in this process."""

    outbox: Outbox
    smtp_port: int
    url: str
    tls_files: tls.TlsFiles

    def send(self, message: EmailMessage, *, rcpt: list[str] | None = None) -> None:
        """Submit as the function does: STARTTLS (verified against the dev CA), AUTH, send."""
        with smtplib.SMTP(HOST, self.smtp_port, timeout=10) as client:
            client.starttls(context=self.tls_files.client_context())
            client.login(USERNAME, PASSWORD)
            client.send_message(message, to_addrs=rcpt)


def alert(
    subject: str,
    *,
    text: str = "plain body",
    html: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    sender: str = "Dev Alerts <alerts@dev.localhost>",
    to: str = "ops@example.com",
) -> EmailMessage:
    """A message shaped like the function's output: text, optional html, attachments."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message
