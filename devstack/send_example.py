"""`python -m devstack.send_example` (what `make send-example` runs).

Posts a sample alert and a sample Alertmanager webhook to the HTTP function and a Pub/Sub-style
CloudEvent to the CloudEvent function of a running dev stack, and prints what each answered.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from devstack import samples
from devstack.settings import DevSettings, SettingsError

TIMEOUT_S = 30.0


def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """POST and return (status, body text); HTTP error statuses are answers, not failures."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - a loopback URL we built
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")


def _show(label: str, status: int, text: str) -> None:
    try:
        text = json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    except ValueError:
        text = text.strip() or "(empty body)"
    print(f"{label}: HTTP {status}")
    print("  " + text.replace("\n", "\n  "))


def main() -> int:
    try:
        settings = DevSettings.load()
    except SettingsError as exc:
        print(f"send-example: {exc}")
        return 2
    try:
        status, text = post(
            settings.http_url,
            {"Content-Type": "application/json"},
            json.dumps(samples.http_alert()).encode("utf-8"),
        )
        _show(f"POST {settings.http_url} (alert with html and a CSV attachment)", status, text)
        alertmanager_url = settings.http_url + "/alertmanager?to=oncall@example.com"
        am_status, am_text = post(
            alertmanager_url,
            {"Content-Type": "application/json"},
            json.dumps(samples.alertmanager_webhook()).encode("utf-8"),
        )
        _show(f"POST {alertmanager_url} (Alertmanager webhook, 2 alerts)", am_status, am_text)
        headers, body = samples.pubsub_cloudevent(samples.scheduled_notice())
        event_status, event_text = post(settings.event_url, headers, body)
        _show(
            f"POST {settings.event_url} (Pub/Sub CloudEvent, id {headers['ce-id']})",
            event_status,
            event_text,
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"send-example: cannot reach the dev stack ({reason}). Start it with `make dev`.")
        return 1
    print(f"\nRead them at {settings.outbox_url}")
    ok = all(200 <= code < 300 for code in (status, am_status, event_status))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
