"""The email request: validation of the JSON a caller sends (HTTP body or Pub/Sub data).

`parse_request` turns untrusted JSON into an `EmailRequest` or raises `InvalidRequestError` whose
details name each bad field the way a caller wrote it (`to[1]`, `attachments[0].content`).
Only checks that need no configuration live here; limits and allow-lists are in `policy.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sender import content_type
from sender.addresses import Mailbox, parse_mailbox
from sender.errors import AddressError, ContentTypeError, FieldProblem, InvalidRequestError
from sender.header_safety import has_lone_surrogate, unsafe_reason, without_lone_surrogates

# Headers the function writes itself, or that would change who receives the message or how it
# is parsed. A caller setting them could forge a sender, add hidden recipients or break MIME.
STRUCTURAL_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender",
        "mime-version", "received", "return-path", "delivered-to", "auto-submitted",
        "dkim-signature", "arc-seal", "arc-message-signature", "arc-authentication-results",
        "authentication-results", "x-original-to", "content-transfer-encoding",
    }
)  # fmt: skip
_STRUCTURAL_PREFIXES = ("content-", "resent-", "list-id")
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 ftext, bounded to fit a line
TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_SUBJECT_CHARS = 998
MAX_IDEMPOTENCY_KEY_CHARS = 256


def _one_or_many(value: Any) -> Any:
    """`"a@b"` -> `["a@b"]`; lists pass through; anything else fails the list check below."""
    return [value] if isinstance(value, str) else value


def _mailbox(value: Any) -> Mailbox:
    if not isinstance(value, str):
        raise PydanticCustomError("address_type", "must be a string address")
    try:
        return parse_mailbox(value)
    except AddressError as exc:
        raise PydanticCustomError(
            "address", "not a valid address: {why}", {"why": str(exc)}
        ) from None


MailboxField = Annotated[Mailbox, BeforeValidator(_mailbox)]
MailboxList = Annotated[list[MailboxField], BeforeValidator(_one_or_many)]


def _single_line(value: str, what: str) -> str:
    reason = unsafe_reason(value)
    if reason is not None:
        raise PydanticCustomError(
            "header_injection", "{what} {reason}", {"what": what, "reason": reason}
        )
    return value


def _header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise PydanticCustomError("header_name", "is not a valid header name")
    lowered = name.lower()
    if lowered in STRUCTURAL_HEADERS or lowered.startswith(_STRUCTURAL_PREFIXES):
        raise PydanticCustomError(
            "header_structural",
            "{name} is set by the function and cannot be overridden",
            {"name": name},
        )
    return name


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, AfterValidator(lambda value: _single_line(value, "a header value"))]


KEY_RULE = f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable characters"


def idempotency_key_or_none(value: str) -> str | None:
    """The one rule for an idempotency key wherever it is given (body, header, Pub/Sub attribute,
    status URL): surrounding blanks dropped, then 1 to `MAX_IDEMPOTENCY_KEY_CHARS` printable
    characters; None when the key breaks it. One rule, so a key sent is a key that can be
    looked up."""
    key = value.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        return None
    return key


def _body_key(value: str) -> str:
    key = idempotency_key_or_none(value)
    if key is None:
        raise PydanticCustomError("idempotency_key", KEY_RULE)
    return key


IdempotencyKey = Annotated[str, AfterValidator(_body_key)]


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content: bytes
    content_type: str | None = None

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        _single_line(value, "a filename")
        if "/" in value or "\\" in value:
            raise PydanticCustomError("filename", "must be a file name, not a path")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> bytes:
        if not isinstance(value, str):
            raise PydanticCustomError("base64_type", "must be a base64 string")
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("base64", "is not valid base64") from None

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(content_type.parse(value))  # normalised: lower-case names, tidy quoting
        except ContentTypeError as exc:
            raise PydanticCustomError("content_type", "{why}", {"why": str(exc)}) from None


class EmailRequest(BaseModel):
    """One email, as the caller asked for it (before templates, policy and MIME)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    to: Annotated[MailboxList, Field(min_length=1)]
    cc: MailboxList = Field(default_factory=list)
    bcc: MailboxList = Field(default_factory=list)
    from_address: MailboxField | None = Field(default=None, alias="from")
    reply_to: MailboxList = Field(default_factory=list)
    subject: Annotated[str, Field(max_length=MAX_SUBJECT_CHARS)] | None = None
    text: str | None = None
    html: str | None = None
    template: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)
    idempotency_key: IdempotencyKey | None = None
    # Set by the alert sources, never from a caller's JSON: the conversation this email belongs
    # to (`sender.thread_headers`). Not part of the message content (`message_id_seed`).
    _thread: str | None = PrivateAttr(default=None)

    @property
    def thread(self) -> str | None:
        return self._thread

    def in_thread(self, thread: str) -> EmailRequest:
        """A copy of this request that joins the conversation `thread` (an alert group)."""
        joined = self.model_copy()
        joined._thread = thread
        return joined

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        return None if value is None else _single_line(value, "the subject")

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and not TEMPLATE_NAME.match(value):
            raise PydanticCustomError(
                "template_name", "must be a template name (lower-case letters, digits, - and _)"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _headers_once(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name in value:
            if name.lower() in seen:  # header names are case-insensitive: X-A and x-a are one
                raise PydanticCustomError(
                    "header_repeated", "{name} is given twice (names ignore case)", {"name": name}
                )
            seen.add(name.lower())
        return value

    @model_validator(mode="after")
    def _has_content(self) -> EmailRequest:
        if self.text is None and self.html is None and self.template is None:
            raise PydanticCustomError("body", "one of text, html or template is required")
        if self.subject is None and self.template is None:
            raise PydanticCustomError("subject", "subject is required unless a template sets it")
        return self

    def recipients(self) -> list[Mailbox]:
        """Every envelope recipient (to, cc, bcc), each address once, in order."""
        seen: set[str] = set()
        unique: list[Mailbox] = []
        for mailbox in [*self.to, *self.cc, *self.bcc]:
            key = mailbox.addr_spec.lower()
            if key not in seen:
                seen.add(key)
                unique.append(mailbox)
        return unique


def _child(path: str, key: object) -> str:
    """The path of `key` below `path`; a key that is not valid text is quoted with U+FFFD in
    place of its unpaired surrogates (a field path goes into answers and log lines)."""
    name = without_lone_surrogates(str(key))
    return f"{path}.{name}" if path else name


def _field_path(loc: tuple[int | str, ...], kind: str) -> str:
    """pydantic's `("to", 1)` -> `to[1]`; `("attachments", 0, "content")` -> its dotted path.

    A model-level check has no location; it is named by its error type (`subject`, `body`)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for a dict key
            continue
        else:
            path = _child(path, part)
    if path == "from" or path.startswith("from."):
        return "from"
    if not path:
        return "subject" if kind == "subject" else "text"
    return path


# pydantic's own wording for the common cases, in the words a JSON caller uses.
_PROBLEMS = {
    "missing": "is required",
    "too_short": "must not be empty",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "bytes_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be an object",
}


def field_problems(exc: ValidationError) -> list[FieldProblem]:
    """pydantic's errors as `FieldProblem`s named the way the caller wrote the fields."""
    return [
        FieldProblem(
            _field_path(tuple(error["loc"]), error["type"]),
            _PROBLEMS.get(error["type"], str(error["msg"])),
        )
        for error in exc.errors(include_url=False, include_input=False)
    ]


MAX_JSON_DEPTH = 32


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in order, before repeated keys are checked."""


def _as_dicts(value: Any, path: str, repeated: list[FieldProblem]) -> Any:
    """`_Pairs` -> dicts, everywhere in the document; each repeated key goes into `repeated`."""
    if isinstance(value, _Pairs):
        result: dict[str, Any] = {}
        for key, item in value:
            child = _child(path, key)
            if key in result:
                repeated.append(FieldProblem(child, "appears more than once in the same object"))
            result[key] = _as_dicts(item, child, repeated)
        return result
    if isinstance(value, list):
        return [_as_dicts(item, f"{path}[{i}]", repeated) for i, item in enumerate(value)]
    return value


def decode_json(raw: bytes | str, field_name: str) -> Any:
    """UTF-8 JSON from a caller (HTTP body, Pub/Sub data); else `InvalidRequestError` saying why.

    A key repeated in one object is refused: parsers disagree on which value wins, and a proxy
    that checked the first `to` must not see us send to the second.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document = json.loads(text, object_pairs_hook=_Pairs)
    except UnicodeDecodeError:
        raise InvalidRequestError.one(field_name, "is not UTF-8") from None
    except RecursionError:
        raise InvalidRequestError.one(field_name, "is nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InvalidRequestError.one(field_name, f"is not valid JSON ({where})") from None
    except ValueError:  # e.g. an integer beyond Python's digit limit
        raise InvalidRequestError.one(field_name, "is not valid JSON") from None
    repeated: list[FieldProblem] = []
    try:
        document = _as_dicts(document, "", repeated)
    except RecursionError:
        raise InvalidRequestError.one(field_name, "is nested too deeply") from None
    if repeated:
        raise InvalidRequestError(repeated[:20])
    return document


def _unusable_strings(value: Any, path: str, depth: int = 0) -> list[FieldProblem]:
    """Strings no email can carry (unpaired surrogates) and absurd nesting, anywhere in the
    document: caught here, they are a 400 naming the field instead of an encoder crash later."""
    if depth > MAX_JSON_DEPTH:
        return [FieldProblem(path or "body", f"is nested more than {MAX_JSON_DEPTH} levels deep")]
    if isinstance(value, str):
        if has_lone_surrogate(value):
            return [FieldProblem(path or "body", "contains an unpaired surrogate")]
        return []
    problems: list[FieldProblem] = []
    if isinstance(value, dict):
        for key, item in value.items():
            child = _child(path, key)
            if has_lone_surrogate(str(key)):
                problems.append(
                    FieldProblem(path or "body", "has a key with an unpaired surrogate")
                )
            problems.extend(_unusable_strings(item, child, depth + 1))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(_unusable_strings(item, f"{path}[{index}]", depth + 1))
    return problems


def check_text(document: Any) -> None:
    """`InvalidRequestError` naming each string (or key) of a caller's decoded JSON that no email
    can carry, and absurd nesting: run on a document before any model or hash looks at it."""
    problems = _unusable_strings(document, "")
    if problems:
        raise InvalidRequestError(problems[:20])


def check_idempotency_key(value: str, field_name: str) -> str:
    """A key given outside the body (a header, a Pub/Sub attribute, a URL), by the body's rule
    (`idempotency_key_or_none`); else `InvalidRequestError` naming `field_name`."""
    key = idempotency_key_or_none(value)
    if key is None:
        raise InvalidRequestError.one(field_name, KEY_RULE)
    return key


def parse_request(data: Any) -> EmailRequest:
    """Decoded JSON -> an `EmailRequest`; else `InvalidRequestError` naming each field."""
    if not isinstance(data, dict):
        raise InvalidRequestError.one("body", "must be a JSON object")
    check_text(data)
    try:
        return EmailRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(field_problems(exc)) from None
