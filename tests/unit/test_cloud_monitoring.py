"""Cloud Monitoring's notification (schema 1.2, webhook and Pub/Sub channel) becomes an email."""

from __future__ import annotations

from typing import Any

import pytest

from sender.cloud_monitoring import notification
from sender.config import Settings
from sender.errors import InvalidRequestError
from sender.mime import Content
from sender.pubsub_payload import is_notification
from sender.send import resolve_content
from tests.support.payloads import incident, load

TO = ["ops@example.com"]


def render(payload: dict[str, Any]) -> Content:
    return resolve_content(notification(payload, TO).request, Settings.defaults())


def test_documented_closed_incident() -> None:
    content = render(load("cloud-monitoring-1.2"))
    # The policy's documentation subject, when it sets one; the state in front.
    assert content.subject == "[CLOSED] ALERT - No severity"
    assert content.text is not None
    assert content.html is not None
    for body in (content.text, content.html):
        assert "Monitor-Project-Cluster" in body
        assert "VM Instance - CPU utilization [MAX]" in body
        assert "returned to normal with a value of 0.835" in body
        assert "0.835" in body
        assert "0.9" in body
        assert "2020-01-01 01:01:01 UTC" in body  # started_at
        assert "2020-01-01 11:11:11 UTC" in body  # ended_at
        assert "policy.display_name=Monitored-Project-NO-GROUPBY" in body  # documentation
    assert "Observed value: 0.835\nThreshold: 0.9" in content.text
    assert "Playbook: https://myownpersonaldomain.com/playbook" in content.text
    assert (
        '<a href="https://console.cloud.google.com/monitoring/alerting/incidents/' in content.html
    )


def test_without_a_documentation_subject_policy_and_condition_name_it() -> None:
    payload = incident("open")
    del payload["incident"]["documentation"]["subject"]
    content = render(payload)
    assert content.subject == "[OPEN] Monitor-Project-Cluster: VM Instance - CPU utilization [MAX]"
    assert content.text is not None
    assert "Ended:" not in content.text


def test_the_test_notification_button_payload() -> None:
    content = render(load("cloud-monitoring-test"))
    assert content.subject == "[OPEN] projects/12345/alertPolicies/12345: Example condition"
    assert content.text is not None
    assert "Test documentation" in content.text
    assert "Started:" not in content.text  # started_at 0 is no time


def test_open_and_closed_share_a_thread_but_not_a_key() -> None:
    opened = notification(incident("open"), TO)
    closed = notification(incident("closed"), TO)
    assert opened.request.thread is not None
    assert opened.request.thread == closed.request.thread
    assert opened.key != closed.key
    assert notification(incident("open"), TO).key == opened.key
    other = incident("open")
    other["incident"]["incident_id"] = "0.other"
    assert notification(other, TO).request.thread != opened.request.thread


def test_recognised_only_by_its_own_shape() -> None:
    assert is_notification(load("cloud-monitoring-1.2"))
    assert is_notification(load("cloud-monitoring-test"))
    assert not is_notification({"to": "a@example.com", "subject": "s", "text": "t"})
    assert not is_notification({"incident": {}})  # no version: our message (and a 400)
    assert not is_notification(["incident", "version"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "exploded"}, "incident.state"),
        ({"incident_id": ""}, "incident.incident_id"),
        ({"started_at": "yesterday"}, "incident.started_at"),
    ],
)
def test_malformed_incident_names_the_field(change: dict[str, Any], field: str) -> None:
    payload = incident("open")
    payload["incident"].update(change)
    with pytest.raises(InvalidRequestError) as caught:
        notification(payload, TO)
    assert field in {p.field for p in caught.value.problems}


def test_hostile_values_escaped_in_html_verbatim_in_text_never_a_header() -> None:
    payload = incident("open")
    forged = "<script>x</script>\r\nBcc: evil@x.test =?utf-8?q?a?="
    del payload["incident"]["documentation"]["subject"]
    payload["incident"]["policy_name"] = forged
    payload["incident"]["summary"] = forged
    content = render(payload)
    assert "\n" not in content.subject
    assert "=?" not in content.subject
    assert content.text is not None
    assert content.html is not None
    assert forged in content.text
    assert "<script>" not in content.html


def test_blank_or_absurd_fields_never_break_the_email() -> None:
    payload = incident("open")
    payload["incident"]["documentation"]["subject"] = "   "
    payload["incident"]["started_at"] = 10**30
    content = render(payload)
    assert content.subject == "[OPEN] Monitor-Project-Cluster: VM Instance - CPU utilization [MAX]"
    assert content.text is not None
    assert "Started:" not in content.text
