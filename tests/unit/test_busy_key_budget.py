"""A repeat of a busy key waits for the first delivery out of its own send deadline: one budget
covers the wait and the send, so the request never ends later than `SEND_DEADLINE_S` after it
began (the function's timeout is set from that)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sender import exactly_once, instance
from sender.config import Settings
from sender.errors import TransientError
from sender.ledger import Claimed, Failure
from sender.message import parse_request
from sender.outcome import SendResult

DEADLINE_S = 10.0
HELD_S = 1.0  # the first delivery gives the key up (a transient failure) after this long


def test_the_wait_for_a_busy_key_is_taken_from_the_send_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance.reset()
    settings = Settings.defaults(send_deadline_s=DEADLINE_S)
    given: list[float | None] = []

    def send_email(*_: Any, deadline_s: float | None = None, **__: Any) -> SendResult:
        given.append(deadline_s)
        return SendResult("<id@example.com>", ["ops@example.com"])

    monkeypatch.setattr(exactly_once, "send_email", send_email)
    first = instance.ledger(settings).claim("http:busy")
    assert isinstance(first, Claimed)
    release = threading.Timer(
        HELD_S,
        instance.ledger(settings).release,
        args=(first.claim, Failure("failed", "unavailable", "451 try later")),
    )
    release.start()
    request = parse_request({"to": "ops@example.com", "subject": "s", "text": "t"})
    try:
        delivery = exactly_once.send_once(request, settings, ledger_key="http:busy")
    finally:
        release.cancel()
        instance.reset()

    assert delivery.result.accepted == ["ops@example.com"]
    [budget] = given
    assert budget is not None
    assert budget <= DEADLINE_S - HELD_S  # what was left after the wait, not a fresh deadline


def test_without_a_wait_the_send_gets_the_whole_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    instance.reset()
    settings = Settings.defaults(send_deadline_s=DEADLINE_S)
    given: list[float | None] = []

    def send_email(*_: Any, deadline_s: float | None = None, **__: Any) -> SendResult:
        given.append(deadline_s)
        raise TransientError("451 try later")

    monkeypatch.setattr(exactly_once, "send_email", send_email)
    request = parse_request({"to": "ops@example.com", "subject": "s", "text": "t"})
    try:
        with pytest.raises(TransientError):
            exactly_once.send_once(request, settings, ledger_key="http:fresh")
    finally:
        instance.reset()
    [budget] = given
    assert budget is not None
    assert DEADLINE_S - 1.0 < budget <= DEADLINE_S
