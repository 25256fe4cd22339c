"""Send a webhook notification once per caller retry, yet again when it is a reminder.

Alertmanager and Grafana retry a notification they got no answer for (within their
`group_interval`, minutes), and they also repeat an unchanged notification on purpose
(`repeat_interval`, hours). Both bodies are identical, so the notification's key alone
(`sender.alert_group.notification_key`) would swallow every reminder for as long as the ledger
remembers keys (`IDEMPOTENCY_TTL_S`, a week). The ledger key therefore also names a time window
of `WEBHOOK_RETRY_WINDOW_S` (W), and a notification joins the previous window's delivery when
there is one:

- posted again less than W after the first: the same ledger key, so `duplicate` (or 503 while
  the first is still sending, or the recipients still owed after a partial send);
- posted again 2W or more later: a new key, so a new email with its own Message-ID (mailboxes
  would drop a reminder that reused the first one's).

Everything after choosing the key is `sender.exactly_once.send_once`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sender import instance, logs
from sender.alert_group import Notification
from sender.config import Settings
from sender.exactly_once import Delivery, send_once

NAMESPACE = "webhook"


def ledger_key(
    notification_key: str, settings: Settings, *, clock: Callable[[], float] = time.time
) -> str:
    """The namespaced ledger key of this notification now (see the module docstring)."""
    window = int(clock() // settings.webhook_retry_window_s)
    previous = f"{NAMESPACE}:{notification_key}:{window - 1}"
    if instance.ledger(settings).lookup(previous) is not None:
        return previous
    return f"{NAMESPACE}:{notification_key}:{window}"


def log_received(notification: Notification) -> None:
    logs.notification_received(
        source=notification.source,
        status=notification.status,
        alert_count=notification.alert_count,
        thread=notification.request.thread,
    )


def send(
    notification: Notification, settings: Settings, *, caller_key: str | None = None
) -> Delivery:
    """Send `notification` once: under `caller_key` (the caller's own, namespaced) when given,
    else under its own key, windowed; a `/hook` with neither sends every time."""
    log_received(notification)
    if caller_key is not None:
        key: str | None = caller_key
    elif notification.key is not None:
        key = ledger_key(notification.key, settings)
    else:
        key = None
    return send_once(notification.request, settings, ledger_key=key)
