"""A load run that counts: one email per key, none lost, under concurrency and redelivery.

Both triggers run as real functions-framework processes (one worker, 8 threads, the memory
ledger) in front of a TLS + AUTH SMTP test server; clients are threads with keep-alive connections
(`tests.support.load`).

- HTTP: ``CLIENTS`` (16) concurrent clients send ``HTTP_KEYS`` keyed requests; a quarter of the
  keys are sent twice at the same moment (adjacent in the work queue, so two clients race them),
  and a tenth once more after everything answered. A ``503`` (the other copy of the key is in
  flight) is retried after the pass, as a webhook sender would.
- Pub/Sub: ``EVENTS`` push envelopes to ``send_pubsub``; 30% are redelivered, half of them while
  the first delivery is still running, half after it was acked. A nack (500) is delivered again
  after the pass, as Pub/Sub would.

Counts: ``HTTP_KEYS`` = 2,000 and ``EVENTS`` = 1,000 when ``CI=true`` or ``LOAD_FULL=1`` (the
issue's numbers; about 2 minutes on 2 cores), 200 and 100 otherwise so a developer's ``pytest``
stays quick. Select or skip the run with ``-m load`` / ``-m "not load"``.

It asserts counts only — every key sent exactly once at the SMTP server, none lost, each repeat
answered with the first send's outcome, every nack explained by a busy key — and prints requests/s
and p50/p95 for the benchmark record, never asserting a time.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import pubsub
from tests.support.checks import assert_no_secret, records_at
from tests.support.env import SenderEnv
from tests.support.ff_process import FunctionsFrameworkProcess
from tests.support.load import Answer, Connection, Timings, run_concurrently
from tests.support.smtp_server import SmtpTestServer

pytestmark = [pytest.mark.load, pytest.mark.process]

FULL = os.environ.get("CI") == "true" or os.environ.get("LOAD_FULL") == "1"
CLIENTS = 16
HTTP_KEYS = 2_000 if FULL else 200
EVENTS = 1_000 if FULL else 100
RETRY_ROUNDS = 5
BUSY_DETAIL = "a delivery with this idempotency key is in progress"
KEY_HEADER = "X-Load-Key"
PROCESS_ENV = {"THREADS": "8"}  # one worker: the memory ledger is per process


def _message(key: str) -> dict[str, Any]:
    return {
        "to": "ops@example.com",
        "subject": f"load {key}",
        "text": f"load run message {key}",
        "headers": {KEY_HEADER: key},
    }


def _copies_per_key(server: SmtpTestServer, expected: int) -> Counter[str]:
    delivered = server.wait_for_messages(expected, timeout=60)
    return Counter(str(m.message[KEY_HEADER]) for m in delivered)


class Answers:
    """Every answer per key, from any thread."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[Answer]] = defaultdict(list)
        self._lock = threading.Lock()

    def add(self, key: str, answer: Answer) -> None:
        with self._lock:
            self.by_key[key].append(answer)

    def all(self) -> list[Answer]:
        return [a for answers in self.by_key.values() for a in answers]


@pytest.fixture
def load_env(sender_env: SenderEnv, smtp_ssl: SmtpTestServer) -> dict[str, str]:
    sender_env.use(smtp_ssl)
    return {**sender_env.process_env(), **PROCESS_ENV}


@pytest.fixture
def http_function(load_env: dict[str, str], tmp_path: Path) -> Iterator[FunctionsFrameworkProcess]:
    with FunctionsFrameworkProcess("send_http", env=load_env, log_dir=tmp_path) as ff:
        yield ff


@pytest.fixture
def event_function(load_env: dict[str, str], tmp_path: Path) -> Iterator[FunctionsFrameworkProcess]:
    with FunctionsFrameworkProcess(
        "send_pubsub", "cloudevent", env=load_env, log_dir=tmp_path
    ) as ff:
        yield ff


def _print(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    with capsys.disabled():
        print()
        for line in lines:
            print(f"[load] {line}")


def test_http_keys_are_sent_exactly_once_by_16_racing_clients(
    http_function: FunctionsFrameworkProcess,
    smtp_ssl: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = [f"http-{index:05d}" for index in range(HTTP_KEYS)]
    racing = set(keys[::4])
    jobs = [copy for key in keys for copy in ([key, key] if key in racing else [key])]
    answers = Answers()
    timings = Timings("HTTP keyed sends (first pass)")
    retry_timings = Timings("HTTP retries of the 503s, then late repeats")
    to_retry: list[str] = []

    def sender(timed: Timings) -> Callable[[Connection, str], None]:
        def send(connection: Connection, key: str) -> None:
            started = time.monotonic()
            answer = connection.post_json("/", {**_message(key), "idempotency_key": key})
            timed.add(time.monotonic() - started)
            answers.add(key, answer)
            if answer.status == 503:
                to_retry.append(key)  # list.append is atomic: no lock needed

        return send

    run_concurrently(jobs, CLIENTS, http_function.port, sender(timings))
    timings.stop()
    busy = [a for a in answers.all() if a.status == 503]
    retry_timings.started = time.monotonic()
    for _ in range(RETRY_ROUNDS):  # each 503'd request again, as a webhook sender does
        pending, to_retry[:] = list(to_retry), []
        run_concurrently(pending, CLIENTS, http_function.port, sender(retry_timings))
    assert to_retry == []
    late = keys[::10]
    run_concurrently(late, CLIENTS, http_function.port, sender(retry_timings))
    retry_timings.stop()

    every = answers.all()
    assert {a.status for a in every} <= {200, 503}, Counter(a.status for a in every)
    assert all(a.body["detail"] == BUSY_DETAIL for a in every if a.status == 503)
    for key in keys:
        ok = [a.body for a in answers.by_key[key] if a.status == 200]
        sent = [body for body in ok if body["status"] == "sent"]
        assert len(sent) == 1, (key, ok)
        assert {body["status"] for body in ok} <= {"sent", "duplicate"}, (key, ok)
        assert {body["message_id"] for body in ok} == {sent[0]["message_id"]}, (key, ok)
    for key in late:
        assert answers.by_key[key][-1].body["status"] == "duplicate", key
    assert _copies_per_key(smtp_ssl, len(keys)) == Counter(keys)
    assert len(smtp_ssl.messages) == len(keys)
    records = http_function.log_records()
    assert records_at(records, "ERROR") == []
    assert_no_secret(http_function.output())

    _print(
        capsys,
        f"{len(keys)} keys, {len(racing)} raced by a second client, {len(late)} repeated late;"
        f" {len(busy)} answered 503 (key in flight; Retry-After"
        f" {sorted(Counter(a.retry_after for a in busy).items())}) and were retried",
        timings.summary(),
        retry_timings.summary(),
    )


def _push(connection: Connection, event_id: str) -> Answer:
    headers, body = pubsub.push_envelope(_message(event_id), message_id=event_id)
    return connection.post(pubsub.PUSH_PATH, body, headers)


def test_pubsub_events_are_sent_exactly_once_with_30_percent_redelivered(
    event_function: FunctionsFrameworkProcess,
    smtp_ssl: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = [f"{9_000_000 + index}" for index in range(EVENTS)]
    at_once = set(events[0::20] + events[1::20] + events[2::20])  # 15%: while the first runs
    later = events[10::20] + events[11::20] + events[12::20]  # 15%: after the first was acked
    jobs = [copy for e in events for copy in ([e, e] if e in at_once else [e])]
    answers = Answers()
    timings = Timings("Pub/Sub pushes (first pass)")
    redelivery_timings = Timings("Pub/Sub redeliveries (nacked, then after the ack)")
    nacked: list[str] = []

    def deliverer(timed: Timings) -> Callable[[Connection, str], None]:
        def deliver(connection: Connection, event_id: str) -> None:
            started = time.monotonic()
            answer = _push(connection, event_id)
            timed.add(time.monotonic() - started)
            answers.add(event_id, answer)
            if answer.status >= 300:
                nacked.append(event_id)

        return deliver

    run_concurrently(jobs, CLIENTS, event_function.port, deliverer(timings))
    timings.stop()
    redelivery_timings.started = time.monotonic()
    for _ in range(RETRY_ROUNDS):  # Pub/Sub delivers every nacked delivery again
        pending, nacked[:] = list(nacked), []
        run_concurrently(pending, CLIENTS, event_function.port, deliverer(redelivery_timings))
    assert nacked == []
    run_concurrently(later, CLIENTS, event_function.port, deliverer(redelivery_timings))
    redelivery_timings.stop()

    every = answers.all()
    nacks = [a for a in every if a.status >= 300]
    assert {a.status for a in nacks} <= {500}, Counter(a.status for a in every)
    assert all(any(a.status < 300 for a in answers.by_key[e]) for e in events)  # all acked
    assert _copies_per_key(smtp_ssl, len(events)) == Counter(events)
    assert len(smtp_ssl.messages) == len(events)
    records = event_function.log_records()
    assert records_at(records, "ERROR") == []
    messages = Counter(str(r.get("message")) for r in records)
    # Every nack was a busy key (the other copy was sending), nothing else.
    assert messages["another delivery of this key is sending right now; retry later"] == len(nacks)
    assert messages["email sent"] == len(events)
    acked = sum(a.status < 300 for a in every)
    assert messages["duplicate delivery; the email was already sent"] == acked - len(events)
    assert_no_secret(event_function.output())

    _print(
        capsys,
        f"{len(events)} events, {len(at_once)} redelivered concurrently, {len(later)} redelivered"
        f" after the ack; {len(nacks)} nacked (event in flight) and delivered again",
        timings.summary(),
        redelivery_timings.summary(),
    )
