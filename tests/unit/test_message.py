"""Request validation: every bad field is named the way the caller wrote it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sender.errors import InvalidRequestError
from sender.message import parse_request

VALID: dict[str, Any] = {"to": "ops@example.com", "subject": "Disk 91%", "text": "db-1 is full"}


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(data)
    return {p.field: p.problem for p in caught.value.problems}


def test_minimal_request() -> None:
    request = parse_request(VALID)
    assert [m.addr_spec for m in request.to] == ["ops@example.com"]
    assert request.cc == []
    assert request.bcc == []
    assert request.from_address is None


def test_recipients_deduplicated_across_to_cc_bcc() -> None:
    request = parse_request(
        {**VALID, "to": ["a@example.com", "b@example.com"], "cc": "A@example.com", "bcc": "c@x.org"}
    )
    assert [m.addr_spec for m in request.recipients()] == [
        "a@example.com",
        "b@example.com",
        "c@x.org",
    ]


def test_field_paths_name_list_items() -> None:
    found = problems({**VALID, "to": ["ok@example.com", "broken", 7]})
    assert set(found) == {"to[1]", "to[2]"}
    assert "not a valid address" in found["to[1]"]
    assert found["to[2]"] == "must be a string address"


def test_not_an_object() -> None:
    assert problems(["to"]) == {"body": "must be a JSON object"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "hi\r\nBcc: victim@example.org"}, "subject"),
        ({"subject": 5}, "subject"),
        ({"to": []}, "to"),
        ({"to": None}, "to"),
        ({"from": "Alerts <a@example.com>\nX: y"}, "from"),
        ({"reply_to": ["ok@example.com", "no"]}, "reply_to[1]"),
        ({"cc": "x@y"}, "cc[0]"),
        ({"headers": {"Bcc": "victim@example.org"}}, "headers.Bcc"),
        ({"headers": {"content-type": "text/html"}}, "headers.content-type"),
        ({"headers": {"Resent-To": "victim@example.org"}}, "headers.Resent-To"),
        ({"headers": {"X-Ticket": "42\r\nBcc: victim@example.org"}}, "headers.X-Ticket"),
        ({"headers": {"Bad Name": "v"}}, "headers.Bad Name"),
        (
            {"attachments": [{"filename": "r.csv", "content": "not base64!"}]},
            "attachments[0].content",
        ),
        (
            {"attachments": [{"filename": "../etc/passwd", "content": ""}]},
            "attachments[0].filename",
        ),
        ({"attachments": [{"filename": "a\nb", "content": ""}]}, "attachments[0].filename"),
        (
            {"attachments": [{"filename": "a", "content": "", "content_type": "nonsense"}]},
            "attachments[0].content_type",
        ),
        ({"template": "../secret"}, "template"),
        ({"subject": "=?utf-8?q?hi=0D=0AFrom=3A_CEO_=3Cceo=40bank=2Eexample=3E?="}, "subject"),
        ({"subject": "hi\u2028Bcc: victim@example.org"}, "subject"),
        ({"subject": "hi\x85there"}, "subject"),
        ({"headers": {"X-A": "=?utf-8?b?DQpGcm9tOiB4?="}}, "headers.X-A"),
        (
            {"attachments": [{"filename": "=?utf-8?q?a=0D=0AX=3A_y?=.txt", "content": ""}]},
            "attachments[0].filename",
        ),
        (
            {"attachments": [{"filename": "a", "content": "", "content_type": "multipart/mixed"}]},
            "attachments[0].content_type",
        ),
        (
            {"attachments": [{"filename": "a", "content": "", "content_type": "message/rfc822"}]},
            "attachments[0].content_type",
        ),
        (
            {
                "attachments": [
                    {"filename": "a", "content": "", "content_type": "text/csv; charset\r\nX: y"}
                ]
            },
            "attachments[0].content_type",
        ),
        (
            {"attachments": [{"filename": "a", "content": "", "content_type": "text/csv; x"}]},
            "attachments[0].content_type",
        ),
        ({"text": "lone \ud800 surrogate"}, "text"),
        ({"data": {"nested": ["ok", "bad \udfff"]}}, "data.nested[1]"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_field_is_named(change: dict[str, Any], field: str) -> None:
    assert field in problems({**VALID, **change})


def test_body_required() -> None:
    assert "text" in problems({"to": "a@example.com", "subject": "s"})


def test_subject_required_without_template() -> None:
    assert "subject" in problems({"to": "a@example.com", "text": "t"})


def test_template_may_stand_in_for_subject_and_body() -> None:
    request = parse_request({"to": "a@example.com", "template": "alert", "data": {"title": "x"}})
    assert request.template == "alert"


def test_attachment_decoded_and_allowed_headers_kept() -> None:
    payload = bytes(range(256))
    request = parse_request(
        {
            **VALID,
            "headers": {"X-Ticket": "42", "List-Unsubscribe": "<mailto:u@example.com>"},
            "attachments": [
                {"filename": "보고서.bin", "content": base64.b64encode(payload).decode()}
            ],
        }
    )
    assert request.attachments[0].content == payload
    assert request.headers["X-Ticket"] == "42"


def test_absurd_nesting_is_refused_by_name() -> None:
    data: dict[str, Any] = {"leaf": 1}
    for _ in range(40):
        data = {"d": data}
    found = problems({**VALID, "data": data})
    assert any("nested" in problem for problem in found.values())


def test_content_type_parameters_are_accepted_and_normalised() -> None:
    request = parse_request(
        {
            **VALID,
            "attachments": [
                {"filename": "r.csv", "content": "", "content_type": 'Text/CSV; Charset="UTF-8"'}
            ],
        }
    )
    assert request.attachments[0].content_type == "text/csv; charset=utf-8"


def test_a_call_without_thread_stays_out_of_any_conversation() -> None:
    request = parse_request(VALID)
    assert request.thread is None
    joined = request.in_thread("g")
    assert (joined.thread, request.thread) == ("g", None)
    assert joined.model_dump() == request.model_dump()  # not part of the message content
    with pytest.raises(InvalidRequestError):  # and a caller cannot set it
        parse_request({**VALID, "_thread": "g"})
