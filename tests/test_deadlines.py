"""No send outlives its deadline, even against a server that answers one byte at a time."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Self

import grpc
import pytest

from tests.support.checks import assert_nothing_sent, assert_retryable
from tests.support.env import SenderEnv
from tests.support.lifecycle import StartStop


class Tarpit(StartStop):
    """Accepts SMTP connections and drips its greeting one byte every `drip_s`, forever: each
    read succeeds well inside any per-read timeout, so only a session deadline can end it."""

    def __init__(self, drip_s: float = 0.2) -> None:
        self._drip_s = drip_s
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            while not self._stop.is_set():
                try:
                    conn.sendall(b"2")
                except OSError:
                    return
                time.sleep(self._drip_s)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    with Tarpit() as pit:
        yield pit


def test_a_dripping_server_is_cut_off_at_the_send_deadline(
    http_client: Any, sender_env: SenderEnv, tarpit: Tarpit
) -> None:
    sender_env.store(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": tarpit.port,
                "security": "none",
                "from": "Alerts <alerts@example.com>",
            }
        )
    )
    sender_env.set(SEND_DEADLINE_S="2", SMTP_TIMEOUT_S="1")
    started = time.monotonic()
    response = http_client.post("/", json={"to": "ops@example.com", "subject": "s", "text": "t"})
    elapsed = time.monotonic() - started

    assert_retryable(response)
    assert "deadline" in response.get_json()["detail"]
    # Generous: the point is "about the deadline", not "until the server gives up" (never).
    assert elapsed < 15, elapsed


@pytest.mark.parametrize("outage", ["unavailable", "hanging"])
def test_a_secret_manager_outage_ends_within_the_send_deadline(
    http_client: Any, server: Any, sender_env: SenderEnv, outage: str
) -> None:
    """The secret read's retries come out of SEND_DEADLINE_S, not a budget of their own."""
    if outage == "unavailable":
        sender_env.secret_manager.fail_next(None, grpc.StatusCode.UNAVAILABLE)
    else:
        sender_env.secret_manager.hang(30)
    sender_env.set(SEND_DEADLINE_S="3")
    started = time.monotonic()
    response = http_client.post("/", json={"to": "ops@example.com", "subject": "s", "text": "t"})
    elapsed = time.monotonic() - started

    assert_retryable(response)
    assert elapsed < 3 + 1.5, elapsed  # was ~11 s: the read had a 12 s budget of its own
    assert_nothing_sent(server)
