"""Alertmanager's native webhook body becomes a readable, threaded, keyed email."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sender.alertmanager import notification
from sender.config import Settings
from sender.errors import InvalidRequestError
from sender.message import EmailRequest
from sender.send import resolve_content


def to_request(payload: Any, recipients: list[str]) -> EmailRequest:
    return notification(payload, recipients).request


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


def _resolved(payload: dict[str, Any]) -> dict[str, Any]:
    resolved = copy.deepcopy(payload)
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-26T18:00:00Z"
    return resolved


def test_firing_and_resolved_share_a_thread_but_not_a_key() -> None:
    firing = notification(PAYLOAD, ["ops@example.com"])
    resolved = notification(_resolved(PAYLOAD), ["ops@example.com"])
    assert firing.request.thread is not None
    assert firing.request.thread == resolved.request.thread
    assert firing.key != resolved.key
    other_group = notification({**PAYLOAD, "groupKey": '{}:{alertname="CPU"}'}, ["ops@x.org"])
    assert other_group.request.thread != firing.request.thread


def test_the_same_notification_has_the_same_key() -> None:
    first = notification(PAYLOAD, ["ops@example.com", "oncall@example.com"])
    again = notification(copy.deepcopy(PAYLOAD), ["oncall@example.com", "OPS@example.com"])
    assert first.key == again.key
    assert first.key is not None
    assert first.key.startswith("alertmanager:")
    # Label values never show in the key (it becomes a ledger document id).
    assert "DiskFull" not in first.key


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p["alerts"][0].update(startsAt="2026-11-26T19:00:00Z"),  # it fired again
        lambda p: p["alerts"][0].update(fingerprint="other"),
        lambda p: p["alerts"].pop(),  # one alert fewer
        lambda p: p.update(groupKey="{}:{other}"),
    ],
)
def test_a_different_notification_has_a_different_key(change: Any) -> None:
    changed = copy.deepcopy(PAYLOAD)
    change(changed)
    assert (
        notification(changed, ["ops@example.com"]).key
        != notification(PAYLOAD, ["ops@example.com"]).key
    )


def test_other_recipients_are_another_email() -> None:
    assert (
        notification(PAYLOAD, ["a@example.com"]).key != notification(PAYLOAD, ["b@example.com"]).key
    )


def test_hostile_group_label_is_neutralised_in_the_subject_only() -> None:
    forged = "=?utf-8?q?hi=0D=0AFrom=3A_CEO?=\r\nBcc: x@evil.test <script>"
    payload = copy.deepcopy(PAYLOAD)
    payload["groupLabels"]["instance"] = forged
    payload["alerts"][0]["labels"]["instance"] = forged
    content = resolve_content(to_request(payload, ["ops@example.com"]), Settings.defaults())
    assert "=?" not in content.subject
    assert "\n" not in content.subject
    assert content.subject.startswith("[FIRING:1] DiskFull instance=")
    assert content.text is not None
    assert forged in content.text  # verbatim in the text body
    assert content.html is not None
    assert "&lt;script&gt;" in content.html
    assert "<script>" not in content.html
