"""Session-scoped pytest fixtures for the gcloud emulators.

Import them into a conftest (`from tests.emulators.fixtures import firestore_emulator`). Each
emulator starts once per session, on a free loopback port, and is stopped by its recorded process
group at the end, also when tests fail. Where gcloud, java or the component is missing the tests
skip with the reason; under `CI=true` that is a failure instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.emulators.gcloud import (
    Emulator,
    EmulatorUnavailableError,
    Kind,
    check_installed,
    start,
)

# kind -> start-up seconds, for the terminal summary (see `report_startup_times`).
STARTUP_TIMES: dict[str, float] = {}


def require(kind: Kind) -> None:
    """Skip (or, under CI=true, fail) when this emulator cannot run here."""
    try:
        check_installed(kind)
    except EmulatorUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the {kind} emulator is unavailable: {exc}")
        pytest.skip(f"{kind} emulator unavailable: {exc}")


def _run(kind: Kind, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    require(kind)
    emulator = start(kind, tmp_path_factory.mktemp(f"{kind}-emulator"))
    STARTUP_TIMES[kind] = emulator.startup_s
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from _run("firestore", tmp_path_factory)


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from _run("pubsub", tmp_path_factory)


def report_startup_times(terminalreporter: pytest.TerminalReporter) -> None:
    """Call from a `pytest_terminal_summary` hook: one line per emulator started."""
    for kind, seconds in sorted(STARTUP_TIMES.items()):
        terminalreporter.write_line(f"{kind} emulator started in {seconds:.1f} s")
