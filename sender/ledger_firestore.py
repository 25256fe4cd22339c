"""The idempotency ledger in Firestore: one document per key, shared by every instance.

Imported only when `IDEMPOTENCY_STORE=firestore` (see `sender.ledger.build_ledger`), so other
deployments never load the Firestore client. The client honours `FIRESTORE_EMULATOR_HOST` itself
(plaintext, anonymous credentials), which is how the tests run it.

A claim is a `create` (fails if the document exists) — one round-trip on the common path — and
only when the document exists does a transaction read it and decide (duplicate, busy or takeover).
Outcomes and releases are transactions too, so two holders never overwrite each other's progress.

Document ids are the SHA-256 of the key: keys are caller-supplied and may contain `/` or be long.
`expire_at` is a Timestamp for a TTL policy on the collection:

    gcloud firestore fields ttls update expire_at --collection-group=COLLECTION --enable-ttl
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore

from sender.config import DEFAULT_IDEMPOTENCY_TTL_S
from sender.ledger import (
    Claim,
    ClaimResult,
    Clock,
    Entry,
    decide_claim,
    holds,
    merge_outcome,
    new_token,
    released,
)
from sender.outcome import ConfigurationError, LedgerUnavailableError, Refusal

# Each ledger call must end well inside the send deadline; Firestore answers in milliseconds
# when healthy, so this only bounds an outage.
DEFAULT_TIMEOUT_S = 10.0

T = TypeVar("T")


def document_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _timestamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _seconds(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def to_document(entry: Entry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "owner": entry.owner,
        "lease_until": _timestamp(entry.lease_until),
        "done": entry.done,
        "message_id": entry.message_id,
        "accepted": list(entry.accepted),
        "refused": {addr: r.as_json() for addr, r in entry.refused.items()},
        "owed": None if entry.owed is None else list(entry.owed),
        "attempts": entry.attempts,
        "expire_at": _timestamp(entry.expire_at),
        "updated_at": firestore.SERVER_TIMESTAMP,  # for operators reading the collection
    }


def from_document(data: Mapping[str, Any]) -> Entry:
    owed = data.get("owed")
    return Entry(
        key=str(data.get("key", "")),
        owner=data.get("owner"),
        lease_until=_seconds(data.get("lease_until")),
        done=bool(data.get("done")),
        message_id=data.get("message_id"),
        accepted=tuple(data.get("accepted") or ()),
        refused={
            addr: Refusal(int(r.get("code", 0)), str(r.get("message", "")))
            for addr, r in (data.get("refused") or {}).items()
        },
        owed=None if owed is None else tuple(owed),
        attempts=int(data.get("attempts") or 0),
        expire_at=_seconds(data.get("expire_at")) or 0.0,
    )


def _unavailable(exc: Exception) -> LedgerUnavailableError:
    return LedgerUnavailableError(f"the idempotency ledger is unavailable: {type(exc).__name__}")


class FirestoreLedger:
    """`sender.ledger.Ledger` on a Firestore collection."""

    def __init__(
        self,
        *,
        collection: str,
        lease_s: float,
        ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
        project: str | None = None,
        clock: Clock = time.time,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client: firestore.Client | None = None,
    ) -> None:
        try:
            self._client = client or firestore.Client(project=project)
        except auth_exceptions.DefaultCredentialsError:
            raise ConfigurationError(
                "IDEMPOTENCY_STORE=firestore but no Google credentials were found"
            ) from None
        self._collection = self._client.collection(collection)
        self._lease_s = lease_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._timeout_s = timeout_s
        self._retry = api_retry.Retry(
            predicate=api_retry.if_transient_error, initial=0.1, maximum=1.0, timeout=timeout_s
        )

    def _ref(self, key: str) -> Any:
        return self._collection.document(document_id(key))

    def _read(self, ref: Any, transaction: Any = None) -> Entry | None:
        snapshot = ref.get(transaction=transaction, retry=self._retry, timeout=self._timeout_s)
        return from_document(snapshot.to_dict() or {}) if snapshot.exists else None

    def _guarded(self, operation: Callable[[], T]) -> T:
        """Run one ledger operation; an unreachable or contended Firestore is a transient error."""
        try:
            return operation()
        except (api_exceptions.GoogleAPIError, ValueError) as exc:
            # ValueError: the client gave up a transaction after its attempts (contention).
            raise _unavailable(exc) from exc

    def _in_transaction(self, body: Callable[[Any], T]) -> T:
        def run() -> T:
            result: T = firestore.transactional(body)(self._client.transaction())
            return result

        return self._guarded(run)

    def claim(self, key: str) -> ClaimResult:
        ref = self._ref(key)
        token = new_token()
        now = self._clock()
        result, written = decide_claim(
            None, key=key, token=token, now=now, lease_s=self._lease_s, ttl_s=self._ttl_s
        )
        assert written is not None  # an absent record is always claimed
        try:
            ref.create(to_document(written), retry=self._retry, timeout=self._timeout_s)
        except api_exceptions.AlreadyExists:
            pass  # the common race or a known key: decide on the stored record below
        except api_exceptions.GoogleAPIError as exc:
            raise _unavailable(exc) from exc
        else:
            return result

        def decide(transaction: Any) -> ClaimResult:
            now = self._clock()
            result, written = decide_claim(
                self._read(ref, transaction),
                key=key,
                token=token,
                now=now,
                lease_s=self._lease_s,
                ttl_s=self._ttl_s,
            )
            if written is not None:
                transaction.set(ref, to_document(written))
            return result

        return self._in_transaction(decide)

    def lookup(self, key: str) -> Entry | None:
        entry = self._guarded(lambda: self._read(self._ref(key)))
        if entry is None or entry.expire_at <= self._clock():
            return None
        return entry

    def record_progress(
        self,
        claim: Claim,
        *,
        message_id: str,
        accepted: Sequence[str],
        refused: Mapping[str, Refusal],
        owed: Sequence[str],
    ) -> Entry:
        ref = self._ref(claim.key)

        def merge(transaction: Any) -> Entry:
            entry = merge_outcome(
                self._read(ref, transaction),
                claim,
                now=self._clock(),
                ttl_s=self._ttl_s,
                message_id=message_id,
                accepted=accepted,
                refused=refused,
                owed=owed,
            )
            transaction.set(ref, to_document(entry))
            return entry

        return self._in_transaction(merge)

    def complete(
        self,
        claim: Claim,
        *,
        message_id: str,
        accepted: Sequence[str],
        refused: Mapping[str, Refusal],
    ) -> Entry:
        return self.record_progress(
            claim, message_id=message_id, accepted=accepted, refused=refused, owed=()
        )

    def release(self, claim: Claim) -> None:
        ref = self._ref(claim.key)

        def drop(transaction: Any) -> None:
            entry = self._read(ref, transaction)
            if entry is None or not holds(entry, claim):
                return  # someone took over meanwhile: their claim is not ours to drop
            remaining = released(entry)
            if remaining is None:
                transaction.delete(ref)
            else:
                transaction.set(ref, to_document(remaining))

        self._in_transaction(drop)
