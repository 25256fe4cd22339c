"""Parsing and checking one email address (`ops@example.com` or `Name <ops@example.com>`).

The stdlib parsers are forgiving by design (they are made for reading mail); a sender must be
strict instead, so this module accepts exactly one mailbox per string, refuses anything that could
break out of a header (`header_safety`), refuses the `%` and `!` routing forms that relays still
rewrite (they would smuggle a foreign destination past an allow-list), and encodes
internationalised domains with IDNA 2008 / UTS 46 so the envelope and headers stay ASCII.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import getaddresses

import idna

from sender.errors import AddressError
from sender.header_safety import unsafe_reason

# Dot-atom local part (RFC 5322 3.2.3). Quoted local parts are legal but so rare in automated mail,
# and so often a sign of an injection attempt, that refusing them is the kinder default.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
MAX_ADDRESS_LENGTH = 254
# A display name is one header word sequence; beyond this it cannot always be folded under the
# 998-character line limit, and no real name is this long.
MAX_DISPLAY_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A checked address: `addr_spec` is ASCII (IDNA domain), `display_name` may be any Unicode."""

    display_name: str
    local_part: str
    domain: str  # ASCII (punycode where needed), lower case

    @property
    def addr_spec(self) -> str:
        return f"{self.local_part}@{self.domain}"

    def header_address(self) -> Address:
        return Address(display_name=self.display_name, username=self.local_part, domain=self.domain)

    def __str__(self) -> str:
        return self.addr_spec


def ascii_domain(domain: str) -> str:
    """Lower-case ASCII form of a domain, IDNA-encoding Unicode labels; raises AddressError."""
    domain = domain.strip().rstrip(".")
    if not domain:
        raise AddressError("the domain is empty")
    try:
        # Non-transitional UTS 46: `faß.de` is xn--fa-hia.de (IDNA 2008), not fass.de (IDNA 2003).
        encoded = idna.encode(domain, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise AddressError("the domain is not a valid internationalised domain name") from None
    labels = encoded.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise AddressError("the domain is not a valid host name")
    return encoded


def parse_mailbox(text: str) -> Mailbox:
    """Parse exactly one mailbox, strictly."""
    reason = unsafe_reason(text)
    if reason is not None:
        raise AddressError(reason)
    if not text.strip():
        raise AddressError("is empty")
    parsed = getaddresses([text])
    if len(parsed) != 1 or parsed[0] == ("", ""):
        raise AddressError("must be exactly one address")
    display_name, addr_spec = parsed[0]
    if addr_spec.count("@") != 1:
        raise AddressError("is not an address of the form local@domain")
    local_part, domain = addr_spec.rsplit("@", 1)
    if not _LOCAL_PART.match(local_part):
        raise AddressError("has an invalid local part (non-ASCII local parts are not supported)")
    if "%" in local_part or "!" in local_part:
        raise AddressError("uses a % or ! routing form, which relays may forward elsewhere")
    if len(display_name) > MAX_DISPLAY_NAME_LENGTH:
        raise AddressError(f"has a display name longer than {MAX_DISPLAY_NAME_LENGTH} characters")
    mailbox = Mailbox(display_name.strip(), local_part, ascii_domain(domain))
    if len(mailbox.addr_spec) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"is longer than {MAX_ADDRESS_LENGTH} characters")
    return mailbox


def matches_allow_list(mailbox: Mailbox, allowed: tuple[str, ...]) -> bool:
    """Entries are addresses (`a@b.c`) or domains (`b.c`, matching `x@b.c` only, not subdomains)."""
    address = mailbox.addr_spec.lower()
    for entry in allowed:
        if "@" in entry:
            local, _, domain = entry.rpartition("@")
            try:
                if address == f"{local}@{ascii_domain(domain)}":
                    return True
            except AddressError:
                continue
        else:
            try:
                if mailbox.domain == ascii_domain(entry.lstrip("@")):
                    return True
            except AddressError:
                continue
    return False
