"""The send path both triggers share: request -> content -> policy -> profile -> MIME -> SMTP.

Checks that need nothing but the request run first, so a bad request is a 400 even while the
secret is broken. After an authentication failure the secret is re-read once, bypassing the cache,
and the send is retried only if the payload changed: a second login with the same wrong password
would only feed the provider's lockout counters. A refused cached OAuth2 token first gets one fresh
token and one more try (`sender.sign_in`); an identity provider refusing the client is re-read the
same way.
Every failure the SMTP server or the identity provider caused carries a hint (`sender.hints`).

Exactly-once delivery per idempotency key wraps this path (`sender.exactly_once`).
"""

from __future__ import annotations

from sender import hints, instance, logs, transport
from sender.addresses import Mailbox
from sender.classify import classify
from sender.config import Settings
from sender.deadline import Deadline
from sender.errors import AuthenticationError, IdentityProviderRefusedError, InvalidRequestError
from sender.header_safety import unsafe_reason
from sender.message import EmailRequest
from sender.mime import BuiltMessage, Content, build_message
from sender.outcome import SendResult
from sender.policy import check_provider_limits, check_recipients, resolve_from_address
from sender.profile import SmtpProfile
from sender.secrets import LoadedProfile
from sender.sign_in import TokenSource, token_source


def resolve_content(request: EmailRequest, settings: Settings) -> Content:
    """Subject and bodies: the request's own fields win over what a template renders."""
    subject, text, html = request.subject, request.text, request.html
    if request.template is not None:
        from sender import templates  # noqa: PLC0415 - Jinja's sandbox only when a template is used

        environment = instance.template_environment(settings.templates_dir)
        rendered = templates.render(environment, request.template, request.data)
        subject = subject if subject is not None else rendered.subject
        text = text if text is not None else rendered.text
        html = html if html is not None else rendered.html
    if not subject:
        raise InvalidRequestError.one("subject", "is required (the template does not set one)")
    # A template renders caller data into the subject: it passes the same check as a subject sent
    # directly, or an encoded word in `data` could still break out of the header.
    reason = unsafe_reason(subject)
    if reason is not None:
        raise InvalidRequestError.one("data", f"the rendered subject {reason}")
    if text is None and html is None:
        raise InvalidRequestError.one("template", "renders neither a text nor an html body")
    return Content(subject=subject, text=text, html=html)


def _build(
    request: EmailRequest,
    content: Content,
    profile: SmtpProfile,
    settings: Settings,
    *,
    seed: str | None,
    recipients: list[Mailbox] | None,
) -> BuiltMessage:
    """The message as *profile* sends it: its from address, within its provider's limits."""
    check_provider_limits(request, profile, recipients)
    return build_message(
        request,
        content,
        resolve_from_address(request, profile, settings),
        seed=seed,
        max_bytes=settings.max_message_bytes,
        recipients=recipients,
    )


def _attempt(
    built: BuiltMessage,
    loaded: LoadedProfile,
    settings: Settings,
    deadline: Deadline,
    token: TokenSource | None,
) -> SendResult:
    try:
        context = instance.tls_context(settings.smtp_ca_file)
        if settings.smtp_pool_size > 0:
            refused = instance.session_pool(settings, loaded.profile).send(
                loaded.profile,
                loaded.fingerprint,
                built.envelope,
                built.data,
                context=context,
                deadline=deadline,
                access_token=token,
            )
        else:  # one session per message
            refused = transport.send(
                loaded.profile,
                built.envelope,
                built.data,
                context=context,
                deadline=deadline,
                access_token=token,
            )
    except Exception as exc:  # noqa: BLE001 - classified once, into a SendError
        raise hints.annotate(classify(exc), loaded.profile) from None
    accepted = [addr for addr in built.envelope.recipients if addr not in refused]
    return SendResult(message_id=built.message_id, accepted=accepted, refused=refused)


def _deliver(
    built: BuiltMessage, loaded: LoadedProfile, settings: Settings, deadline: Deadline
) -> SendResult:
    """Send with *loaded*'s credentials; a refused OAuth2 token that came from the cache gets one
    fresh token and one more try (a refused password is never tried twice with one payload)."""
    token = token_source(loaded, settings, deadline)
    try:
        return _attempt(built, loaded, settings, deadline, token)
    except AuthenticationError:
        if token is None or not token.refused():
            raise
    return _attempt(built, loaded, settings, deadline, token)


def send_email(
    request: EmailRequest,
    settings: Settings,
    *,
    seed: str | None = None,
    recipients: list[Mailbox] | None = None,
    deadline_s: float | None = None,
) -> SendResult:
    """Send `request`; raise a `SendError` subclass on failure.

    `seed` makes the Message-ID deterministic (`sender.mime.message_id_seed`); `recipients`
    narrows the envelope to the recipients still owed (a partial redelivery). One deadline
    (`SEND_DEADLINE_S`, or the shorter `deadline_s` a batch has left) covers everything from
    here, the rotation retry included, so no send can still be running when the idempotency
    lease (deadline + margin) runs out.
    """
    total_s = settings.send_deadline_s
    deadline = Deadline(
        total_s if deadline_s is None else min(total_s, deadline_s),
        expired=transport.session_deadline_error,
        step_s=settings.smtp_timeout_s,
        alarms=instance.alarm_clock(),
    )
    content = resolve_content(request, settings)
    check_recipients(request, settings)
    store = instance.profile_store(settings)
    loaded = store.get(deadline)
    built = _build(request, content, loaded.profile, settings, seed=seed, recipients=recipients)
    try:
        return _deliver(built, loaded, settings, deadline)
    except AuthenticationError:
        logs.auth_failed_rereading_secret()
        fresh, changed = store.reread(loaded, deadline)
        if not changed:
            logs.auth_failed_secret_unchanged()
            raise
    except IdentityProviderRefusedError as refusal:
        # A rotated client secret (or key) is picked up before the refusal is reported.
        logs.idp_refused_rereading_secret(flow=refusal.flow, code=refusal.code)
        fresh, changed = store.reread(loaded, deadline)
        if not changed:
            logs.idp_refused_secret_unchanged(flow=refusal.flow, code=refusal.code)
            raise
    # The secret was rotated: the new profile may carry a new host or from, so rebuild.
    built = _build(request, content, fresh.profile, settings, seed=seed, recipients=recipients)
    return _deliver(built, fresh, settings, deadline)
