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
can claim at once and send to those only), or `release`s (a failure that sent nothing).

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


class Ledger(abc.ABC):
    """What the send path needs from a store. Every method is atomic per key."""

    @abc.abstractmethod
    def claim(self, key: str) -> ClaimResult: ...

    @abc.abstractmethod
    def lookup(self, key: str) -> Entry | None:
        """The unexpired record for `key`, or None."""

    @abc.abstractmethod
    def record_progress(
        self,
        claim: Claim,
        *,
        message_id: str,
        accepted: Sequence[str],
        refused: Mapping[str, Refusal],
        owed: Sequence[str],
    ) -> Entry:
        """After an attempt: `accepted` and `refused` (final) by it, `owed` (4xx) still to send.
        With nothing owed the record is complete. Returns it with every attempt merged."""

    def complete(
        self,
        claim: Claim,
        *,
        message_id: str,
        accepted: Sequence[str],
        refused: Mapping[str, Refusal],
    ) -> Entry:
        """Nothing more is owed: `record_progress` with an empty `owed`."""
        return self.record_progress(
            claim, message_id=message_id, accepted=accepted, refused=refused, owed=()
        )

    @abc.abstractmethod
    def release(self, claim: Claim) -> None:
        """Give the claim up after a failure that sent nothing, so a retry can claim at once."""


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
    written = replace(
        base,
        owner=token,
        lease_until=now + lease_s,
        attempts=base.attempts + 1,
        expire_at=now + ttl_s,
    )
    claim = _claim_of(written, key=key, token=token, taken_over=base.owner is not None)
    return Claimed(claim), written


def merge_outcome(
    entry: Entry | None,
    claim: Claim,
    *,
    now: float,
    ttl_s: float,
    message_id: str,
    accepted: Sequence[str],
    refused: Mapping[str, Refusal],
    owed: Sequence[str],
) -> Entry:
    """Fold one attempt's result into the stored record.

    Written even when the claim was lost meanwhile: mail that went out is a fact, and forgetting it
    would let the next delivery send it again. Accepted recipients are never owed again.
    """
    base = entry if entry is not None and entry.expire_at > now else None
    base = base or Entry(key=claim.key, owner=None, lease_until=None, done=False, attempts=1)
    all_accepted = base.accepted + tuple(
        a for a in dict.fromkeys(accepted) if a not in base.accepted
    )
    all_refused = {**base.refused, **refused}
    for address in all_accepted:
        all_refused.pop(address, None)
    still_owed = tuple(
        r for r in dict.fromkeys(owed) if r not in all_accepted and r not in all_refused
    )
    done = not still_owed
    # Drop the lease if it is ours (or nobody's); a newer holder keeps its own.
    ours = base.owner in {claim.token, None}
    return replace(
        base,
        owner=None if done or ours else base.owner,
        lease_until=None if done or ours else base.lease_until,
        done=done,
        message_id=base.message_id or message_id,
        accepted=all_accepted,
        refused=all_refused,
        owed=() if done else still_owed,
        expire_at=now + ttl_s,
    )


def holds(entry: Entry | None, claim: Claim) -> bool:
    """Whether `claim` is still the record's current holder (nobody took it over)."""
    return entry is not None and entry.owner == claim.token


def released(entry: Entry) -> Entry | None:
    """What `release` leaves behind for a held record: None deletes it."""
    if entry.owed is None:
        return None  # nothing was ever sent for this key: forget it entirely
    return replace(entry, owner=None, lease_until=None)  # keep the progress, drop the lease
