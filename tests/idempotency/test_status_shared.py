"""Real parts: `GET /messages/<key>` answered by another instance, through the Firestore emulator.

Two functions-framework processes share nothing but the Firestore emulator, as two Cloud Run
instances do: whatever one of them sent, the other tells.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from sender.ledger import Claimed
from sender.ledger_firestore import FirestoreLedger
from tests.support.emulators import Emulator
from tests.support.env import SenderEnv
from tests.support.ff_process import FunctionsFrameworkProcess, HttpResult
from tests.support.ledgers import LEASE_S
from tests.support.pubsub import PROJECT
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.emulator, pytest.mark.process]

BODY_TEXT = "db-1: /var is 91% full"
MESSAGE: dict[str, Any] = {
    "to": "ops@example.com",
    "subject": "Disk 91% on db-1",
    "text": BODY_TEXT,
}
# The token lives in a regional secret: the credential check reads it like the profile.
WEBHOOK_SECRET_NAME = f"projects/{PROJECT}/locations/europe-west1/secrets/webhook-token"
TOKEN = "shared-status-token-3391"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def collection() -> str:
    return f"status-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def instances(
    server: SmtpTestServer,
    sender_env: SenderEnv,
    firestore_emulator: Emulator,
    collection: str,
    tmp_path: Path,
) -> Iterator[tuple[FunctionsFrameworkProcess, FunctionsFrameworkProcess]]:
    """Two HTTP function processes on one Firestore ledger, behind the webhook credential."""
    sender_env.secret_manager.put_secret(WEBHOOK_SECRET_NAME, TOKEN)
    sender_env.set(
        **firestore_emulator.env(),
        IDEMPOTENCY_STORE="firestore",
        IDEMPOTENCY_COLLECTION=collection,
        IDEMPOTENCY_LEASE_S=str(LEASE_S),
        WEBHOOK_SECRET=WEBHOOK_SECRET_NAME,
    )
    env = sender_env.process_env()
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(
                FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path / name)
            )
            for name in ("a", "b")
        )
        yield a, b


def other_instance(collection: str) -> FirestoreLedger:
    """A third instance's view of the shared ledger, to hold a claim as if mid-send."""
    return FirestoreLedger(collection=collection, project=PROJECT, lease_s=LEASE_S, ttl_s=86_400)


def post(instance: FunctionsFrameworkProcess, key: str, message: dict[str, Any]) -> HttpResult:
    return instance.post_json("/", {**message, "idempotency_key": key}, headers=AUTH)


def lookup(instance: FunctionsFrameworkProcess, path: str) -> dict[str, Any]:
    answer = instance.request("GET", path, headers=AUTH)
    body: dict[str, Any] = answer.json()
    assert answer.status in {200, 404}, answer.text
    assert BODY_TEXT not in answer.text
    return body


def test_each_state_sent_by_one_instance_is_told_by_the_other(
    instances: tuple[FunctionsFrameworkProcess, FunctionsFrameworkProcess],
    server: SmtpTestServer,
) -> None:
    a, b = instances
    assert lookup(b, "/messages/never-sent") == {"error": "not_found"}

    sent = post(a, "k-sent", MESSAGE).json()
    told = lookup(b, "/messages/k-sent")
    assert (told["state"], told["message_id"], told["accepted"]) == (
        "sent",
        sent["message_id"],
        ["ops@example.com"],
    )

    server.reject_recipient("busy@example.com", "450 4.2.1 Mailbox busy")
    two = {**MESSAGE, "to": ["ops@example.com", "busy@example.com"]}
    assert post(a, "k-partial", two).json()["status"] == "partial"
    partial = lookup(b, "/messages/k-partial")
    assert (partial["state"], partial["owed"], partial["refused"]) == (
        "partial",
        ["busy@example.com"],
        {},
    )

    server.reject_recipient("nobody@example.com", "550 5.1.1 No such user")
    assert post(a, "k-rejected", {**MESSAGE, "to": "nobody@example.com"}).status == 502
    rejected = lookup(b, "/messages/k-rejected")
    assert rejected["state"] == "rejected"
    assert rejected["refused"]["nobody@example.com"]["code"] == 550

    server.fail_mail_from("451 4.3.0 Try later", times=1)
    assert post(a, "k-failed", MESSAGE).status == 503
    failed = lookup(b, "/messages/k-failed")
    assert (failed["state"], failed["last_error"]["smtp_code"]) == ("failed", 451)

    # A failure never stops the retry, on either instance; the record then says sent.
    server.clear_faults()
    assert post(b, "k-failed", MESSAGE).json()["status"] == "sent"
    again = lookup(a, "/messages/k-failed")
    assert (again["state"], again["attempts"]) == ("sent", 2)
    assert "last_error" not in again


def test_in_flight_is_sending_and_the_lookup_needs_the_credential(
    instances: tuple[FunctionsFrameworkProcess, FunctionsFrameworkProcess],
    server: SmtpTestServer,
    collection: str,
) -> None:
    a, b = instances
    holder = other_instance(collection).claim("pubsub:evt-in-flight")
    assert isinstance(holder, Claimed)
    told = lookup(b, "/messages/evt-in-flight?trigger=pubsub")
    assert (told["state"], told["attempts"], told["message_id"]) == ("sending", 1, None)
    assert lookup(a, "/messages/evt-in-flight")["error"] == "not_found"  # http: namespace

    missing = b.request("GET", "/messages/evt-in-flight?trigger=pubsub")
    assert (missing.status, missing.json()) == (401, {"error": "unauthorized"})
    wrong = b.request(
        "GET", "/messages/evt-in-flight?trigger=pubsub", headers={"X-Webhook-Token": "guess"}
    )
    assert wrong.status == 403
    assert TOKEN not in json.dumps([a.output(), b.output()])
    assert server.messages == []
