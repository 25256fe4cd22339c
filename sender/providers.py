"""Provider presets: what the profile's ``provider`` fills in, and each provider's known limits.

A preset fills every field the profile omits: host, port, security and (SendGrid) the username.
Fields the profile gives win, with one rule on top: an omitted ``security`` comes from the preset
even when the profile overrides the port (PRODUCT.md), while an omitted ``port`` follows a
``security`` the profile overrides (465 for ssl, 587 for starttls) — the preset's port belongs to
the preset's security.

The limits are the provider's published ones, kept here so that the rest of the function can read
them: the session pool opens at most ``connections`` sessions per instance, and a message with more
than ``recipients_per_message`` recipients is refused with a 400 before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sender.errors import ConfigurationError

Security = Literal["ssl", "starttls", "none"]
STANDARD_PORTS: dict[str, int] = {"ssl": 465, "starttls": 587, "none": 25}
# An AWS region id: us-east-1, eu-central-2, ap-southeast-3, us-gov-west-1.
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


@dataclass(frozen=True, slots=True)
class Limits:
    """A provider's published limits; None: none we know of."""

    connections: int | None = None  # concurrent SMTP sessions per mailbox
    messages_per_minute: int | None = None
    recipients_per_message: int | None = None  # to + cc + bcc

    def describe(self) -> str:
        parts = []
        if self.connections is not None:
            parts.append(f"{self.connections} concurrent connections per mailbox")
        if self.messages_per_minute is not None:
            parts.append(f"{self.messages_per_minute} messages a minute")
        if self.recipients_per_message is not None:
            parts.append(f"{self.recipients_per_message} recipients per message")
        return ", ".join(parts) or "none published"


@dataclass(frozen=True, slots=True)
class Preset:
    """One provider. ``host`` may hold ``{region}`` (``region`` then required), or
    ``region_hosts`` maps the accepted regions to their hosts (``region`` optional)."""

    name: str
    host: str
    port: int
    security: Security
    username: str | None = None
    limits: Limits = field(default_factory=Limits)
    region_hosts: Mapping[str, str] | None = None
    # Hosts of this provider besides the preset's (for hints on a profile without `provider`).
    other_hosts: tuple[str, ...] = ()

    @property
    def takes_region(self) -> bool:
        return "{region}" in self.host or self.region_hosts is not None

    def host_for(self, region: str | None) -> str:
        if "{region}" in self.host:
            if region is None:
                raise ConfigurationError(
                    f"provider {self.name} needs the profile's region (for example us-east-1)"
                )
            if not _AWS_REGION.match(region):
                raise ConfigurationError(
                    f"provider {self.name}: region must be an AWS region id such as eu-west-1"
                )
            return self.host.replace("{region}", region)
        if self.region_hosts is not None and region is not None:
            if region not in self.region_hosts:
                known = ", ".join(sorted(self.region_hosts))
                raise ConfigurationError(f"provider {self.name}: region must be one of {known}")
            return self.region_hosts[region]
        return self.host


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        # Gmail and Google Workspace: 100 recipients per message sent over SMTP.
        Preset("gmail", "smtp.gmail.com", 465, "ssl",
               limits=Limits(recipients_per_message=100)),
        # Exchange Online: 3 concurrent connections and 30 messages a minute per mailbox.
        Preset("microsoft365", "smtp.office365.com", 587, "starttls",
               limits=Limits(connections=3, messages_per_minute=30),
               other_hosts=("smtp-legacy.office365.com", "outlook.office365.com")),
        Preset("outlook", "smtp-mail.outlook.com", 587, "starttls"),
        Preset("sendgrid", "smtp.sendgrid.net", 465, "ssl", username="apikey"),
        # SES: at most 50 recipients (to, cc and bcc together) per message.
        Preset("ses", "email-smtp.{region}.amazonaws.com", 465, "ssl",
               limits=Limits(recipients_per_message=50)),
        Preset("mailgun", "smtp.mailgun.org", 465, "ssl",
               region_hosts={"us": "smtp.mailgun.org", "eu": "smtp.eu.mailgun.org"}),
        # Postmark: at most 50 recipients per message.
        Preset("postmark", "smtp.postmarkapp.com", 587, "starttls",
               limits=Limits(recipients_per_message=50)),
    )
}  # fmt: skip


def _omitted(value: object) -> bool:
    return value is None or value == ""


def preset_named(name: object) -> Preset:
    """The preset called *name*; an unknown one is a `ConfigurationError` naming the known."""
    preset = PRESETS.get(name) if isinstance(name, str) else None
    if preset is None:
        shown = repr(name) if isinstance(name, str) and name.isidentifier() else "given"
        raise ConfigurationError(
            f"the SMTP profile's provider {shown} is unknown; known providers: {', '.join(PRESETS)}"
        )
    return preset


def apply_preset(values: Mapping[str, Any]) -> tuple[dict[str, Any], Preset | None]:
    """The profile's fields with the preset's filled in where omitted, and the preset (None
    without ``provider``). ``region`` is checked here: only a preset that takes one accepts it."""
    filled = dict(values)
    region = filled.pop("region", None)
    if _omitted(filled.get("provider")):
        if not _omitted(region):
            raise ConfigurationError("the SMTP profile's region needs a provider (ses or mailgun)")
        return filled, None
    preset = preset_named(filled["provider"])
    if not _omitted(region) and not isinstance(region, str):
        raise ConfigurationError("the SMTP profile's region must be a string")
    region = None if _omitted(region) else str(region).strip().lower()
    if region is not None and not preset.takes_region:
        raise ConfigurationError(f"provider {preset.name} takes no region")
    host = preset.host_for(region)
    if _omitted(filled.get("host")):
        filled["host"] = host
    given_security = filled.get("security")
    if _omitted(filled.get("port")):
        # The preset's port is its security's; a security the profile chose brings its own.
        overridden = not _omitted(given_security) and given_security != preset.security
        filled["port"] = (
            STANDARD_PORTS.get(str(given_security), preset.port) if overridden else preset.port
        )
    if _omitted(given_security):
        filled["security"] = preset.security
    if _omitted(filled.get("username")) and preset.username is not None:
        filled["username"] = preset.username
    return filled, preset


def provider_for_host(host: str) -> str | None:
    """The preset whose server *host* is (for hints about a profile without ``provider``)."""
    name = host.strip().rstrip(".").lower()
    for preset in PRESETS.values():
        hosts = {preset.host, *preset.other_hosts, *(preset.region_hosts or {}).values()}
        if name in hosts:
            return preset.name
        if "{region}" in preset.host:
            head, _, tail = preset.host.partition("{region}")
            if name.startswith(head) and name.endswith(tail):
                return preset.name
    return None


def pool_size(configured: int, limits: Limits) -> int:
    """Sessions a pool may open: `SMTP_POOL_SIZE`, capped by the provider's connection limit."""
    if limits.connections is None:
        return configured
    return min(configured, limits.connections)
