"""Grafana's webhook contact point body becomes a readable, threaded, keyed email."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sender.config import Settings
from sender.errors import InvalidRequestError
from sender.grafana import notification
from sender.mime import Content
from sender.send import resolve_content
from tests.support.payloads import load, resolved

TO = ["ops@example.com"]


def render(payload: dict[str, Any]) -> Content:
    return resolve_content(notification(payload, TO).request, Settings.defaults())


def test_documented_payload_renders_title_message_values_and_links() -> None:
    content = render(load("grafana"))
    assert content.subject == "[FIRING:2] (blue)"  # Grafana's own title, on one line
    assert content.text is not None
    assert content.html is not None
    for body in (content.text, content.html):
        assert "High memory usage" in body
        assert "High CPU usage" in body
        assert "This alert was triggered for zone us-1" in body
        assert "44.23943737541908" in body  # alert['values'], not the dict method
        assert "Labels:" in body  # Grafana's rendered message
    assert "values: B=44.23943737541908, C=1" in content.text
    assert "silence: https://play.grafana.org/alerting/silence/new?" in content.text
    assert "rule: https://play.grafana.org/alerting/1afz29v7z/edit" in content.text
    assert "dashboard:" not in content.text  # Grafana sent "" for it
    assert "until:" not in content.text  # 0001-01-01 means "not yet"
    assert '<a href="https://play.grafana.org/alerting/silence/new?' in content.html
    assert "<img" not in content.html


def test_dashboard_panel_and_image_links_when_given() -> None:
    payload = load("grafana")
    alert = payload["alerts"][0]
    alert["dashboardURL"] = "https://grafana.example.com/d/abc"
    alert["panelURL"] = "https://grafana.example.com/d/abc?viewPanel=2"
    alert["imageURL"] = "https://grafana.example.com/render/panel.png"
    content = render(payload)
    assert content.text is not None
    assert content.html is not None
    assert "dashboard: https://grafana.example.com/d/abc" in content.text
    assert "panel: https://grafana.example.com/d/abc?viewPanel=2" in content.text
    assert '<a href="https://grafana.example.com/d/abc">dashboard</a>' in content.html
    assert '<img src="https://grafana.example.com/render/panel.png"' in content.html


def test_links_that_are_not_http_are_never_links() -> None:
    payload = load("grafana")
    payload["alerts"][0]["silenceURL"] = "javascript:alert(1)"
    payload["alerts"][0]["imageURL"] = "data:image/png;base64,AAAA"
    content = render(payload)
    assert content.html is not None
    assert "javascript:" not in content.html
    assert "data:image" not in content.html


@pytest.mark.parametrize("title", ["", "  \n "])
def test_without_a_title_the_subject_is_built_from_the_labels(title: str) -> None:
    payload = load("grafana")
    payload["title"] = title
    payload["commonLabels"]["alertname"] = "High memory usage"
    assert render(payload).subject == "[FIRING:2] High memory usage"


def test_hostile_values_escaped_in_html_verbatim_in_text_never_a_header() -> None:
    payload = load("grafana")
    forged = "<script>x</script> =?utf-8?q?a=0D=0ABcc=3A_evil=40x.test?=\r\nBcc: evil@x.test"
    payload["title"] = f"[FIRING:2] {forged}"
    payload["alerts"][0]["annotations"]["summary"] = forged
    payload["alerts"][0]["values"]["<b>"] = 1
    content = render(payload)
    assert "\n" not in content.subject
    assert "\r" not in content.subject
    assert "=?" not in content.subject
    assert content.text is not None
    assert content.html is not None
    assert forged in content.text
    assert "<script>" not in content.html
    assert "&lt;script&gt;x&lt;/script&gt;" in content.html
    assert "&lt;b&gt;" in content.html


def test_firing_and_resolved_share_a_thread_but_not_a_key() -> None:
    firing = notification(load("grafana"), TO)
    done = notification(resolved(load("grafana")), TO)
    assert firing.request.thread is not None
    assert firing.request.thread == done.request.thread
    assert firing.key != done.key
    assert render(resolved(load("grafana"))).subject == "[RESOLVED] (blue)"
    other_org = copy.deepcopy(load("grafana"))
    other_org["orgId"] = 2
    assert notification(other_org, TO).request.thread != firing.request.thread


def test_a_retry_has_the_same_key() -> None:
    assert notification(load("grafana"), TO).key == notification(load("grafana"), TO).key


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "alerting"}, "status"),
        ({"alerts": []}, "alerts"),
        ({"alerts": [{"status": "firing", "labels": {}, "values": "B=1"}]}, "alerts[0].values"),
    ],
)
def test_malformed_payload_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        notification({**load("grafana"), **change}, TO)
    assert field in {p.field for p in caught.value.problems}


def test_recipients_required() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        notification(load("grafana"), [])
    assert caught.value.problems[0].field == "to"
