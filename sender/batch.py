"""Batch sends: many messages in one request, each with its own result.

`POST /batch` (HTTP) and Pub/Sub data of the same shape, `{"messages": [message, ...]}`: each
message goes the single message's way (`exactly_once.send_once`) over the instance's pooled SMTP
sessions, and the answer is one result per message, in order, shaped as the single answer's body.

- The batch is checked first: an object with `messages` only, a list of 1 to `MAX_BATCH` items;
  anything else fails the whole batch (400; for Pub/Sub an acked ERROR line).
- Each item is then checked alone: an invalid one gets its own 400-shaped result, the others go.
- Keys: the trigger names each item's ledger key (`KeyOf`). An item whose key an earlier item of
  the same batch has is sent only after that one finished, so it answers `duplicate` with its
  outcome instead of racing it.
- Time: the batch has one budget, `SEND_DEADLINE_S` — the bound of a single send, so the
  function's timeout (`SEND_DEADLINE_S` + 60 s as deployed) fits a batch as it fits one message.
  Each item keeps its own send deadline, cut to what is left of the batch's; an item not started
  before the budget ran out is answered `not attempted: the batch ran out of time` (transient:
  Pub/Sub redelivers it, an HTTP caller retries it).
- Concurrency: up to `SMTP_POOL_SIZE` items at once, each on its own pooled session; one at a
  time without a pool (`SMTP_POOL_SIZE=0`: each session would be a new TLS handshake and login).
  The workers are threads of this request, gone when it answers; each item runs in a copy of the
  request's log context, so its lines carry the event id or trace and its `batch_index`.
- Logs: one outcome line per item, as the single path writes it, and one summary line.
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sender import logs
from sender.config import Settings
from sender.errors import (
    AlreadyRejectedError,
    ClaimBusyError,
    FieldProblem,
    InvalidRequestError,
    SendError,
    TransientError,
)
from sender.exactly_once import Delivery, send_once
from sender.message import EmailRequest, parse_request

BATCH_PATH = "/batch"
FIELD = "messages"
NOT_ATTEMPTED = "not attempted: the batch ran out of time"

# (the item's index, its request) -> its namespaced ledger key, or None (never deduplicated)
KeyOf = Callable[[int, EmailRequest], str | None]


def is_batch_path(path: str) -> bool:
    """Whether an HTTP request is for the batch endpoint."""
    return path.rstrip("/") == BATCH_PATH


def is_batch(document: Any) -> bool:
    """Whether decoded Pub/Sub data is a batch (a message has no `messages` field)."""
    return isinstance(document, dict) and FIELD in document


def messages_of(document: Any, max_batch: int) -> list[Any]:
    """The batch's items, unchecked; `InvalidRequestError` when the batch itself is wrong."""
    if not isinstance(document, dict):
        raise InvalidRequestError.one("body", "must be a JSON object with a messages list")
    unknown = sorted(name for name in document if name != FIELD)
    if unknown:
        raise InvalidRequestError([FieldProblem(n, "is not a known field") for n in unknown[:20]])
    messages = document.get(FIELD)
    if not isinstance(messages, list):
        raise InvalidRequestError.one(
            FIELD, "is required" if messages is None else "must be a list"
        )
    if not messages:
        raise InvalidRequestError.one(FIELD, "must not be empty")
    if len(messages) > max_batch:
        raise InvalidRequestError.one(
            FIELD, f"holds {len(messages)} messages; at most {max_batch} (MAX_BATCH) per batch"
        )
    return messages


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item's outcome: its delivery, or the error that stopped it (neither: our own bug)."""

    delivery: Delivery | None = None
    error: SendError | None = None

    @property
    def redeliver(self) -> bool:
        """Whether a Pub/Sub batch must come again for this item (something is still owed)."""
        if self.delivery is not None:
            return bool(self.delivery.owed)
        return self.error is None or self.error.redeliver

    @property
    def kind(self) -> str:
        """`sent`, `partial`, `duplicate`, an error kind, or `internal` (the summary's counts)."""
        if self.delivery is not None:
            return "duplicate" if self.delivery.duplicate else self.delivery.result.status
        return "internal" if self.error is None else self.error.disposition.value

    def answer(self) -> dict[str, Any]:
        """The single answer's body for this item."""
        if self.delivery is not None:
            return self.delivery.answer()
        if self.error is not None:
            return self.error.response_body()
        return {"error": "internal"}


@dataclass(frozen=True, slots=True)
class _Job:
    index: int
    request: EmailRequest
    key: str | None


DELIVERED = frozenset({"sent", "partial", "duplicate"})


def send_all(
    documents: Sequence[Any],
    settings: Settings,
    *,
    via: str,
    key_of: KeyOf,
    redelivers: bool = False,
) -> list[ItemResult]:
    """Send every item (see the module docstring); one result per item, in order. Never raises
    for an item's failure. `redelivers`: the trigger (Pub/Sub) redelivers whatever is owed, so
    an item rejected by an earlier delivery is not tried again and the log lines say so."""
    started = time.monotonic()
    batch = _Batch(settings, via, redelivers, ends_at=started + settings.send_deadline_s)
    results: list[ItemResult | None] = [None] * len(documents)
    jobs: list[_Job] = []
    for index, document in enumerate(documents):
        parsed = _parse(index, document, key_of)
        if isinstance(parsed, _Job):
            jobs.append(parsed)
        else:
            results[index] = batch.in_item_context(index, _known(parsed))
    for phase in _phases(jobs):
        for job, result in zip(phase, batch.send_phase(phase), strict=True):
            results[job.index] = result

    final = [result for result in results if result is not None]
    assert len(final) == len(documents)  # every item was parsed or sent
    _summarise(final, via=via, elapsed_s=time.monotonic() - started)
    return final


@dataclass
class _Batch:
    """What every item of one batch under way shares: settings, one time budget, the caller's
    log context (each item's lines carry its `batch_index` besides the request's trace)."""

    settings: Settings
    via: str
    redelivers: bool
    ends_at: float  # time.monotonic() at which the batch's budget ends
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def in_item_context(self, index: int, work: Callable[[], ItemResult]) -> ItemResult:
        def run() -> ItemResult:
            logs.bind(batch_index=index)
            result = work()
            _log(result, via=self.via, redelivers=self.redelivers)
            return result

        # A copy per item: one Context may be entered by one thread at a time.
        return self.context.copy().run(run)

    def send_phase(self, phase: list[_Job]) -> list[ItemResult]:
        """Send the jobs of one phase, up to `SMTP_POOL_SIZE` at once; results in order."""

        def one(job: _Job) -> ItemResult:
            return self.in_item_context(job.index, lambda: self._send(job))

        workers = max(1, min(self.settings.smtp_pool_size, len(phase)))
        if workers == 1:
            return [one(job) for job in phase]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch") as pool:
            return list(pool.map(one, phase))

    def _send(self, job: _Job) -> ItemResult:
        left = self.ends_at - time.monotonic()
        if left <= 0:
            return ItemResult(error=TransientError(NOT_ATTEMPTED))
        try:
            delivery = send_once(
                job.request,
                self.settings,
                ledger_key=job.key,
                deadline_s=left,
                retry_rejected=not self.redelivers,
            )
        except SendError as error:
            return ItemResult(error=error)
        except Exception as exc:  # noqa: BLE001 - our bug: this item's result, not the batch's
            logs.internal_error(exc, via=self.via)
            return ItemResult()
        return ItemResult(delivery)


def _parse(index: int, document: Any, key_of: KeyOf) -> _Job | ItemResult:
    try:
        request = parse_request(document)
    except InvalidRequestError as error:
        return ItemResult(error=error)
    return _Job(index, request, key_of(index, request))


def _known(result: ItemResult) -> Callable[[], ItemResult]:
    return lambda: result


def _phases(jobs: list[_Job]) -> list[list[_Job]]:
    """First every item whose key is new to the batch (or has none), then the repeats: a repeat
    then finds its key's outcome recorded and answers `duplicate`."""
    seen: set[str] = set()
    first: list[_Job] = []
    repeats: list[_Job] = []
    for job in jobs:
        if job.key is not None and job.key in seen:
            repeats.append(job)
            continue
        first.append(job)
        if job.key is not None:
            seen.add(job.key)
    return [phase for phase in (first, repeats) if phase]


def _log(result: ItemResult, *, via: str, redelivers: bool) -> None:
    """The item's outcome line, as the single path writes it (an internal error is logged where
    it was caught)."""
    delivery, error = result.delivery, result.error
    if delivery is not None:
        if delivery.duplicate:
            logs.duplicate(
                message_id=delivery.result.message_id,
                accepted_count=len(delivery.result.accepted),
                via=via,
            )
            return
        logs.sent(delivery.result, via=via)
        if delivery.owed and redelivers:
            logs.deferred_recipients(owed=list(delivery.owed), via=via)
    elif isinstance(error, InvalidRequestError):
        logs.invalid_request(error.log_fields(), via=via)
    elif isinstance(error, AlreadyRejectedError):
        logs.rejected_before(error, via=via)
    elif isinstance(error, ClaimBusyError) and redelivers:
        logs.claim_busy(retry_after_s=error.retry_after_s, via=via)
    elif error is not None:
        logs.send_failed(error, via=via, redeliver=True if redelivers and error.redeliver else None)


def _summarise(results: list[ItemResult], *, via: str, elapsed_s: float) -> None:
    counts = Counter(result.kind for result in results)
    not_attempted = sum(
        1 for r in results if r.error is not None and r.error.reason == NOT_ATTEMPTED
    )
    logs.batch_done(
        count=len(results),
        counts=dict(counts),
        not_attempted=not_attempted,
        all_delivered=set(counts) <= DELIVERED,
        elapsed_s=elapsed_s,
        via=via,
    )
