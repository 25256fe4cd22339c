"""A Firestore that accepts connections and never answers must not hold a send hostage.

Every ledger operation carries its own deadline: the send path waits for the ledger before it
talks SMTP, and a Cloud Run request or a Pub/Sub ack deadline is not much longer than a minute.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar

import grpc
import pytest

from sender.errors import LedgerUnavailableError
from sender.ledger import Attempt, Claim
from sender.ledger_firestore import FirestoreLedger
from tests.support.ledgers import LEASE_S
from tests.support.lifecycle import StartStop

# Far above the ledger's own budget (DEFAULT_TIMEOUT_S) plus scheduling slack on a loaded 2-core
# runner, and far below the 60 s (and 5 attempts) of the client library's defaults.
BOUND_S = 40.0


class SilentServer(StartStop):
    """Listens on 127.0.0.1, accepts every connection, reads nothing and writes nothing."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(connection)  # kept open, never answered

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._listener.close()


class ExistsThenSilentFirestore(StartStop):
    """A gRPC Firestore on 127.0.0.1: every Commit fails ALREADY_EXISTS, nothing else is answered.

    So a claim's first `create` says the key is known, and whatever the ledger does next to learn
    the record (a read, or a transaction's BeginTransaction) hangs until the caller's own deadline.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers([_Handlers(self._stopping).generic()])
        self._port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # frees the handlers still waiting
        self._server.stop(grace=None).wait(timeout=5)


class _Handlers:
    """The RPCs a ledger uses; any other method is left UNIMPLEMENTED (fails fast)."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def _hang(self, context: grpc.ServicerContext) -> None:
        left = context.time_remaining()
        self._stopping.wait(timeout=min(left if left is not None else 120.0, 120.0))
        context.abort(grpc.StatusCode.UNAVAILABLE, "the test server is stopping")

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._hang(context)
        return b""  # not reached: abort raises

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._hang(context)
        yield b""  # not reached: abort raises

    def _exists(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.ALREADY_EXISTS, "Document already exists")
        return b""  # not reached: abort raises

    def generic(self) -> Any:
        hang = grpc.unary_unary_rpc_method_handler(self._unary)
        return grpc.method_handlers_generic_handler(
            "google.firestore.v1.Firestore",
            {
                "Commit": grpc.unary_unary_rpc_method_handler(self._exists),
                "BatchGetDocuments": grpc.unary_stream_rpc_method_handler(self._stream),
                "GetDocument": hang,
                "BeginTransaction": hang,
                "Rollback": hang,
            },
        )


_Fake = TypeVar("_Fake", SilentServer, ExistsThenSilentFirestore)


def _as_firestore(server: _Fake, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Fake]:
    """Run *server* as this process's Firestore (the client reads the variables)."""
    with server:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", server.address)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-test")
        yield server


@pytest.fixture
def silent_firestore(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    """A Firestore that answers nothing at all."""
    yield from _as_firestore(SilentServer(), monkeypatch)


@pytest.fixture
def key_known_then_silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[ExistsThenSilentFirestore]:
    """A Firestore that says every key exists, then answers nothing."""
    yield from _as_firestore(ExistsThenSilentFirestore(), monkeypatch)


def _ledger() -> FirestoreLedger:
    """A ledger on the fake Firestore the fixture put in this process's environment."""
    return FirestoreLedger(collection="hung", project="demo-test", lease_s=LEASE_S, ttl_s=3_600)


def test_claim_on_a_firestore_that_never_answers_fails_in_bounded_time(
    silent_firestore: SilentServer,
) -> None:
    """Nothing answers at all: not the create, not anything after it."""
    ledger = _ledger()
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError) as caught:
        ledger.claim("event-hung")
    assert time.monotonic() - started < BOUND_S
    assert caught.value.http_status == 503
    assert caught.value.redeliver


def test_claim_of_a_known_key_on_a_firestore_that_then_hangs_fails_in_bounded_time(
    key_known_then_silent: ExistsThenSilentFirestore,
) -> None:
    """The create answers "exists"; deciding on the stored record then meets a hung Firestore."""
    ledger = _ledger()
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError) as caught:
        ledger.claim("event-known")
    assert time.monotonic() - started < BOUND_S
    assert caught.value.redeliver


def test_outcome_and_release_on_a_firestore_that_never_answers_fail_in_bounded_time(
    silent_firestore: SilentServer,
) -> None:
    ledger = _ledger()
    claim = Claim(
        key="event-hung",
        token="t",
        lease_until=time.time() + LEASE_S,
        owed=None,
        message_id=None,
        accepted=(),
        refused={},
        taken_over=False,
        attempt=1,
    )
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError):
        ledger.record_progress(
            claim,
            Attempt(message_id="<m@x.test>", accepted=["a@x.test"], refused={}, owed=["b@x.test"]),
        )
    with pytest.raises(LedgerUnavailableError):
        ledger.release(claim)
    assert time.monotonic() - started < BOUND_S
