"""Chaos mode: the dev SMTP server misbehaves on purpose, chosen by recipient.

Turned on with ``DEV_SMTP_CHAOS=1`` (in `.env`), so that a developer can watch on the outbox page
what a real provider's bad day does to a send. The recipient's local part picks the fault:

- ``reject-*@``: ``RCPT`` is answered ``550 5.1.1`` — refused for good. With other recipients the
  send is ``partial``; alone, it is a ``502``.
- ``defer-*@``: ``RCPT`` is answered ``450 4.2.1`` the first ``DEV_SMTP_CHAOS_DEFERRALS`` times
  (default 1) for that address, then accepted: the caller's retry with the same idempotency key (or
  a Pub/Sub redelivery of the same event) sends to it alone.
- ``slow-*@``: accepted, but the answer to the message's final dot comes
  ``DEV_SMTP_CHAOS_SLOW_S`` seconds (default 15) late. The message is stored first, as a real
  server that queued it would: with ``SEND_DEADLINE_S`` below the delay, the function gives up
  (``503``) although the message arrived, and a retry sends a second copy with the same Message-ID.

Every other recipient is accepted as usual.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

REJECT_PREFIX = "reject-"
DEFER_PREFIX = "defer-"
SLOW_PREFIX = "slow-"
REJECT_REPLY = "550 5.1.1 Recipient rejected (dev chaos: reject-*)"
DEFER_REPLY = "450 4.2.1 Mailbox busy, try again later (dev chaos: defer-*)"
DEFAULT_SLOW_S = 15.0
DEFAULT_DEFERRALS = 1


@dataclass(frozen=True)
class ChaosSettings:
    """How the chaos rules behave (see the module docstring)."""

    slow_s: float = DEFAULT_SLOW_S
    deferrals: int = DEFAULT_DEFERRALS

    def describe(self) -> list[str]:
        """The banner lines that tell a developer which recipients do what."""
        times = "once" if self.deferrals == 1 else f"{self.deferrals} times"
        return [
            "  reject-*@  -> 550 at RCPT (a partial send, or 502 when no one is left)",
            f"  defer-*@   -> 450 at RCPT {times} per address, then accepted (retry it)",
            f"  slow-*@    -> the final dot answered after {self.slow_s:g} s (stored first)",
        ]


def _local_part(address: str) -> str:
    return address.rpartition("@")[0].lower()


class Chaos:
    """The rules at work: what to answer each recipient, and how long to hold the final reply.

    Deferrals are counted per address over the server's life (one dev stack run), from any
    connection, so the retry that follows a deferral gets through.
    """

    def __init__(self, settings: ChaosSettings) -> None:
        self.settings = settings
        self._deferred: Counter[str] = Counter()
        self._lock = threading.Lock()

    def rcpt_reply(self, address: str) -> str | None:
        """The refusal for *address*, or None to accept it."""
        local = _local_part(address)
        if local.startswith(REJECT_PREFIX):
            return REJECT_REPLY
        if local.startswith(DEFER_PREFIX):
            with self._lock:
                if self._deferred[address.lower()] < self.settings.deferrals:
                    self._deferred[address.lower()] += 1
                    return DEFER_REPLY
        return None

    def reply_delay_s(self, recipients: Iterable[str]) -> float:
        """Seconds to hold the answer to the final dot: the slow delay if any recipient asks."""
        if any(_local_part(r).startswith(SLOW_PREFIX) for r in recipients):
            return self.settings.slow_s
        return 0.0
