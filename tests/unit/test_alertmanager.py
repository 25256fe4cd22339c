"""Alertmanager's native webhook body becomes a readable email."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sender.alertmanager import to_request
from sender.config import Settings
from sender.errors import InvalidRequestError
from sender.send import resolve_content

PAYLOAD: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="DiskFull"}',
    "receiver": "email",
    "status": "firing",
    "groupLabels": {"alertname": "DiskFull", "instance": "db-1"},
    "commonLabels": {"alertname": "DiskFull", "instance": "db-1"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.internal:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": "db-1", "severity": "page"},
            "annotations": {"summary": "Disk 91% on db-1 <var>"},
            "startsAt": "2026-11-26T17:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.internal/graph",
            "fingerprint": "abc",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "DiskFull", "instance": "db-2"},
            "annotations": {},
            "startsAt": "2026-11-26T16:00:00Z",
        },
    ],
}


def test_firing_group_renders_subject_text_and_escaped_html() -> None:
    request = to_request(PAYLOAD, ["ops@example.com"])
    content = resolve_content(request, Settings.defaults())
    assert content.subject == "[FIRING:1] DiskFull instance=db-1"
    assert content.text is not None
    assert "Disk 91% on db-1 <var>" in content.text
    assert "[RESOLVED] DiskFull" in content.text
    assert content.html is not None
    assert "&lt;var&gt;" in content.html
    assert "<var>" not in content.html


def test_resolved_subject() -> None:
    payload = copy.deepcopy(PAYLOAD)
    payload["status"] = "resolved"
    content = resolve_content(to_request(payload, ["ops@example.com"]), Settings.defaults())
    assert content.subject == "[RESOLVED] DiskFull instance=db-1"


def test_recipients_required() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_request(PAYLOAD, [])
    assert caught.value.problems[0].field == "to"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"alerts": []}, "alerts"),
        ({"alerts": [{"status": "firing"}]}, "alerts[0].labels"),
    ],
)
def test_malformed_payload_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_request({**PAYLOAD, **change}, ["ops@example.com"])
    assert field in {p.field for p in caught.value.problems}


def test_recipient_addresses_are_validated() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_request(PAYLOAD, ["not-an-address"])
    assert caught.value.problems[0].field == "to[0]"
