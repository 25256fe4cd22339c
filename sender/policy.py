"""Who may send to whom: the checks that keep the function from being an open relay.

These depend on configuration (allow-lists, limits) and on the profile (its default sender), so
they run after the request itself validated and the profile was loaded.
"""

from __future__ import annotations

from sender.addresses import Mailbox, matches_allow_list
from sender.config import Settings
from sender.errors import ConfigurationError, FieldProblem, InvalidRequestError
from sender.message import EmailRequest
from sender.profile import SmtpProfile


def resolve_from_address(
    request: EmailRequest, profile: SmtpProfile, settings: Settings
) -> Mailbox:
    """The From mailbox: the request's when allowed, else the profile's default."""
    default = profile.default_sender()
    if request.from_address is None:
        if default is None:
            raise ConfigurationError(
                "no sender: the SMTP profile has no 'from' and its username is not an address"
            )
        return default
    wanted = request.from_address.addr_spec.lower()
    if default is not None and wanted == default.addr_spec.lower():
        return request.from_address
    if settings.allowed_senders and matches_allow_list(
        request.from_address, settings.allowed_senders
    ):
        return request.from_address
    raise InvalidRequestError.one(
        "from",
        "is not an allowed sender (set ALLOWED_SENDERS to permit it; by default only the "
        "profile's from address may be used)",
    )


def check_recipients(request: EmailRequest, settings: Settings) -> None:
    """MAX_RECIPIENTS and ALLOWED_RECIPIENTS, each problem named by its field."""
    problems: list[FieldProblem] = []
    total = len(request.recipients())
    if total > settings.max_recipients:
        problems.append(
            FieldProblem("to", f"{total} recipients exceed the limit of {settings.max_recipients}")
        )
    allowed = settings.allowed_recipients
    if allowed:
        for field_name in ("to", "cc", "bcc"):
            mailboxes: list[Mailbox] = getattr(request, field_name)
            for index, mailbox in enumerate(mailboxes):
                if not matches_allow_list(mailbox, allowed):
                    problems.append(
                        FieldProblem(f"{field_name}[{index}]", "is not an allowed recipient")
                    )
    if problems:
        raise InvalidRequestError(problems)


def check_provider_limits(
    request: EmailRequest, profile: SmtpProfile, recipients: list[Mailbox] | None = None
) -> None:
    """The provider's recipients-per-message limit (`sender.providers`): a message over it is a
    400 naming the limit, refused before anything is sent (the provider would refuse it anyway,
    after the connection and sign-in). *recipients*: the envelope of a partial redelivery."""
    limit = profile.limits.recipients_per_message
    if limit is None:
        return
    total = len(recipients) if recipients is not None else len(request.recipients())
    if total > limit:
        raise InvalidRequestError.one(
            "to",
            f"{total} recipients exceed {profile.provider}'s limit of {limit} per message "
            "(to, cc and bcc together): split the message",
        )
