"""Fixtures for the dev stack's tests: an in-process SMTP outbox + page on free ports."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from devstack import tls
from devstack.outbox import Outbox
from devstack.settings import HOST
from devstack.smtp_server import DevSmtpServer
from devstack.web import OutboxWebServer
from tests.support.loopback import free_port

USERNAME = "dev"
PASSWORD = "s3cret-dev-password"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tls.TlsFiles:
    return tls.ensure(tmp_path_factory.mktemp("state"))


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


@pytest.fixture
def local_outbox(tmp_path: Path, tls_files: tls.TlsFiles) -> Iterator[LocalOutbox]:
    outbox = Outbox(tmp_path / "outbox")
    smtp = DevSmtpServer(
        host=HOST,
        port=free_port(),
        tls=tls_files,
        outbox=outbox,
        username=USERNAME,
        password=PASSWORD,
    )
    smtp.start()
    try:
        web = OutboxWebServer(HOST, 0, outbox)
        web.start()
        try:
            yield LocalOutbox(outbox, smtp.port, f"http://{HOST}:{web.port}", tls_files)
        finally:
            web.stop()
    finally:
        smtp.stop()


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
