"""One address in, one checked mailbox out — or a reason."""

from __future__ import annotations

import pytest

from sender.addresses import ascii_domain, matches_allow_list, parse_mailbox
from sender.errors import AddressError


def test_plain_address() -> None:
    mailbox = parse_mailbox("ops@example.com")
    assert (mailbox.display_name, mailbox.addr_spec) == ("", "ops@example.com")


def test_display_name_with_unicode_and_idna_domain() -> None:
    mailbox = parse_mailbox("김철수 <ops@예시.한국>")
    assert mailbox.display_name == "김철수"
    assert mailbox.addr_spec == "ops@xn--vv4b11d.xn--3e0b707e"


def test_quoted_display_name_with_comma_is_one_address() -> None:
    assert parse_mailbox('"Kim, J" <kim@example.com>').display_name == "Kim, J"


@pytest.mark.parametrize(
    "text",
    [
        "a@example.com, b@example.com",  # two addresses in one field
        "ops@example.com\r\nBcc: victim@example.org",  # header injection
        "ops@example.com\n",
        "no-at-sign",
        "a@@example.com",
        "ops@localhost",  # not a host name with a dot
        "ops@-bad-.com",
        "",
        "   ",
        "jöhn@example.com",  # non-ASCII local part needs SMTPUTF8
        "a" * 250 + "@example.com",
        "=?utf-8?q?Boss=0D=0AFrom=3A_x?= <ops@example.com>",  # an encoded line break
        "Boss\u2028Bcc: x <ops@example.com>",  # a Unicode line separator
        "Boss\x85 <ops@example.com>",  # NEL, a C1 control
        "B\ud800ss <ops@example.com>",  # a lone surrogate cannot be encoded at all
        "victim%evil.test@example.com",  # percent hack: relays forward to evil.test
        "evil.test!victim@example.com",  # bang path, likewise
        "D" * 201 + " <ops@example.com>",  # a display name too long to fold
    ],
)
def test_rejected(text: str) -> None:
    with pytest.raises(AddressError):
        parse_mailbox(text)


def test_domain_is_lower_cased() -> None:
    assert ascii_domain("Example.COM.") == "example.com"


def test_idna_2008_not_2003() -> None:
    # IDNA 2003 maps ß to ss and would send faß.de's mail to fass.de, another domain.
    assert ascii_domain("faß.de") == "xn--fa-hia.de"


@pytest.mark.parametrize(
    ("address", "allowed", "expected"),
    [
        ("ops@example.com", ("example.com",), True),
        ("ops@sub.example.com", ("example.com",), False),
        ("OPS@Example.com", ("ops@example.com",), True),
        ("other@example.com", ("ops@example.com",), False),
        ("ops@예시.한국", ("예시.한국",), True),
        ("ops@evil.com", ("example.com", "@other.org"), False),
    ],
)
def test_allow_list(address: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert matches_allow_list(parse_mailbox(address), allowed) is expected
