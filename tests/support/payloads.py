"""Webhook bodies as each system documents them (`tests/fixtures/webhooks/`, see its README),
and the variants the tests need (a resolved notification of a firing one, an open incident)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
EXAMPLE_TEMPLATES = Path(__file__).resolve().parents[2] / "examples" / "templates"


def load(name: str) -> dict[str, Any]:
    """`alertmanager-v4`, `grafana`, `cloud-monitoring-1.2`, `cloud-monitoring-test`, `ci-build`."""
    document = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    assert isinstance(document, dict)
    return document


def resolved(payload: dict[str, Any], ends_at: str = "2026-11-26T18:00:00Z") -> dict[str, Any]:
    """An Alertmanager/Grafana body's resolved notification: the same group and alerts."""
    changed = copy.deepcopy(payload)
    changed["status"] = "resolved"
    if "title" in changed:  # Grafana renders its own title
        changed["title"] = re.sub(r"\[FIRING:\d+\]", "[RESOLVED]", changed["title"])
        changed["state"] = "ok"
    for alert in changed["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = ends_at
    return changed


def incident(state: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Cloud Monitoring's 1.2 example (a closed incident) in `state` (`open` or `closed`)."""
    changed = copy.deepcopy(payload or load("cloud-monitoring-1.2"))
    changed["incident"]["state"] = state
    if state == "open":
        changed["incident"]["ended_at"] = None
    return changed


def with_labels(payload: dict[str, Any], **labels: str) -> dict[str, Any]:
    """Every alert (and the common labels) carrying `labels` too: hostile values, say."""
    changed = copy.deepcopy(payload)
    changed.setdefault("commonLabels", {}).update(labels)
    for alert in changed["alerts"]:
        alert["labels"].update(labels)
        alert.setdefault("annotations", {}).update({f"{k}_note": v for k, v in labels.items()})
    return changed
