"""Attachment content types: RFC 2045 parameters accepted, anything else refused with a reason;
what a text attachment goes out as."""

from __future__ import annotations

import pytest

from sender.content_type import for_attachment, parse
from sender.errors import ContentTypeError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("text/csv", "text/csv"),
        ("TEXT/CSV", "text/csv"),
        ("text/csv; charset=utf-8", "text/csv; charset=utf-8"),
        ("text/csv;charset=UTF-8", "text/csv; charset=utf-8"),  # charset names are case-blind
        ('text/plain; charset="windows-1252"', "text/plain; charset=windows-1252"),
        ("text/plain; charset=utf-8; format=flowed", "text/plain; charset=utf-8; format=flowed"),
        ('text/plain; format="a \\"quoted\\" word; with ;"', None),
        ("text/plain; DelSp=yes; format=flowed", "text/plain; delsp=yes; format=flowed"),
        ("application/vnd.ms-excel", "application/vnd.ms-excel"),
        ("  image/png  ", "image/png"),
    ],
)
def test_well_formed_types_are_accepted(text: str, expected: str | None) -> None:
    parsed = parse(text)
    if expected is not None:
        assert str(parsed) == expected
    else:
        assert parsed.params == {"format": 'a "quoted" word; with ;'}
        assert parse(str(parsed)) == parsed  # what goes out parses back the same


@pytest.mark.parametrize(
    "text",
    [
        "nonsense",
        "text/",
        "/csv",
        "text/csv; charset",  # a name without a value
        "text/csv; charset=",
        "text/csv; =utf-8",
        "text/csv charset=utf-8",  # no semicolon
        "text/csv; charset=utf-8;",  # a dangling separator
        "text/csv; charset=utf-8; charset=latin-1",  # which one?
        'text/csv; charset="utf-8',  # unterminated quote
        "text/csv; charset=utf 8",
        "text/csv\r\nBcc: victim@example.org",
        "text/csv; charset=utf-8\nX-Injected: 1",
        "text/csv; name==?utf-8?q?a=0D=0AX=3A_y?=",  # an encoded word
        "text/csv; charset=ütf-8",  # RFC 2045 is US-ASCII
        "multipart/mixed; boundary=x",
        "message/rfc822",
        "text/csv; " + "; ".join(f"p{i}=v" for i in range(9)),
        "text/csv; charset=" + "x" * 300,
        'text/csv; name="invoice.pdf.exe"',  # only charset, format and delsp: never a name
        "application/x-thing; note=x",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ContentTypeError):
        parse(text)


def test_utf8_text_without_charset_says_utf8() -> None:
    kind = for_attachment("text/csv", "r.csv", "이름,값\n".encode())
    assert str(kind) == "text/csv; charset=utf-8"
    guessed = for_attachment(None, "report.csv", b"plain,ascii\n")
    assert str(guessed) == "text/csv; charset=utf-8"


def test_text_that_is_not_utf8_goes_out_as_octet_stream() -> None:
    assert str(for_attachment(None, "dump.txt", b"\xff\xfe\x00\x01")) == "application/octet-stream"
    assert str(for_attachment("text/plain", "x", b"caf\xe9")) == "application/octet-stream"


def test_the_callers_charset_is_kept_whatever_the_bytes() -> None:
    kind = for_attachment("text/plain; charset=windows-1252", "x.txt", b"caf\xe9")
    assert str(kind) == "text/plain; charset=windows-1252"


def test_non_text_types_are_left_alone() -> None:
    assert str(for_attachment(None, "a.bin", b"\xff")) == "application/octet-stream"
    assert str(for_attachment("image/png", "a", b"\x89PNG")) == "image/png"
    assert str(for_attachment(None, "mail.eml", b"x")) == "application/octet-stream"
