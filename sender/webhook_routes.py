"""The HTTP trigger's route table: which webhook body each path takes.

- `/alertmanager`, `/grafana`, `/cloud-monitoring`: each system's own payload; recipients in
  `?to=` (repeatable or comma-separated), else `ALERT_RECIPIENTS`.
- `/hook/<template>`: any JSON object, rendered by the user's `TEMPLATES_DIR/<template>`;
  recipients in `?to=`.
- any other path: not a webhook (`find` answers None): the message JSON endpoint.

(`POST /batch` is not a webhook: `sender.http_trigger` sends it to `sender.batch`.)

A new source is one module that turns its payload into a `Notification` and one entry here.
Each source's module is imported on its route's first request: its pydantic models are built then,
not by every cold instance (most only ever send the message JSON; cold start, issue 11).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sender.alert_group import Notification, configured_recipients, split_recipients
from sender.config import Settings

# (body, the `to` query values, settings) -> the notification
Route = Callable[[Any, list[str], Settings], Notification]
HOOK_PATH = "/hook"


def alert_recipients(query: list[str], settings: Settings) -> list[str]:
    """`?to=` when given, else `ALERT_RECIPIENTS` (possibly empty: the source says what to do)."""
    return split_recipients(query) or configured_recipients(settings.alert_recipients)


# Each source is imported inside its route (see the module docstring).
def _alertmanager(body: Any, query: list[str], settings: Settings) -> Notification:
    from sender import alertmanager  # noqa: PLC0415

    return alertmanager.notification(body, alert_recipients(query, settings))


def _grafana(body: Any, query: list[str], settings: Settings) -> Notification:
    from sender import grafana  # noqa: PLC0415

    return grafana.notification(body, alert_recipients(query, settings))


def _cloud_monitoring(body: Any, query: list[str], settings: Settings) -> Notification:
    from sender import cloud_monitoring  # noqa: PLC0415

    return cloud_monitoring.notification(body, alert_recipients(query, settings))


def _hook(name: str, body: Any, query: list[str], settings: Settings) -> Notification:
    from sender import hook  # noqa: PLC0415

    return hook.notification(name, body, split_recipients(query), settings.templates_dir)


ROUTES: dict[str, Route] = {
    "/alertmanager": _alertmanager,
    "/grafana": _grafana,
    "/cloud-monitoring": _cloud_monitoring,
}


def find(path: str) -> Route | None:
    """The route of `path`, or None for the message endpoint."""
    path = path.rstrip("/")
    if path in ROUTES:
        return ROUTES[path]
    if path == HOOK_PATH or path.startswith(HOOK_PATH + "/"):
        return partial(_hook, path.removeprefix(HOOK_PATH).removeprefix("/"))
    return None
