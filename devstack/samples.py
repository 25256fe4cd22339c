"""The sample messages `make send-example` and the startup banner's `curl` send."""

from __future__ import annotations

import base64
import json
import shlex
import uuid
from datetime import UTC, datetime
from typing import Any

#: Short enough to read in a terminal: what the banner's curl posts.
QUICK_ALERT: dict[str, Any] = {
    "to": "ops@example.com",
    "subject": "Disk 91% on db-1",
    "text": "db-1: /var is 91% full (threshold 90%).",
}

#: What the banner suggests in chaos mode: one recipient of each kind, and a key, so that sending
#: it twice shows the retry reaching the deferred recipient only (see devstack/chaos.py).
CHAOS_ALERT: dict[str, Any] = {
    "to": ["ops@example.com", "reject-1@example.com", "defer-1@example.com"],
    "subject": "Chaos: one accepted, one rejected, one deferred",
    "text": "Send me twice: the second time only defer-1 gets a copy.",
    "idempotency_key": "chaos-demo-1",
}

_CSV = "mount,size_gb,used_gb,used_pct\n/var,200,182,91\n/,50,21,42\n"


def http_alert() -> dict[str, Any]:
    """An alert like a monitoring webhook would send: text, html and a CSV attachment."""
    return {
        "to": ["Ops <ops@example.com>"],
        "subject": "[FIRING] Disk 91% on db-1",
        "text": "db-1: /var is 91% full (threshold 90%).\nRunbook: https://runbooks.example/disk",
        "html": (
            "<h2 style='color:#b42318'>Disk 91% on db-1</h2>"
            "<p><b>/var</b> is 91% full (threshold 90%).</p>"
            "<table border='1' cellpadding='4'><tr><th>mount</th><th>used</th></tr>"
            "<tr><td>/var</td><td>91%</td></tr><tr><td>/</td><td>42%</td></tr></table>"
        ),
        "attachments": [
            {
                "filename": "df-db-1.csv",
                "content": base64.b64encode(_CSV.encode()).decode("ascii"),
                "content_type": "text/csv",
            }
        ],
    }


def scheduled_notice() -> dict[str, Any]:
    """A scheduled notification, as Cloud Scheduler would publish it to Pub/Sub."""
    return {
        "to": "team@example.com",
        "subject": "Nightly backup finished · 야간 백업 완료",
        "text": "All 3 databases were backed up at 02:00 UTC.\n모든 데이터베이스 백업 완료.",
    }


def alertmanager_webhook() -> dict[str, Any]:
    """Alertmanager's own webhook body (version 4), as it posts to `/alertmanager?to=...`."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "receiver": "smtp-sender",
        "status": "firing",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "service": "checkout", "severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.localhost:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighLatency", "service": "checkout", "pod": pod},
                "annotations": {"summary": f"p99 latency above 2s on {pod}"},
                "startsAt": now,
                "generatorURL": "http://prometheus.localhost:9090/graph",
            }
            for pod in ("checkout-7d9f-abc", "checkout-7d9f-xyz")
        ],
    }


def pubsub_cloudevent(
    message: dict[str, Any], topic: str = "projects/dev/topics/mail"
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode CloudEvent carrying a Pub/Sub message, as Eventarc
    delivers it: `ce-*` headers, and the JSON body's `message.data` is base64 of the email."""
    event_id = str(uuid.uuid4())  # a new id each time, so idempotency does not swallow it
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = {
        "message": {
            "data": base64.b64encode(json.dumps(message).encode("utf-8")).decode("ascii"),
            "messageId": event_id,
            "publishTime": now,
            "attributes": {},
        },
        "subscription": "projects/dev/subscriptions/mail-sub",
    }
    headers = {
        "Content-Type": "application/json",
        "ce-id": event_id,
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": f"//pubsub.googleapis.com/{topic}",
        "ce-time": now,
    }
    return headers, json.dumps(body).encode("utf-8")


def curl_command(url: str, message: dict[str, Any] | None = None) -> str:
    """A copy-pasteable curl that posts *message* (default QUICK_ALERT) to the HTTP function."""
    return (
        f"curl -sS {shlex.quote(url)} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(message or QUICK_ALERT, ensure_ascii=False))}"
    )
