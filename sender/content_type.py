"""An attachment's media type: RFC 2045 `type/subtype` with `; attribute=value` parameters.

`parse` accepts what a careful sender writes (`text/csv; charset=utf-8`,
`text/plain; charset="windows-1252"; format=flowed`) and refuses everything else with the reason,
so a caller's content type can never smuggle a line break, a second header or an encoded word
into the message, nor a parameter beside `charset`, `format` and `delsp` (a `name=` that
contradicts the filename, say). `for_attachment` decides what actually goes out for a text
attachment: a `text/*` part without a charset says `charset=utf-8` when its bytes are UTF-8, and
is sent as `application/octet-stream` when they are not (a mail client would otherwise decode them
as ASCII).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field

from sender.errors import ContentTypeError
from sender.header_safety import unsafe_reason

# RFC 2045 5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
_MIME_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # noqa: S105 - a grammar, not a secret
# quoted-string: printable ASCII but `"` and `\`, or a quoted pair (`\"`, `\\`).
_QUOTED = r'"(?:[ !#-\[\]-~]|\\[ -~])*"'
_TYPE = re.compile(rf"\s*({_MIME_TOKEN})/({_MIME_TOKEN})\s*")
_PARAMETER = re.compile(rf";\s*({_MIME_TOKEN})\s*=\s*({_MIME_TOKEN}|{_QUOTED})\s*")
_UNQUOTE = re.compile(r"\\(.)")
MAX_CHARS = 256
# The parameters that make sense on an attachment's Content-Type: how its text is encoded
# (RFC 2046) and laid out (RFC 3676). Any other (`name`, `filename`, `boundary`, ...) could
# contradict the part's filename or structure, which the function writes itself.
PARAMETERS = ("charset", "format", "delsp")
# Types whose inner structure the attachment's bytes would have to match.
_COMPOSITE = frozenset({"multipart", "message"})


@dataclass(frozen=True, slots=True)
class ContentType:
    maintype: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)  # names lower-cased, values unquoted

    def __str__(self) -> str:
        parts = [f"{self.maintype}/{self.subtype}"]
        parts += [f"{name}={_quote(value)}" for name, value in self.params.items()]
        return "; ".join(parts)


def _quote(value: str) -> str:
    if re.fullmatch(_MIME_TOKEN, value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse(text: str) -> ContentType:
    """`text/csv; charset="utf-8"` -> ContentType('text', 'csv', {'charset': 'utf-8'})."""
    if len(text) > MAX_CHARS:
        raise ContentTypeError(f"must be at most {MAX_CHARS} characters")
    reason = unsafe_reason(text)
    if reason is not None:
        raise ContentTypeError(reason)
    if not text.isascii():
        raise ContentTypeError("must be US-ASCII (RFC 2045)")
    head = _TYPE.match(text)
    if head is None:
        raise ContentTypeError("must look like type/subtype")
    maintype, subtype = head.group(1).lower(), head.group(2).lower()
    if maintype in _COMPOSITE:
        raise ContentTypeError("multipart/* and message/* cannot be attachment types")
    params: dict[str, str] = {}
    position = head.end()
    while position < len(text):
        parameter = _PARAMETER.match(text, position)
        if parameter is None:
            raise ContentTypeError("parameters must be ; name=value (a token or a quoted string)")
        name, raw = parameter.group(1).lower(), parameter.group(2)
        if name not in PARAMETERS:
            raise ContentTypeError(
                f"parameter {name!r} is not taken (only {', '.join(PARAMETERS)}; "
                "the attachment's name is its filename)"
            )
        if name in params:
            raise ContentTypeError(f"parameter {name!r} is given twice")
        params[name] = _UNQUOTE.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
        position = parameter.end()
    if "charset" in params:
        params["charset"] = params["charset"].lower()
    return ContentType(maintype, subtype, params)


OCTET_STREAM = ContentType("application", "octet-stream")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def for_attachment(declared: str | None, filename: str, data: bytes) -> ContentType:
    """What the attachment goes out as: the caller's type, else one guessed from the filename;
    a `text/*` type without a charset gets `charset=utf-8` if `data` is UTF-8, else becomes
    `application/octet-stream` (never a text part that mail clients would decode wrongly)."""
    if declared is not None:
        kind = parse(declared)
    else:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        try:
            kind = parse(guessed) if guessed else OCTET_STREAM
        except ContentTypeError:  # a guessed message/rfc822 (.eml): sent as opaque bytes
            kind = OCTET_STREAM
    if kind.maintype != "text" or "charset" in kind.params:
        return kind
    if _is_utf8(data):
        return ContentType(kind.maintype, kind.subtype, {**kind.params, "charset": "utf-8"})
    return OCTET_STREAM
