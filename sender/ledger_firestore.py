"""The idempotency ledger in Firestore: one document per key, shared by every instance.

Imported only when `IDEMPOTENCY_STORE=firestore` (see `sender.instance.ledger`), so other
deployments never load the Firestore client. The client honours `FIRESTORE_EMULATOR_HOST` itself
(plaintext, anonymous credentials), which is how the tests run it.

Every operation is read-decide-write with optimistic concurrency, not a Firestore transaction: a
transaction's begin/commit/rollback run on the client library's own timeouts and retries (60 s,
five attempts), which would let a hung Firestore hold the send for minutes. Here each RPC carries
an explicit timeout cut from one deadline per operation (`timeout_s`, default 10 s), retries of
transient errors stop at that deadline, and whatever is left over is `LedgerUnavailableError`.

A write is conditional on what was read: `create` when the document was absent, otherwise
`update` on the read's `update_time`. If another instance wrote in between, the
precondition fails and the operation reads again and re-decides, a bounded number of times. A
claim starts with a blind `create` (one round-trip on the common path: the key is new).

Document ids are the SHA-256 of the key: keys are caller-supplied and may contain `/` or be long.
`expire_at` is a Timestamp for a TTL policy on the collection:

    gcloud firestore fields ttls update expire_at --collection-group=COLLECTION --enable-ttl
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore

from sender.deadline import Deadline
from sender.errors import ConfigurationError, LedgerUnavailableError
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
from sender.outcome import Refusal, refused_json

# One ledger operation (all its reads, writes and retries) ends within this many seconds. Firestore
# answers in milliseconds when healthy, so this only bounds an outage; the send path waits for the
# claim before it talks SMTP, and the whole request must fit a Cloud Run / Pub/Sub deadline.
DEFAULT_TIMEOUT_S = 10.0
# Read-decide-write rounds before an operation gives up: each lost round means another instance
# wrote the same key in between, which a handful of instances racing for one event settles in two.
MAX_ROUNDS = 5
_BACKOFF_INITIAL_S = 0.1
_BACKOFF_MAX_S = 1.0
# A conditional write that lost the race: the document was created, changed or deleted meanwhile.
_CHANGED_MEANWHILE = (
    api_exceptions.AlreadyExists,
    api_exceptions.FailedPrecondition,
    api_exceptions.NotFound,
)

T = TypeVar("T")


def document_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _timestamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _seconds(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _refusals(data: Any) -> dict[str, Refusal]:
    return {
        addr: Refusal(int(r.get("code", 0)), str(r.get("message", "")))
        for addr, r in (data or {}).items()
    }


def _failure_map(failure: Failure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "state": failure.state,
        "error": failure.error,
        "detail": failure.detail,
        "smtp_code": failure.smtp_code,
        "smtp_message": failure.smtp_message,
        "refused": refused_json(failure.refused),
    }


def _failure(data: Any) -> Failure | None:
    if not isinstance(data, Mapping):
        return None
    code = data.get("smtp_code")
    return Failure(
        state=str(data.get("state") or ""),
        error=str(data.get("error") or ""),
        detail=str(data.get("detail") or ""),
        smtp_code=None if code is None else int(code),
        smtp_message=data.get("smtp_message"),
        refused=_refusals(data.get("refused")),
    )


def to_document(entry: Entry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "owner": entry.owner,
        "lease_until": _timestamp(entry.lease_until),
        "done": entry.done,
        "message_id": entry.message_id,
        "accepted": list(entry.accepted),
        "refused": refused_json(entry.refused),
        "owed": None if entry.owed is None else list(entry.owed),
        "attempts": entry.attempts,
        "expire_at": _timestamp(entry.expire_at),
        "updated_at": firestore.SERVER_TIMESTAMP,  # for operators reading the collection
        # Added for the status answer; documents written before them read as None (unknown).
        "first_attempt_at": _timestamp(entry.first_attempt_at),
        "last_attempt_at": _timestamp(entry.last_attempt_at),
        "failure": _failure_map(entry.failure),
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
        refused=_refusals(data.get("refused")),
        owed=None if owed is None else tuple(owed),
        attempts=int(data.get("attempts") or 0),
        expire_at=_seconds(data.get("expire_at")) or 0.0,
        first_attempt_at=_seconds(data.get("first_attempt_at")),
        last_attempt_at=_seconds(data.get("last_attempt_at")),
        failure=_failure(data.get("failure")),
    )


def _unavailable(exc: Exception) -> LedgerUnavailableError:
    return LedgerUnavailableError(f"the idempotency ledger is unavailable: {type(exc).__name__}")


def _operation_deadline(seconds: float) -> Deadline:
    """One ledger operation's time budget, shared by every RPC and retry the operation makes."""
    return Deadline(
        seconds,
        expired=lambda: LedgerUnavailableError(
            f"the idempotency ledger did not answer within {seconds:g} s"
        ),
    )


def _rpc(deadline: Deadline, call: Callable[[float], T]) -> T:
    """`call(timeout)`: one RPC, retried on transient errors while the operation's deadline
    allows (`retry=None` at every call site: the library's own retry restarts its timeout)."""
    return deadline.retry(
        call,
        transient=api_retry.if_transient_error,
        first_delay_s=_BACKOFF_INITIAL_S,
        max_delay_s=_BACKOFF_MAX_S,
    )


@dataclass(frozen=True, slots=True)
class _Read:
    """A document as read: its record, and the version a conditional write must still find."""

    entry: Entry | None
    update_time: Any  # None: the document did not exist

    @property
    def exists(self) -> bool:
        return self.update_time is not None


_ABSENT = _Read(entry=None, update_time=None)


# A decision on what was read: the operation's answer, and what to store for it (None: nothing).
_Step = Callable[[_Read], tuple[T, Entry | None]]


class FirestoreLedger(Ledger):
    """`sender.ledger.Ledger` on a Firestore collection."""

    def __init__(
        self,
        *,
        collection: str,
        lease_s: float,
        ttl_s: float,
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

    def _ref(self, key: str) -> Any:
        return self._collection.document(document_id(key))

    def _guarded(self, operation: Callable[[Deadline], T]) -> T:
        """Run one ledger operation within its deadline; any Firestore failure is transient."""
        try:
            return operation(_operation_deadline(self._timeout_s))
        except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as exc:
            raise _unavailable(exc) from exc

    def _read(self, ref: Any, deadline: Deadline) -> _Read:
        snapshot = _rpc(deadline, lambda timeout: ref.get(retry=None, timeout=timeout))
        if not snapshot.exists:
            return _ABSENT
        return _Read(from_document(snapshot.to_dict() or {}), snapshot.update_time)

    def _write(self, ref: Any, entry: Entry, read: _Read, deadline: Deadline) -> bool:
        """Store `entry` if the document is still as `read`; False if it changed.

        A retry of a write that was applied but whose reply was lost also ends here as "changed":
        the caller reads again and finds its own write, which the state machine recognises.
        """
        document = to_document(entry)
        try:
            if not read.exists:
                _rpc(deadline, lambda t: ref.create(document, retry=None, timeout=t))
                return True
            unchanged = self._client.write_option(last_update_time=read.update_time)
            # `update` names every field, so it replaces the whole record (maps included).
            _rpc(deadline, lambda t: ref.update(document, option=unchanged, retry=None, timeout=t))
        except _CHANGED_MEANWHILE:
            return False
        return True

    def _settle(self, ref: Any, deadline: Deadline, first: _Read | None, step: _Step[T]) -> T:
        """Read, decide, write conditionally; on a lost race read again, `MAX_ROUNDS` at most.

        `step(read)` returns the answer and what to store (None: store nothing).
        `first` stands in for the first read when the caller can guess it (a claim guesses absent).
        """
        read = first
        for _ in range(MAX_ROUNDS):
            if read is None:
                read = self._read(ref, deadline)
            answer, store = step(read)
            if store is None or self._write(ref, store, read, deadline):
                return answer
            read = None
        raise LedgerUnavailableError(
            f"the idempotency ledger record kept changing ({MAX_ROUNDS} rounds); try again later"
        )

    def claim(self, key: str) -> ClaimResult:
        ref = self._ref(key)
        token = new_token()

        def step(read: _Read) -> tuple[ClaimResult, Entry | None]:
            return decide_claim(
                read.entry,
                key=key,
                token=token,
                now=self._clock(),
                lease_s=self._lease_s,
                ttl_s=self._ttl_s,
            )

        # Guess "absent": a blind create is the one round-trip a new key (the common case) needs.
        return self._guarded(lambda deadline: self._settle(ref, deadline, _ABSENT, step))

    def lookup(self, key: str) -> Entry | None:
        entry = self._guarded(lambda deadline: self._read(self._ref(key), deadline).entry)
        if entry is None or entry.expire_at <= self._clock():
            return None
        return entry

    def now(self) -> float:
        return self._clock()

    def record_progress(self, claim: Claim, attempt: Attempt) -> Entry:
        ref = self._ref(claim.key)

        def step(read: _Read) -> tuple[Entry, Entry | None]:
            entry = merge_outcome(read.entry, claim, attempt, now=self._clock(), ttl_s=self._ttl_s)
            return entry, entry

        return self._guarded(lambda deadline: self._settle(ref, deadline, None, step))

    def release(self, claim: Claim, failure: Failure | None = None) -> None:
        ref = self._ref(claim.key)

        def step(read: _Read) -> tuple[None, Entry | None]:
            if read.entry is None or not holds(read.entry, claim):
                return None, None  # someone took over meanwhile: their claim is not ours to drop
            return None, released(read.entry, failure)

        self._guarded(lambda deadline: self._settle(ref, deadline, None, step))
