"""The idempotency ledger: at most one email per key under at-least-once delivery.

Pub/Sub redelivers, HTTP callers retry, and two instances may receive the same event at the same
moment. Before sending, the function *claims* the key; the ledger answers with exactly one of:

- `Claimed`: this caller may send. `Claim.owed` says to whom: `None` on a first attempt (everyone),
  or the recipients a previous attempt still owes (it was accepted for some and got a 4xx for
  others). A claim holds a *lease*: if its holder crashes, the lease runs out and the next delivery
  takes the claim over.
- `Duplicate`: the key was completed before; the stored Message-ID, accepted and refused are
  returned and nothing is sent.
- `Busy`: another sender holds an unexpired lease right now; try again later.

After the attempt the holder either `complete`s (every recipient accepted or refused for good),
`record_progress`es (some recipients still owed after a 4xx: the lease is dropped so a redelivery
can claim at once and send to those only), or `release`s (a failure that sent nothing). A release
keeps the record, with the lease dropped and the attempt's `Failure` remembered for the status
answer: the next claim takes it at once, as if the key were new (or as the progress left it), so a
failure that sent nothing still never stops a retry with the same key.

`describe` turns a record into what `GET /messages/<key>` and the outcome events report: one of
the states below and the recipients' fates. Records written before the attempt times and
`failure` existed read as "unknown" (None) for those fields and behave exactly as before.

Records carry `expire_at` (a Firestore TTL policy deletes them; both stores also ignore expired
records on read, since TTL deletion runs late). The state machine lives in the pure functions
`decide_claim` and `merge_outcome`; a store only has to apply them atomically. The stores are
`sender.ledger_memory` and `sender.ledger_firestore`; `sender.instance` picks one
(`IDEMPOTENCY_STORE`) and keeps it for the life of the instance.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sender.outcome import Refusal

Clock = Callable[[], float]

# What a record says about its key, as `describe` reports it:
SENDING = "sending"  # an attempt holds the key right now
SENT = "sent"  # every recipient accepted
PARTIAL = "partial"  # some accepted; others refused for good or still owed (4xx)
REJECTED = "rejected"  # the last attempt was refused for good and sent nothing
FAILED = "failed"  # the last attempt failed (transient, misconfigured, or never finished)


@dataclass(frozen=True, slots=True)
class Failure:
    """How an attempt that sent nothing ended, kept for the status answer (never a body).

    `error` is the answer's error kind (`rejected`, `invalid_request`, `unavailable`,
    `misconfigured`, `internal`); `refused` holds that attempt's refusals, which are reported but,
    unlike a recorded attempt's, never decide who the next attempt sends to.
    """

    state: str  # REJECTED or FAILED
    error: str
    detail: str
    smtp_code: int | None = None
    smtp_message: str | None = None
    refused: Mapping[str, Refusal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """One key's record, as stored. Times are seconds since the epoch."""

    key: str
    owner: str | None  # token of the current claim holder; None when nobody holds it
    lease_until: float | None
    done: bool
    message_id: str | None = None
    accepted: tuple[str, ...] = ()
    refused: Mapping[str, Refusal] = field(default_factory=dict)  # final (5xx) refusals
    owed: tuple[str, ...] | None = None  # None: no attempt reached the server yet
    attempts: int = 0
    expire_at: float = 0.0
    first_attempt_at: float | None = None  # None: unknown (a record older than this field)
    last_attempt_at: float | None = None  # when the latest claim was taken
    failure: Failure | None = None  # the latest attempt's, when it sent nothing


@dataclass(frozen=True, slots=True)
class Claim:
    """Permission to send for `key`, held until `lease_until`."""

    key: str
    token: str
    lease_until: float
    owed: tuple[str, ...] | None  # None: send to every recipient; else only these
    message_id: str | None  # of earlier attempts, if any reached the server
    accepted: tuple[str, ...]  # accepted by earlier attempts (for the final report)
    refused: Mapping[str, Refusal]  # refused for good by earlier attempts
    taken_over: bool  # a previous holder's lease had expired (it probably crashed)
    attempt: int
    # How the previous attempt ended when it sent nothing (None: first attempt, or progress).
    previous_failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    claim: Claim


@dataclass(frozen=True, slots=True)
class Duplicate:
    entry: Entry


@dataclass(frozen=True, slots=True)
class Busy:
    retry_after_s: float  # until the holder's lease runs out


ClaimResult = Claimed | Duplicate | Busy


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt for a key came to, as the ledger records it."""

    message_id: str
    accepted: Sequence[str] = ()
    refused: Mapping[str, Refusal] = field(default_factory=dict)  # final (5xx) refusals
    owed: Sequence[str] = ()  # deferred (4xx): still to send; none means the record is complete
    failure: Failure | None = None  # why this attempt did not finish, if it did not


class Ledger(abc.ABC):
    """What the send path needs from a store. Every method is atomic per key."""

    @abc.abstractmethod
    def claim(self, key: str) -> ClaimResult: ...

    @abc.abstractmethod
    def lookup(self, key: str) -> Entry | None:
        """The unexpired record for `key`, or None."""

    @abc.abstractmethod
    def record_progress(self, claim: Claim, attempt: Attempt) -> Entry:
        """After an attempt: what it accepted and refused for good, and who is still owed
        (`Attempt`). With nothing owed the record is complete. Returns it with every attempt
        merged. `attempt.failure`: the attempt failed as a whole although its refusals count
        (every recipient refused, some of them for good)."""

    def complete(
        self,
        claim: Claim,
        *,
        message_id: str,
        accepted: Sequence[str],
        refused: Mapping[str, Refusal],
    ) -> Entry:
        """Nothing more is owed: `record_progress` with an empty `owed`."""
        return self.record_progress(claim, Attempt(message_id, accepted, refused))

    @abc.abstractmethod
    def release(self, claim: Claim, failure: Failure | None = None) -> None:
        """Give the claim up after a failure that sent nothing, so a retry can claim at once;
        the record keeps `failure` for the status answer."""

    @abc.abstractmethod
    def now(self) -> float:
        """The store's clock (seconds since the epoch): what leases and expiry are measured on."""

    def status(self, key: str) -> Status | None:
        """What `GET /messages/<key>` answers: the record described, or None when unknown."""
        entry = self.lookup(key)
        return None if entry is None else describe(entry, now=self.now())


# --- the state machine (pure, shared by every store) ---------------------------------------


def new_token() -> str:
    return uuid.uuid4().hex


def _claim_of(entry: Entry, *, key: str, token: str, taken_over: bool) -> Claim:
    return Claim(
        key=key,
        token=token,
        lease_until=entry.lease_until or 0.0,
        owed=entry.owed,
        message_id=entry.message_id,
        accepted=entry.accepted,
        refused=dict(entry.refused),
        taken_over=taken_over,
        attempt=entry.attempts,
    )


def decide_claim(
    entry: Entry | None, *, key: str, token: str, now: float, lease_s: float, ttl_s: float
) -> tuple[ClaimResult, Entry | None]:
    """The answer to a claim on `entry`'s current state, and the entry to write (None: no write)."""
    if entry is not None and entry.expire_at <= now:
        entry = None  # TTL deletion lags; an expired record counts as absent
    if entry is not None and entry.done:
        return Duplicate(entry), None
    if entry is not None and entry.owner == token:
        # Our own claim, met again when a create that succeeded is retried after a lost reply.
        return Claimed(_claim_of(entry, key=key, token=token, taken_over=False)), None
    if entry is not None and entry.owner is not None and (entry.lease_until or 0.0) > now:
        return Busy(retry_after_s=(entry.lease_until or now) - now), None
    base = entry or Entry(key=key, owner=None, lease_until=None, done=False)
    first = base.first_attempt_at
    written = replace(
        base,
        owner=token,
        lease_until=now + lease_s,
        attempts=base.attempts + 1,
        expire_at=now + ttl_s,
        # A record from before attempt times were kept stays "unknown" rather than guessed.
        first_attempt_at=first if first is not None or base.attempts else now,
        last_attempt_at=now,
        failure=None,  # a new attempt: the previous one's failure no longer describes the key
    )
    claim = _claim_of(written, key=key, token=token, taken_over=base.owner is not None)
    return Claimed(replace(claim, previous_failure=base.failure)), written


def merge_outcome(
    entry: Entry | None, claim: Claim, attempt: Attempt, *, now: float, ttl_s: float
) -> Entry:
    """Fold one attempt's result into the stored record.

    Written even when the claim was lost meanwhile: mail that went out is a fact, and forgetting it
    would let the next delivery send it again. Accepted recipients are never owed again.
    """
    base = entry if entry is not None and entry.expire_at > now else None
    base = base or Entry(key=claim.key, owner=None, lease_until=None, done=False, attempts=1)
    all_accepted = base.accepted + tuple(
        a for a in dict.fromkeys(attempt.accepted) if a not in base.accepted
    )
    all_refused = {**base.refused, **attempt.refused}
    for address in all_accepted:
        all_refused.pop(address, None)
    still_owed = tuple(
        r for r in dict.fromkeys(attempt.owed) if r not in all_accepted and r not in all_refused
    )
    done = not still_owed
    # Drop the lease if it is ours (or nobody's); a newer holder keeps its own.
    ours = base.owner in {claim.token, None}
    return replace(
        base,
        owner=None if done or ours else base.owner,
        lease_until=None if done or ours else base.lease_until,
        done=done,
        message_id=base.message_id or attempt.message_id,
        accepted=all_accepted,
        refused=all_refused,
        owed=() if done else still_owed,
        expire_at=now + ttl_s,
        failure=None if done else attempt.failure,
    )


def holds(entry: Entry | None, claim: Claim) -> bool:
    """Whether `claim` is still the record's current holder (nobody took it over)."""
    return entry is not None and entry.owner == claim.token


def released(entry: Entry, failure: Failure | None) -> Entry:
    """What `release` leaves behind for a held record: the lease dropped, the failure noted.

    Any progress is kept; without progress (`owed` None) the next claim sends to everyone, exactly
    as if the key were new. Kept (not deleted) only so that the status answer can tell the key's
    fate until the record expires.
    """
    return replace(entry, owner=None, lease_until=None, failure=failure)


# --- what a record says (GET /messages/<key>, outcome events) ------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """A key's fate as the status answer and the outcome events report it (never a body)."""

    key: str
    state: str  # SENDING, SENT, PARTIAL, REJECTED or FAILED
    message_id: str | None
    accepted: tuple[str, ...]
    refused: Mapping[str, Refusal]  # final (5xx) refusals
    owed: tuple[str, ...]  # deferred (4xx) recipients a later attempt still sends to
    attempts: int
    first_attempt_at: float | None
    last_attempt_at: float | None
    failure: Failure | None  # with REJECTED and FAILED: how the last attempt ended


# A claim whose lease ran out without an outcome: its instance stopped mid-attempt.
ABANDONED = Failure(
    FAILED,
    "abandoned",
    "the last attempt did not finish (its instance stopped); a retry with this key takes over",
)


def _state(entry: Entry, now: float) -> tuple[str, Failure | None]:
    """The key's state and, for REJECTED/FAILED, how the last attempt ended. In this order: a
    live claim, a complete record, the last attempt's failure, a claim abandoned mid-attempt,
    recorded progress."""
    if entry.owner is not None and (entry.lease_until or 0.0) > now:
        return SENDING, None
    if entry.done:
        state = SENT if not entry.refused else PARTIAL if entry.accepted else REJECTED
        return state, None
    failure = entry.failure or (ABANDONED if entry.owner is not None else None)
    if failure is not None:
        return failure.state, failure
    # Progress recorded, the rest owed to the next delivery (None: a record that never learnt
    # anything, which only a store's older version could leave behind).
    return (PARTIAL if entry.owed is not None else FAILED), None


def describe(entry: Entry, *, now: float) -> Status:
    """The record as `Status`. A failed attempt's own refusals are added to the report: its 5xx
    among `refused`, its 4xx among `owed` (the next attempt sends to them)."""
    state, failure = _state(entry, now)
    refused = dict(entry.refused)
    owed = list(entry.owed or ())
    if failure is not None:
        for address, refusal in failure.refused.items():
            if refusal.transient:
                if address not in owed and address not in entry.accepted:
                    owed.append(address)
            else:
                refused.setdefault(address, refusal)
    return Status(
        key=entry.key,
        state=state,
        message_id=entry.message_id or None,
        accepted=entry.accepted,
        refused=refused,
        owed=tuple(owed),
        attempts=entry.attempts,
        first_attempt_at=entry.first_attempt_at,
        last_attempt_at=entry.last_attempt_at,
        failure=failure,
    )
