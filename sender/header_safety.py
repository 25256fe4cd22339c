"""What text may become part of a header: the one check every header-bound string passes.

Refusing CR and LF is not enough. Python's `email` package *decodes* RFC 2047 encoded words
(`=?utf-8?q?=0D=0A?=`) when a header value is set and encodes the result again when the message
is written, so an encoded CR LF in a subject, a display name or a filename came out as a real line
break on some Python versions: a caller could add a second From. Unicode line separators and C1
controls are line breaks to some parsers too, and a lone surrogate cannot be encoded at all.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# An RFC 2047 encoded word: =?charset?B|Q?text?=
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?")


def has_control_characters(text: str) -> bool:
    """Line breaks and other controls (C0, C1, U+2028/9): never valid in a host or user name."""
    return bool(_BREAKING.search(text))


def has_lone_surrogate(text: str) -> bool:
    return bool(_SURROGATE.search(text))


def without_lone_surrogates(text: str) -> str:
    """`text` with each unpaired surrogate replaced by U+FFFD: a caller's key made fit to be
    quoted (a field path, a log line) without the text that could not be encoded."""
    return _SURROGATE.sub("\ufffd", text)


def unsafe_reason(text: str) -> str | None:
    """Why `text` must not go into a header, or None when it may."""
    if _BREAKING.search(text):
        return "must not contain line breaks or control characters"
    if has_lone_surrogate(text):
        return "contains an unpaired surrogate (not valid Unicode text)"
    if _ENCODED_WORD.search(text):
        return "must not contain RFC 2047 encoded words (=?charset?q?...?=); send plain Unicode"
    return None


def one_line(text: object) -> str:
    """`text` made fit for one header line, for subjects built from alert labels: line breaks and
    controls become spaces, an unpaired surrogate becomes U+FFFD, and an encoded-word opener `=?`
    is split (`= ?`), so the value reads the same but can never decode into something else.

    The alert sources cannot fix a hostile label the way an API caller can fix a field, and
    refusing the notification would lose the alert; the body still shows the value verbatim."""
    value = _BREAKING.sub(" ", str(text))
    value = without_lone_surrogates(value)
    value = value.replace("=?", "= ?")
    return " ".join(value.split())
