"""The in-memory idempotency ledger: one per instance, bounded, no dependencies.

Catches redeliveries that land on the same warm instance; `IDEMPOTENCY_STORE=firestore` is what
makes exactly-once hold across instances.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from sender.ledger import (
    Attempt,
    Claim,
    ClaimResult,
    Clock,
    Entry,
    Failure,
    Ledger,
    decide_claim,
    holds,
    merge_outcome,
    new_token,
    released,
)


class MemoryLedger(Ledger):
    """Per instance: catches redeliveries that land on the same warm instance, nothing more.

    Bounded: at most `max_entries` records, least recently used evicted first, expired ones
    ignored and dropped when met. One lock makes each operation atomic across worker threads.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        lease_s: float,
        ttl_s: float,
        clock: Clock = time.time,
    ) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._lease_s = lease_s
        self._ttl_s = ttl_s
        self._clock = clock

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _get(self, key: str, now: float) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expire_at <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _put(self, entry: Entry) -> None:
        self._entries[entry.key] = entry
        self._entries.move_to_end(entry.key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def claim(self, key: str) -> ClaimResult:
        with self._lock:
            now = self._clock()
            result, written = decide_claim(
                self._get(key, now),
                key=key,
                token=new_token(),
                now=now,
                lease_s=self._lease_s,
                ttl_s=self._ttl_s,
            )
            if written is not None:
                self._put(written)
            return result

    def lookup(self, key: str) -> Entry | None:
        with self._lock:
            return self._get(key, self._clock())

    def now(self) -> float:
        return self._clock()

    def record_progress(self, claim: Claim, attempt: Attempt) -> Entry:
        with self._lock:
            now = self._clock()
            entry = merge_outcome(
                self._get(claim.key, now), claim, attempt, now=now, ttl_s=self._ttl_s
            )
            self._put(entry)
            return entry

    def release(self, claim: Claim, failure: Failure | None = None) -> None:
        with self._lock:
            entry = self._get(claim.key, self._clock())
            if entry is None or not holds(entry, claim):
                return  # someone took over meanwhile: their claim is not ours to drop
            self._put(released(entry, failure))
