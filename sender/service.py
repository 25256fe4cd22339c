"""The send path both triggers share: request -> content -> policy -> profile -> MIME -> SMTP.

Checks that need nothing but the request run first, so a bad request is a 400 even while the
secret is broken. After an authentication failure the secret is re-read once, bypassing the cache,
and the send is retried only if the payload changed: a second login with the same wrong password
would only feed the provider's lockout counters.

`send_once` wraps the send in the idempotency ledger (`sender.ledger`): one email per key however
often the request is delivered, and after a partial send only the recipients still owed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from sender import logs, secrets, templates, transport, webhook_auth
from sender.addresses import Mailbox
from sender.config import Settings
from sender.header_safety import unsafe_reason
from sender.ledger import Busy, Claim, Duplicate, Ledger, LedgerConfig, build_ledger
from sender.message import EmailRequest
from sender.mime import BuiltMessage, Content, build_message, message_id_seed
from sender.outcome import (
    AuthenticationError,
    ClaimBusyError,
    InvalidRequest,
    Refusal,
    SendError,
    SendResult,
    classify,
    split_refusals,
)
from sender.policy import check_recipients, resolve_sender
from sender.profile import SmtpProfile


def resolve_content(request: EmailRequest, settings: Settings) -> Content:
    """Subject and bodies: the request's own fields win over what a template renders."""
    subject, text, html = request.subject, request.text, request.html
    if request.template is not None:
        rendered = templates.render(request.template, request.data, settings.templates_dir)
        subject = subject if subject is not None else rendered.subject
        text = text if text is not None else rendered.text
        html = html if html is not None else rendered.html
    if not subject:
        raise InvalidRequest.one("subject", "is required (the template does not set one)")
    # A template renders caller data into the subject: it passes the same check as a subject sent
    # directly, or an encoded word in `data` could still break out of the header.
    reason = unsafe_reason(subject)
    if reason is not None:
        raise InvalidRequest.one("data", f"the rendered subject {reason}")
    if text is None and html is None:
        raise InvalidRequest.one("template", "renders neither a text nor an html body")
    return Content(subject=subject, text=text, html=html)


def _build(
    request: EmailRequest,
    content: Content,
    profile: SmtpProfile,
    settings: Settings,
    *,
    idempotency_key: str | None,
    recipients: list[Mailbox] | None,
) -> BuiltMessage:
    sender = resolve_sender(request, profile, settings)
    return build_message(
        request,
        content,
        sender,
        idempotency_key=idempotency_key,
        max_bytes=settings.max_message_bytes,
        recipients=recipients,
    )


def _deliver(
    built: BuiltMessage, profile: SmtpProfile, settings: Settings, deadline: transport.Deadline
) -> SendResult:
    try:
        refused = transport.send(
            profile, built.envelope, built.data, ca_file=settings.smtp_ca_file, deadline=deadline
        )
    except Exception as exc:  # noqa: BLE001 - classified once, into a SendError
        raise classify(exc) from None
    accepted = [addr for addr in built.envelope.recipients if addr not in refused]
    return SendResult(message_id=built.message_id, accepted=accepted, refused=refused)


def send_email(
    request: EmailRequest,
    settings: Settings,
    *,
    idempotency_key: str | None = None,
    recipients: list[Mailbox] | None = None,
) -> SendResult:
    """Send `request`; raise a `SendError` subclass on failure.

    `recipients` narrows the envelope to the recipients still owed (a partial redelivery).
    One deadline (`SEND_DEADLINE_S`) covers everything from here, the rotation retry included,
    so no send can still be running when the idempotency lease (deadline + margin) runs out.
    """
    deadline = transport.Deadline(settings.send_deadline_s, settings.smtp_timeout_s)
    content = resolve_content(request, settings)
    check_recipients(request, settings)
    store = secrets.profile_store(settings)
    loaded = store.get()
    built = _build(
        request,
        content,
        loaded.profile,
        settings,
        idempotency_key=idempotency_key,
        recipients=recipients,
    )
    try:
        return _deliver(built, loaded.profile, settings, deadline)
    except AuthenticationError:
        logs.auth_failed_rereading_secret()
        fresh, changed = store.reread(loaded)
        if not changed:
            logs.auth_failed_secret_unchanged()
            raise
    # The secret was rotated: the new profile may carry a new host or from, so rebuild.
    built = _build(
        request,
        content,
        fresh.profile,
        settings,
        idempotency_key=idempotency_key,
        recipients=recipients,
    )
    return _deliver(built, fresh.profile, settings, deadline)


# --- exactly once per idempotency key -------------------------------------------------------

# One ledger per configuration, kept for the life of the instance: the memory store *is* this
# object, and a Firestore client is worth reusing. Configurations rarely change: this stays small.
_ledgers: dict[LedgerConfig, Ledger] = {}
_ledgers_lock = threading.Lock()


def current_ledger(settings: Settings) -> Ledger:
    config = LedgerConfig.from_settings(settings)
    with _ledgers_lock:
        ledger = _ledgers.get(config)
        if ledger is None:
            ledger = _ledgers[config] = build_ledger(config)
        return ledger


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery of a keyed request came to, over every attempt made for its key."""

    # Accepted by any attempt; refused for good by any attempt, plus this attempt's deferrals.
    result: SendResult
    duplicate: bool = False
    # Recipients deferred with a 4xx that a later delivery (same key) will send to, and only them.
    owed: tuple[str, ...] = ()


def send_once(request: EmailRequest, settings: Settings, *, ledger_key: str) -> Delivery:
    """Send `request` unless `ledger_key` was sent before; raise a `SendError` on failure.

    `ledger_key` is namespaced by trigger so that an HTTP caller's key can never collide with a
    Pub/Sub event id. The Message-ID is derived from `ledger_key` and the message's content
    (`sender.mime.message_id_seed`). Raises `ClaimBusyError` while another delivery of the key
    holds an unexpired lease.
    """
    ledger = current_ledger(settings)
    answer = ledger.claim(ledger_key)
    if isinstance(answer, Duplicate):
        entry = answer.entry
        previous = SendResult(entry.message_id or "", list(entry.accepted), dict(entry.refused))
        return Delivery(previous, duplicate=True)
    if isinstance(answer, Busy):
        raise ClaimBusyError(answer.retry_after_s)
    claim = answer.claim
    if claim.taken_over:
        logs.claim_taken_over(attempt=claim.attempt)
    recipients = None
    if claim.owed is not None:
        owed = set(claim.owed)
        recipients = [m for m in request.recipients() if m.addr_spec in owed]
        logs.resuming_partial_send(owed=list(claim.owed), accepted_count=len(claim.accepted))
    seed = message_id_seed(ledger_key, request)
    try:
        result = send_email(request, settings, idempotency_key=seed, recipients=recipients)
    except SendError as error:
        if error.refused and claim.accepted:
            # Every owed recipient was refused this time, but earlier attempts were accepted:
            # that is progress on a partly sent message, not a failure to forget.
            result = SendResult(claim.message_id or "", [], dict(error.refused))
        elif all(split_refusals(error.refused)):
            # Nothing was ever accepted, but the 5xx refusals are final: remember them, so the
            # redelivery this (transient) error asks for goes to the 4xx recipients only.
            _record_refusals(ledger, claim, error.refused)
            raise
        else:
            _release(ledger, claim)
            raise
    except BaseException:
        _release(ledger, claim)  # nothing was sent: let the next delivery try at once
        raise
    return _record(ledger, claim, result)


def _record_refusals(ledger: Ledger, claim: Claim, refused: Mapping[str, Refusal]) -> None:
    """After every recipient was refused, some for good: progress with nothing accepted."""
    final, deferred = split_refusals(refused)
    try:
        ledger.record_progress(
            claim,
            message_id=claim.message_id or "",  # none built reached DATA; a later attempt's counts
            accepted=[],
            refused=final,
            owed=list(deferred),
        )
    except Exception:  # noqa: BLE001 - the refusals are what the caller must hear about
        # Not recorded: free the key at least, so the redelivery can retry (everyone) at once
        # rather than after the lease; nothing was sent, so that repeats no email.
        _release(ledger, claim)


def _record(ledger: Ledger, claim: Claim, result: SendResult) -> Delivery:
    final, deferred = split_refusals(result.refused)
    try:
        # Nothing deferred means nothing owed: the record is complete.
        entry = ledger.record_progress(
            claim,
            message_id=result.message_id,
            accepted=result.accepted,
            refused=final,
            owed=list(deferred),
        )
    except Exception as exc:  # noqa: BLE001 - the email went out: report it whatever the ledger did
        # No redelivery for the deferred ones: without a record it would resend to everyone.
        logs.sent_not_recorded(error_type=type(exc).__name__, deferred=list(deferred))
        return Delivery(result)
    cumulative = SendResult(
        entry.message_id or result.message_id, list(entry.accepted), {**entry.refused, **deferred}
    )
    return Delivery(cumulative, owed=entry.owed or ())


def _release(ledger: Ledger, claim: Claim) -> None:
    try:
        ledger.release(claim)
    except Exception as exc:  # noqa: BLE001 - the original failure matters more; the lease expires
        logs.claim_not_released(error_type=type(exc).__name__)


def reset() -> None:
    """Drop warm-instance state: cached profiles, clients, TLS contexts, templates, ledgers."""
    secrets.reset()
    transport.reset()
    templates.reset()
    webhook_auth.reset()
    with _ledgers_lock:
        _ledgers.clear()
