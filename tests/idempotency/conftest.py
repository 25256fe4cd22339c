"""Fixtures for the idempotency tests: a controllable clock and a ledger of each store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sender.ledger_memory import MemoryLedger
from tests.support.emulators import Emulator
from tests.support.env import SenderEnv
from tests.support.fakes import FakeClock
from tests.support.ff_process import FunctionsFrameworkProcess
from tests.support.ledgers import LEASE_S, TTL_S, LedgerFactory
from tests.support.pubsub_rest import PushTopic
from tests.support.smtp_server import SmtpTestServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", pytest.param("firestore", marks=pytest.mark.emulator)])
def make_ledger(request: pytest.FixtureRequest, clock: FakeClock) -> LedgerFactory:
    """A factory of ledgers sharing one store, as separate instances (or separate clients) would.

    Memory ledgers are shared per instance by design, so the factory returns the same one; each
    Firestore ledger gets its own client on a collection unique to the test.
    """
    if request.param == "memory":
        shared = MemoryLedger(max_entries=1_000, lease_s=LEASE_S, ttl_s=TTL_S, clock=clock)
        return lambda: shared
    request.getfixturevalue("firestore_env")
    from sender.ledger_firestore import FirestoreLedger

    collection = f"ledger-test-{uuid.uuid4().hex[:12]}"
    return lambda: FirestoreLedger(
        collection=collection, project="demo-test", lease_s=LEASE_S, ttl_s=TTL_S, clock=clock
    )


@pytest.fixture
def function(
    server: SmtpTestServer, sender_env: SenderEnv, tmp_path: Path
) -> Iterator[FunctionsFrameworkProcess]:
    """The Pub/Sub trigger as a functions-framework process, sending to ``server``."""
    with FunctionsFrameworkProcess(
        "send_pubsub", "cloudevent", env=sender_env.process_env(), log_dir=tmp_path
    ) as process:
        yield process


@pytest.fixture
def topic(pubsub_emulator: Emulator, function: FunctionsFrameworkProcess) -> Iterator[PushTopic]:
    """A topic on the emulator whose push subscription delivers to ``function``."""
    push = PushTopic(pubsub_emulator, endpoint=function.url)
    try:
        yield push
    finally:
        push.delete()  # before the function stops, so nothing is pushed into a closed port
