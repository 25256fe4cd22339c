"""Fixtures for the dev stack's tests: an in-process SMTP outbox + page on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import tls
from devstack.outbox import Outbox
from devstack.settings import HOST
from devstack.smtp_server import DevSmtpServer
from devstack.web import OutboxWebServer
from tests.support.dev_outbox import PASSWORD, USERNAME, LocalOutbox
from tests.support.loopback import free_port


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tls.TlsFiles:
    return tls.ensure(tmp_path_factory.mktemp("state"))


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
