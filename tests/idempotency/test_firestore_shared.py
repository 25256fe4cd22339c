"""Real parts: function processes sharing one ledger in the Firestore emulator.

Each functions-framework process is a separate instance: nothing is shared between them but the
Firestore emulator, exactly as between Cloud Run instances.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from sender.ledger import Claimed
from sender.ledger_firestore import FirestoreLedger
from sender.message import parse_request
from sender.mime import make_message_id, message_id_seed
from tests.support.emulators import Emulator
from tests.support.env import SenderEnv
from tests.support.ff_process import FunctionsFrameworkProcess, message_is, wait_for_log
from tests.support.ledgers import LEASE_S
from tests.support.load import all_at_once
from tests.support.pubsub import PROJECT
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.emulator, pytest.mark.process]

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "Disk 91% on db-1", "text": "t"}

StartFunction = Callable[[str], FunctionsFrameworkProcess]


@pytest.fixture
def collection() -> str:
    return f"idempotency-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def shared_env(
    server: SmtpTestServer,
    sender_env: SenderEnv,
    firestore_emulator: Emulator,
    collection: str,
) -> dict[str, str]:
    """The function's variables with the Firestore ledger; also set here, for seeding claims."""
    sender_env.set(
        **firestore_emulator.env(),
        IDEMPOTENCY_STORE="firestore",
        IDEMPOTENCY_COLLECTION=collection,
        IDEMPOTENCY_LEASE_S=str(LEASE_S),
    )
    return sender_env.process_env()


@pytest.fixture
def start_function(shared_env: dict[str, str], tmp_path: Path) -> Iterator[StartFunction]:
    with ExitStack() as stack:

        def start(target: str) -> FunctionsFrameworkProcess:
            signature = "cloudevent" if target == "send_pubsub" else "http"
            process = FunctionsFrameworkProcess(
                target, signature, env=shared_env, log_dir=tmp_path / uuid.uuid4().hex[:6]
            )
            return stack.enter_context(process)

        yield start


def seed_ledger(collection: str, *, clock: Callable[[], float] = time.time) -> FirestoreLedger:
    """Another instance's view of the shared ledger (same project and collection)."""
    return FirestoreLedger(
        collection=collection, project=PROJECT, lease_s=LEASE_S, ttl_s=7 * 86_400, clock=clock
    )


def test_two_instances_receiving_one_event_at_once_send_one_email(
    start_function: StartFunction, server: SmtpTestServer
) -> None:
    instances = [start_function("send_pubsub"), start_function("send_pubsub")]
    # The winner lingers in DATA, so the other delivery surely meets its claim mid-send.
    server.stall("data", 1.5)
    answers = all_at_once(
        lambda instance: instance.post_cloudevent(MESSAGE, event_id="evt-race"), instances
    )

    # The loser waits (briefly, through the shared ledger) for the winner's send to finish,
    # then acks as a duplicate instead of asking to be redelivered.
    assert sorted(a.status for a in answers) == [200, 200]
    [duplicate] = wait_for_log(
        instances, message_is("duplicate delivery; the email was already sent")
    )
    assert duplicate["event_id"] == "evt-race"

    # A later redelivery, to either instance: acked, nothing sent.
    server.clear_faults()
    for instance in instances:
        assert instance.post_cloudevent(MESSAGE, event_id="evt-race").status == 200
    assert len(server.wait_for_messages(1)) == 1
    wait_for_log(instances, message_is("duplicate delivery; the email was already sent"), count=3)
    assert len(server.messages) == 1


def test_claim_of_a_crashed_instance_is_taken_over_after_its_lease(
    start_function: StartFunction, server: SmtpTestServer, collection: str
) -> None:
    an_hour_ago = time.time() - 3600
    crashed = seed_ledger(collection, clock=lambda: an_hour_ago).claim("pubsub:evt-crashed")
    assert isinstance(crashed, Claimed)  # its lease ran out 59 minutes ago
    instance = start_function("send_pubsub")

    assert instance.post_cloudevent(MESSAGE, event_id="evt-crashed").status == 200
    [delivered] = server.wait_for_messages(1)
    # The resend carries the Message-ID the crashed instance's email had (same key, same
    # message), so a copy it got out before dying collapses with this one.
    seed = message_id_seed("pubsub:evt-crashed", parse_request(MESSAGE))
    assert delivered.message["Message-ID"] == make_message_id("example.com", seed)
    [takeover] = wait_for_log(
        instance, message_is("took over an expired claim: an earlier attempt did not finish")
    )
    assert takeover["event_id"] == "evt-crashed"
    assert takeover["attempt"] == 2


def test_live_claim_of_another_instance_is_left_alone(
    start_function: StartFunction, server: SmtpTestServer, collection: str
) -> None:
    holder = seed_ledger(collection).claim("pubsub:evt-held")
    assert isinstance(holder, Claimed)
    instance = start_function("send_pubsub")

    assert instance.post_cloudevent(MESSAGE, event_id="evt-held").status == 500  # redeliver later
    wait_for_log(
        instance, message_is("another delivery of this key is sending right now; retry later")
    )
    assert server.messages == []


def test_http_key_is_deduplicated_across_instances(
    start_function: StartFunction, server: SmtpTestServer
) -> None:
    first, second = start_function("send_http"), start_function("send_http")
    payload = {**MESSAGE, "idempotency_key": "grafana-alert-991"}

    sent = first.post_json("/", payload)
    assert sent.status == 200, sent.text
    assert sent.json()["status"] == "sent"
    again = second.post_json("/", payload)
    assert again.status == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["message_id"] == sent.json()["message_id"]
    assert len(server.wait_for_messages(1)) == 1
    wait_for_log(second, message_is("duplicate delivery; the email was already sent"))
    assert len(server.messages) == 1
