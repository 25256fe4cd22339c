"""Fixtures for the idempotency tests: a controllable clock and a ledger of each store."""

from __future__ import annotations

import uuid

import pytest

from sender.ledger_memory import MemoryLedger
from tests.support.fakes import FakeClock
from tests.support.ledgers import LEASE_S, TTL_S, LedgerFactory


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
