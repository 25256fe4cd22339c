"""Which ledger key a webhook notification gets: a caller's retry joins the first delivery, a
reminder posted later is a new email."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sender import instance
from sender.config import Settings
from sender.webhook_delivery import ledger_key
from tests.support.fakes import FakeClock

WINDOW = 600.0
SETTINGS = Settings.defaults(webhook_retry_window_s=WINDOW)


@pytest.fixture(autouse=True)
def _cold_instance() -> Iterator[None]:
    instance.reset()
    yield
    instance.reset()


def _sent(key: str) -> None:
    """Record `key` as delivered, as send_once does after a send."""
    ledger = instance.ledger(SETTINGS)
    answer = ledger.claim(key)
    claim = getattr(answer, "claim")  # noqa: B009 - Claimed: a fresh ledger always grants
    ledger.complete(claim, message_id="<m@example.com>", accepted=["a@example.com"], refused={})


def test_a_retry_within_the_window_joins_the_first_delivery() -> None:
    clock = FakeClock(now=100 * WINDOW + WINDOW - 5)  # 5 s before a window ends
    first = ledger_key("grafana:abc", SETTINGS, clock=clock)
    assert first.startswith("webhook:grafana:abc:")
    _sent(first)
    clock.advance(10)  # the retry lands in the next window
    assert ledger_key("grafana:abc", SETTINGS, clock=clock) == first
    clock.advance(WINDOW - 10)  # still less than two windows on
    assert ledger_key("grafana:abc", SETTINGS, clock=clock) == first


def test_a_reminder_two_windows_later_is_a_new_email() -> None:
    clock = FakeClock(now=100 * WINDOW)
    first = ledger_key("grafana:abc", SETTINGS, clock=clock)
    _sent(first)
    clock.advance(2 * WINDOW)
    later = ledger_key("grafana:abc", SETTINGS, clock=clock)
    assert later != first


def test_nothing_delivered_before_means_this_windows_key() -> None:
    clock = FakeClock(now=100 * WINDOW + 1)
    assert ledger_key("grafana:abc", SETTINGS, clock=clock) == "webhook:grafana:abc:100"
    assert ledger_key("grafana:other", SETTINGS, clock=clock) == "webhook:grafana:other:100"
