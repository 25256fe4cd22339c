"""The send path both triggers share: request -> content -> policy -> profile -> MIME -> SMTP.

Checks that need nothing but the request run first, so a bad request is a 400 even while the
secret is broken. After an authentication failure the secret is re-read once, bypassing the cache,
and the send is retried only if the payload changed: a second login with the same wrong password
would only feed the provider's lockout counters.
"""

from __future__ import annotations

from sender import logs, secrets, templates, transport
from sender.addresses import Mailbox
from sender.config import Settings
from sender.message import EmailRequest
from sender.mime import BuiltMessage, Content, build_message
from sender.outcome import AuthenticationError, InvalidRequest, SendResult, classify
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


def _deliver(built: BuiltMessage, profile: SmtpProfile, settings: Settings) -> SendResult:
    try:
        refused = transport.send(
            profile,
            built.envelope,
            built.data,
            ca_file=settings.smtp_ca_file,
            step_timeout_s=settings.smtp_timeout_s,
            deadline_s=settings.send_deadline_s,
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
    """
    content = resolve_content(request, settings)
    check_recipients(request, settings)
    store = secrets.profile_store(settings)
    profile = store.get()
    built = _build(
        request, content, profile, settings, idempotency_key=idempotency_key, recipients=recipients
    )
    try:
        return _deliver(built, profile, settings)
    except AuthenticationError:
        logs.auth_failed_rereading_secret()
        fresh, changed = store.reread()
        if not changed:
            logs.auth_failed_secret_unchanged()
            raise
    # The secret was rotated: the new profile may carry a new host or from, so rebuild.
    built = _build(
        request, content, fresh, settings, idempotency_key=idempotency_key, recipients=recipients
    )
    return _deliver(built, fresh, settings)


def reset() -> None:
    """Drop warm-instance state: cached profiles, clients, TLS contexts, template environments."""
    secrets.reset()
    transport.reset()
    templates.reset()
