"""Exactly one email per idempotency key, however often a request is delivered.

`send_once` wraps the send path (`sender.send`) in the idempotency ledger (`sender.ledger`):
it claims the key, sends only if nobody sent it before, sends only to the recipients still owed
after a partial send, and records what happened for the next delivery of the same key — a failure
too, for the status answer, without stopping the next delivery. Each attempt that reached an
outcome is then announced on `RESULTS_TOPIC` (`sender.results`), after the record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sender import instance, ledger_keys, logs, results
from sender.config import Settings
from sender.errors import AlreadyRejectedError, ClaimBusyError, Disposition, SendError
from sender.ledger import (
    FAILED,
    REJECTED,
    Attempt,
    Busy,
    Claim,
    Claimed,
    Duplicate,
    Entry,
    Failure,
    Ledger,
    Status,
    describe,
)
from sender.message import EmailRequest
from sender.mime import message_id_seed
from sender.outcome import Refusal, SendResult, split_refusals
from sender.send import send_email


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery of a keyed request came to, over every attempt made for its key."""

    # Accepted by any attempt; refused for good by any attempt, plus this attempt's deferrals.
    result: SendResult
    duplicate: bool = False
    # Recipients deferred with a 4xx that a later delivery (same key) will send to, and only them.
    owed: tuple[str, ...] = ()

    def answer(self) -> dict[str, Any]:
        """The caller's answer: HTTP's 200 body, and a batch item's result (`sender.batch`)."""
        return {
            "status": "duplicate" if self.duplicate else self.result.status,
            "message_id": self.result.message_id,
            "accepted": self.result.accepted,
            "refused": self.result.refused_json(),
        }


def send_once(
    request: EmailRequest,
    settings: Settings,
    *,
    ledger_key: str | None,
    deadline_s: float | None = None,
    retry_rejected: bool = True,
) -> Delivery:
    """Send `request` unless `ledger_key` was sent before; raise a `SendError` on failure.

    `ledger_key` is namespaced by trigger so that an HTTP caller's key can never collide with a
    Pub/Sub event id; None (an HTTP request without a key) sends every time. The Message-ID is
    derived from `ledger_key` and the message's content (`sender.mime.message_id_seed`). Raises
    `ClaimBusyError` while another delivery of the key holds an unexpired lease.

    `deadline_s` shortens the send's deadline (`SEND_DEADLINE_S`; a batch item near the end of
    its batch's time). With `retry_rejected` False, a key whose previous attempt a server
    rejected for good is answered with that rejection (`AlreadyRejectedError`), not tried again.
    """
    if ledger_key is None:  # no key, no deduplication: every request is a new email
        return _send_unkeyed(request, settings, deadline_s)
    ledger = instance.ledger(settings)
    started = time.monotonic()
    answer = _claim_or_wait(ledger, ledger_key, settings, deadline_s)
    if isinstance(answer, Duplicate):
        entry = answer.entry
        previous = SendResult(entry.message_id or "", list(entry.accepted), dict(entry.refused))
        return Delivery(previous, duplicate=True)
    claim = answer.claim
    if not retry_rejected:
        _refuse_if_rejected_before(ledger, claim)
    if claim.taken_over:
        logs.claim_taken_over(attempt=claim.attempt)
    # Waiting for a busy key came out of the same budget: the send gets what is left of it.
    budget_s = settings.send_deadline_s if deadline_s is None else deadline_s
    left_s = budget_s - (time.monotonic() - started)
    result = _send_claimed(request, settings, ledger, ledger_key, claim, deadline_s=left_s)
    delivery, status = _record(ledger, claim, result)
    _announce(settings, ledger_key, status)
    return delivery


# A repeat of a key that another delivery is sending right now waits (at most this long, and at
# most half the send deadline) for that delivery to finish: a webhook sender retrying a request
# that timed out on its side gets the outcome at once, not a 503 and a long Retry-After.
BUSY_WAIT_S = 5.0
_BUSY_POLL_FIRST_S = 0.05
_BUSY_POLL_MAX_S = 0.5


def _claim_or_wait(
    ledger: Ledger, key: str, settings: Settings, deadline_s: float | None
) -> Claimed | Duplicate:
    """Claim `key`; while another delivery holds it, poll (bounded) until it finishes.

    Raises `ClaimBusyError` when the other delivery is still sending after the wait, with a
    Retry-After of the time its send deadline may still run, not its whole lease.
    """
    budget_s = settings.send_deadline_s if deadline_s is None else deadline_s
    wait_until = time.monotonic() + min(BUSY_WAIT_S, budget_s / 2)
    delay = _BUSY_POLL_FIRST_S
    while True:
        answer = ledger.claim(key)
        if not isinstance(answer, Busy):
            return answer
        left = wait_until - time.monotonic()
        if left <= 0:
            # The lease outlives the holder's send deadline by a margin (secret read, ledger
            # round-trips); the send itself ends by then.
            margin = settings.idempotency_lease_s - settings.send_deadline_s
            raise ClaimBusyError(max(1.0, answer.retry_after_s - max(margin, 0.0)))
        time.sleep(min(delay, left))
        delay = min(delay * 2, _BUSY_POLL_MAX_S)


def failure_of(error: SendError) -> Failure:
    """An attempt's `SendError` as the ledger remembers it (reason and SMTP reply; never a body).
    Refused for good (a 5xx, an invalid request) is `rejected`; anything worth retrying `failed`."""
    final = error.disposition in {Disposition.REJECTED, Disposition.INVALID}
    return Failure(
        REJECTED if final else FAILED,
        error.disposition.value,
        error.reason,
        smtp_code=error.smtp_code,
        smtp_message=error.smtp_message,
        refused=dict(error.refused),
    )


def _record_refusals(
    ledger: Ledger, claim: Claim, refused: Mapping[str, Refusal], failure: Failure
) -> None:
    """After every recipient was refused, some for good: progress with nothing accepted."""
    final, deferred = split_refusals(refused)
    try:
        # No message built by this attempt reached DATA: an earlier attempt's id, if any.
        attempt = Attempt(claim.message_id or "", (), final, list(deferred), failure)
        ledger.record_progress(claim, attempt)
    except Exception:  # noqa: BLE001 - the refusals are what the caller must hear about
        # Not recorded: free the key at least, so the redelivery can retry (everyone) at once
        # rather than after the lease; nothing was sent, so that repeats no email.
        _release(ledger, claim, failure)


def _record(ledger: Ledger, claim: Claim, result: SendResult) -> tuple[Delivery, Status]:
    final, deferred = split_refusals(result.refused)
    try:
        # Nothing deferred means nothing owed: the record is complete.
        entry = ledger.record_progress(
            claim,
            Attempt(
                message_id=result.message_id,
                accepted=result.accepted,
                refused=final,
                owed=list(deferred),
            ),
        )
    except Exception as exc:  # noqa: BLE001 - the email went out: report it whatever the ledger did
        # No redelivery for the deferred ones: without a record it would resend to everyone.
        logs.sent_not_recorded(error_type=type(exc).__name__, deferred=list(deferred))
        return Delivery(result), _status_of_result(claim.key, result, attempt=claim.attempt)
    cumulative = SendResult(
        entry.message_id or result.message_id, list(entry.accepted), {**entry.refused, **deferred}
    )
    return Delivery(cumulative, owed=entry.owed or ()), describe(entry, now=time.time())


def _release(ledger: Ledger, claim: Claim, failure: Failure) -> None:
    try:
        ledger.release(claim, failure)
    except Exception as exc:  # noqa: BLE001 - the original failure matters more; the lease expires
        logs.claim_not_released(error_type=type(exc).__name__)


# --- outcome events (RESULTS_TOPIC), published after the ledger record ------------------------


def _refuse_if_rejected_before(ledger: Ledger, claim: Claim) -> None:
    """Answer a key whose previous attempt a server rejected for good with that rejection."""
    earlier = claim.previous_failure
    if earlier is None or earlier.error != Disposition.REJECTED.value:
        return
    _release(ledger, claim, earlier)  # the record says what it said before
    raise AlreadyRejectedError(
        earlier.detail,
        smtp_code=earlier.smtp_code,
        smtp_message=earlier.smtp_message,
        refused=dict(earlier.refused),
    )


def _send_claimed(
    request: EmailRequest,
    settings: Settings,
    ledger: Ledger,
    ledger_key: str,
    claim: Claim,
    *,
    deadline_s: float | None,
) -> SendResult:
    """Send to the recipients `claim` still owes. On failure the claim is recorded (final
    refusals) or released (nothing to keep), the failure announced, and the error re-raised."""
    recipients = None
    if claim.owed is not None:
        owed = set(claim.owed)
        recipients = [m for m in request.recipients() if m.addr_spec in owed]
        logs.resuming_partial_send(owed=list(claim.owed), accepted_count=len(claim.accepted))
    seed = message_id_seed(ledger_key, request)
    try:
        return send_email(
            request, settings, seed=seed, recipients=recipients, deadline_s=deadline_s
        )
    except SendError as error:
        failure = failure_of(error)
        if error.refused and claim.accepted:
            # Every owed recipient was refused this time, but earlier attempts were accepted:
            # that is progress on a partly sent message, not a failure to forget.
            return SendResult(claim.message_id or "", [], dict(error.refused))
        if all(split_refusals(error.refused)):
            # Nothing was ever accepted, but the 5xx refusals are final: remember them, so the
            # redelivery this (transient) error asks for goes to the 4xx recipients only.
            _record_refusals(ledger, claim, error.refused, failure)
        else:
            _release(ledger, claim, failure)
        _announce_failure(settings, ledger_key, claim, failure)
        raise
    except BaseException as exc:
        failure = Failure(FAILED, "internal", f"internal error ({type(exc).__name__})")
        _release(ledger, claim, failure)  # nothing was sent: let the next delivery try at once
        if isinstance(exc, Exception):
            _announce_failure(settings, ledger_key, claim, failure)
        raise


def _send_unkeyed(request: EmailRequest, settings: Settings, deadline_s: float | None) -> Delivery:
    """A request without a key: sent every time, still announced (with a null key)."""
    try:
        result = send_email(request, settings, deadline_s=deadline_s)
    except SendError as error:
        failure = failure_of(error)
        status = describe(
            Entry(key="", owner=None, lease_until=None, done=False, attempts=1, failure=failure),
            now=time.time(),
        )
        _announce(settings, None, status)
        raise
    _announce(settings, None, _status_of_result("", result, attempt=1))
    return Delivery(result)


def _status_of_result(key: str, result: SendResult, *, attempt: int) -> Status:
    """What one attempt's own result says when there is no ledger record to describe."""
    final, deferred = split_refusals(result.refused)
    entry = Entry(
        key=key,
        owner=None,
        lease_until=None,
        done=not deferred,
        message_id=result.message_id,
        accepted=tuple(result.accepted),
        refused=final,
        owed=tuple(deferred),
        attempts=attempt,
    )
    return describe(entry, now=time.time())


def _announce_failure(settings: Settings, ledger_key: str, claim: Claim, failure: Failure) -> None:
    """The event for an attempt that sent nothing, from what the claim knew (no extra read)."""
    entry = Entry(
        key=claim.key,
        owner=None,
        lease_until=None,
        done=False,
        message_id=claim.message_id,
        accepted=claim.accepted,
        refused=dict(claim.refused),
        owed=claim.owed,
        attempts=claim.attempt,
        failure=failure,
    )
    _announce(settings, ledger_key, describe(entry, now=time.time()))


def _announce(settings: Settings, ledger_key: str | None, status: Status) -> None:
    """Publish the outcome event when `RESULTS_TOPIC` is set; never raises, bounded in time.

    A request found invalid (policy, template) is the caller's 400 or an acked ERROR line, like
    one found invalid before its key was claimed: not a delivery, so no event."""
    publisher = instance.results_publisher(settings)
    invalid = status.failure is not None and status.failure.error == Disposition.INVALID.value
    if publisher is None or invalid:
        return
    trigger, key = ledger_keys.split(ledger_key)
    publisher.publish(results.event(status, key=key, trigger=trigger, now=time.time()))
