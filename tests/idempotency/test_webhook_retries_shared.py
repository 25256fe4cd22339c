"""A webhook retry that lands on another instance: two function processes sharing one ledger in
the Firestore emulator, as two Cloud Run instances behind one URL would."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.checks import assert_one_conversation
from tests.support.emulators import Emulator
from tests.support.env import SenderEnv
from tests.support.ff_process import FunctionsFrameworkProcess
from tests.support.payloads import load, resolved
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.emulator, pytest.mark.process]


def test_grafana_retry_on_another_instance_is_a_duplicate_and_resolved_threads(
    server: SmtpTestServer, sender_env: SenderEnv, firestore_emulator: Emulator, tmp_path: Path
) -> None:
    sender_env.set(
        **firestore_emulator.env(),
        IDEMPOTENCY_STORE="firestore",
        IDEMPOTENCY_COLLECTION=f"webhooks-{uuid.uuid4().hex[:12]}",
    )
    env = sender_env.process_env()
    path = "/grafana?to=ops@example.com"
    with (
        FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path / "a") as first,
        FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path / "b") as second,
    ):
        sent = first.post_json(path, load("grafana"))
        retried = second.post_json(path, load("grafana"))  # Grafana timed out and retried
        assert sent.status == retried.status == 200, retried.text
        assert sent.json()["status"] == "sent"
        assert retried.json()["status"] == "duplicate"
        assert retried.json()["message_id"] == sent.json()["message_id"]
        assert len(server.messages) == 1
        done = second.post_json(path, resolved(load("grafana")))
        assert done.json()["status"] == "sent", done.text
    firing, resolved_mail = server.wait_for_messages(2)
    assert_one_conversation(firing.message, resolved_mail.message)
