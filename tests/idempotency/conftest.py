"""Fixtures for the idempotency tests: emulators, a controllable clock, ledgers of each store."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from sender.ledger import Ledger
from sender.ledger_memory import MemoryLedger
from tests.emulators.fixtures import (
    firestore_emulator,
    pubsub_emulator,
    report_startup_times,
)
from tests.emulators.gcloud import Emulator

__all__ = ["firestore_emulator", "pubsub_emulator"]

LEASE_S = 60.0
TTL_S = 3_600.0


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_startup_times(terminalreporter)


class FakeClock:
    """Seconds since the epoch that move only when a test says so: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


LedgerFactory = Callable[[], Ledger]


@pytest.fixture
def firestore_env(firestore_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The emulator's variables in this process's environment (the client reads them)."""
    env = {**firestore_emulator.env(), "GOOGLE_CLOUD_PROJECT": "demo-test"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


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
