"""Chaos mode (`DEV_SMTP_CHAOS=1`): each rule, through the real dev SMTP server.

First with a plain SMTP client (what the server answers and stores), then with the function itself
in front of it (what a developer sees: a partial send, a redelivery, a deadline).
"""

from __future__ import annotations

import json
import smtplib
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from devstack import tls
from devstack.chaos import Chaos, ChaosSettings
from devstack.outbox import Envelope, Outbox
from devstack.settings import HOST, DevSettings, SettingsError
from devstack.smtp_server import DevSmtpServer
from devstack.web import OutboxWebServer
from tests.support import pubsub
from tests.support.dev_outbox import LocalOutbox, alert
from tests.support.env import SenderEnv
from tests.support.loopback import free_port

USERNAME = "dev"
PASSWORD = "chaos-dev-password"
DEV_FROM = "Dev Alerts <alerts@dev.localhost>"
SLOW_S = 4.0  # the slow-* delay here: longer than the 2 s deadline the function gets below


@dataclass
class ChaosServer:
    """The dev SMTP server with chaos on, its outbox, page and console lines."""

    outbox: Outbox
    port: int
    tls_files: tls.TlsFiles
    page_url: str
    console: list[str]

    def client(self) -> smtplib.SMTP:
        client = smtplib.SMTP(HOST, self.port, timeout=30)
        client.starttls(context=self.tls_files.client_context())
        client.login(USERNAME, PASSWORD)
        return client

    def stored(self) -> list[tuple[EmailMessage, Envelope]]:
        """(message, envelope) of every stored message, oldest first."""
        found = []
        for message_id in reversed(self.outbox.ids()):
            parsed = message_from_bytes(self.outbox.read(message_id), policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            envelope = self.outbox.envelope(message_id)
            assert envelope is not None
            found.append((parsed, envelope))
        return found


@pytest.fixture
def chaos_server(tmp_path: Path, tls_files: tls.TlsFiles) -> Iterator[ChaosServer]:
    outbox = Outbox(tmp_path / "outbox")
    console: list[str] = []
    smtp = DevSmtpServer(
        host=HOST,
        port=free_port(),
        tls=tls_files,
        outbox=outbox,
        username=USERNAME,
        password=PASSWORD,
        chaos=Chaos(ChaosSettings(slow_s=SLOW_S, deferrals=1)),
        on_chaos=console.append,
    )
    smtp.start()
    web = OutboxWebServer(HOST, 0, outbox)
    web.start()
    try:
        yield ChaosServer(outbox, smtp.port, tls_files, f"http://{HOST}:{web.port}", console)
    finally:
        web.stop()
        smtp.stop()


def _mail(to: str = "ops@example.com") -> bytes:
    return f"From: {DEV_FROM}\r\nTo: {to}\r\nSubject: chaos\r\n\r\nbody\r\n".encode()


# --- the rules, seen by a plain SMTP client ---------------------------------------------------


def test_reject_recipients_get_550_and_the_rest_is_stored(chaos_server: ChaosServer) -> None:
    with chaos_server.client() as client:
        refused = client.sendmail(
            "alerts@dev.localhost", ["ops@example.com", "reject-1@example.com"], _mail()
        )
    assert refused["reject-1@example.com"][0] == 550
    [(_, envelope)] = chaos_server.stored()
    assert envelope.rcpt_tos == ["ops@example.com"]
    assert any("reject-1@example.com refused: 550" in note for note in envelope.chaos)
    assert any("reject-1@example.com" in line for line in chaos_server.console)


def test_defer_recipients_get_450_once_then_are_accepted(chaos_server: ChaosServer) -> None:
    with chaos_server.client() as client:
        first = client.sendmail(
            "alerts@dev.localhost", ["ops@example.com", "DEFER-a@x.org"], _mail()
        )
        second = client.sendmail("alerts@dev.localhost", ["defer-a@x.org"], _mail())
    assert first["DEFER-a@x.org"][0] == 450  # counted per address, whatever its case
    assert second == {}
    assert [env.rcpt_tos for _, env in chaos_server.stored()] == [
        ["ops@example.com"],
        ["defer-a@x.org"],
    ]


def test_slow_recipients_are_stored_before_the_late_answer(chaos_server: ChaosServer) -> None:
    answered = threading.Event()

    def send() -> None:
        with chaos_server.client() as client:
            client.sendmail("alerts@dev.localhost", ["slow-1@example.com"], _mail())
        answered.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    stored = False
    while not answered.is_set() and not stored:
        stored = bool(chaos_server.outbox.ids())
        answered.wait(0.02)
    assert stored, "the answer came before the message was stored"
    sender.join(timeout=SLOW_S + 30)
    assert answered.is_set()
    [(_, envelope)] = chaos_server.stored()
    assert envelope.chaos == [f"answer to the final dot held {SLOW_S:g} s (slow-*)"]


def test_without_chaos_mode_the_same_names_are_ordinary_recipients(
    local_outbox: LocalOutbox,
) -> None:
    names = ["reject-1@example.com", "defer-1@example.com", "slow-1@example.com"]
    local_outbox.send(alert("no chaos"), rcpt=names)  # raises if any recipient were refused
    [message_id] = local_outbox.outbox.ids()
    envelope = local_outbox.outbox.envelope(message_id)
    assert envelope is not None
    assert envelope.chaos == []


# --- settings ----------------------------------------------------------------------------------


def test_chaos_settings_come_from_dotenv_and_default_sensibly(tmp_path: Path) -> None:
    env_file = tmp_path / "chaos.env"
    env_file.write_text("DEV_SMTP_CHAOS=1\nDEV_SMTP_CHAOS_SLOW_S=2.5\n")
    settings = DevSettings.load({"DEV_ENV_FILE": str(env_file)})
    assert settings.chaos == ChaosSettings(slow_s=2.5, deferrals=1)
    off = DevSettings.load({"DEV_ENV_FILE": str(tmp_path / "none")})
    assert off.chaos is None
    no_file = str(tmp_path / "none")
    assert DevSettings.load({"DEV_ENV_FILE": no_file, "DEV_SMTP_CHAOS": "off"}).chaos is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEV_SMTP_CHAOS", "maybe"),
        ("DEV_SMTP_CHAOS_SLOW_S", "soon"),
        ("DEV_SMTP_CHAOS_SLOW_S", "0"),
        ("DEV_SMTP_CHAOS_SLOW_S", "nan"),
        ("DEV_SMTP_CHAOS_DEFERRALS", "1.5"),
        ("DEV_SMTP_CHAOS_DEFERRALS", "0"),
    ],
)
def test_a_bad_chaos_setting_is_named(tmp_path: Path, name: str, value: str) -> None:
    env = {"DEV_ENV_FILE": str(tmp_path / "none"), "DEV_SMTP_CHAOS": "1", name: value}
    with pytest.raises(SettingsError, match=name):
        DevSettings.load(env)


# --- what a developer sees through the function ------------------------------------------------


@pytest.fixture
def function_on_chaos(
    chaos_server: ChaosServer, sender_env: SenderEnv, tls_files: tls.TlsFiles
) -> ChaosServer:
    """The function (in process) sending through the chaos server, as `make dev` wires it."""
    profile = {
        "host": HOST,
        "port": chaos_server.port,
        "security": "starttls",
        "username": USERNAME,
        "password": PASSWORD,
        "from": DEV_FROM,
    }
    sender_env.store(json.dumps(profile))
    sender_env.set(SMTP_CA_FILE=str(tls_files.ca_cert))
    return chaos_server


ALERT: dict[str, Any] = {"subject": "Disk 91% on db-1", "text": "db-1: /var is 91% full."}


def test_a_partial_send_shows_who_got_it_and_who_was_refused(
    http_client: Any, function_on_chaos: ChaosServer
) -> None:
    response = http_client.post("/", json={**ALERT, "to": ["ops@example.com", "reject-1@x.org"]})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "partial"
    assert body["refused"]["reject-1@x.org"]["code"] == 550
    [(message, envelope)] = function_on_chaos.stored()
    assert "reject-1@x.org" in str(message["To"])  # addressed to both ...
    assert envelope.rcpt_tos == ["ops@example.com"]  # ... delivered to one
    [message_id] = function_on_chaos.outbox.ids()
    page = f"{function_on_chaos.page_url}/messages/{message_id}"
    with urllib.request.urlopen(page, timeout=10) as resp:
        html = resp.read().decode()
    assert "Chaos mode" in html
    assert "reject-1@x.org refused: 550" in html


def test_a_retry_with_the_same_key_reaches_the_deferred_recipient_alone(
    http_client: Any, function_on_chaos: ChaosServer
) -> None:
    request = {**ALERT, "to": ["ops@example.com", "defer-1@x.org"], "idempotency_key": "dev-1"}
    first = http_client.post("/", json=request)
    again = http_client.post("/", json=request)

    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.get_json()["refused"]["defer-1@x.org"]["code"] == 450
    assert again.status_code == 200, again.get_data(as_text=True)
    stored = function_on_chaos.stored()
    assert [envelope.rcpt_tos for _, envelope in stored] == [["ops@example.com"], ["defer-1@x.org"]]
    assert len({str(message["Message-ID"]) for message, _ in stored}) == 1


def test_a_pubsub_redelivery_reaches_the_deferred_recipient_alone(
    event_client: Any, function_on_chaos: ChaosServer
) -> None:
    event = {**ALERT, "to": ["ops@example.com", "defer-2@x.org"]}
    first = pubsub.post_event(event_client, event, event_id="dev-chaos-7")
    redelivered = pubsub.post_event(event_client, event, event_id="dev-chaos-7")

    assert first.status_code == 500  # raised: Pub/Sub will redeliver for defer-2
    assert redelivered.status_code == 200
    stored = function_on_chaos.stored()
    assert [envelope.rcpt_tos for _, envelope in stored] == [["ops@example.com"], ["defer-2@x.org"]]


def test_a_slow_server_past_the_deadline_is_a_503_although_the_message_arrived(
    http_client: Any, function_on_chaos: ChaosServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SEND_DEADLINE_S="2")
    response = http_client.post("/", json={**ALERT, "to": "slow-1@example.com"})

    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["retryable"] is True
    [(_, envelope)] = function_on_chaos.stored()  # the outbox has it: the window README names
    assert envelope.rcpt_tos == ["slow-1@example.com"]
