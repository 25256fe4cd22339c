"""Any system's webhook, rendered by the user's own template: `POST /hook/<template>?to=..`.

CI servers, GitHub, Sentry or an in-house service post their own JSON; nobody rewrites it into our
message. The body (a JSON object) is the variable `payload` of the template folder
`TEMPLATES_DIR/<template>/` (`subject.txt`, `text.txt`, `html.html`), rendered like every other
template: sandboxed, html autoescaped, an undefined variable a 400 naming it. Only the user's own
folder is looked at: the built-in templates expect other variables. Without `TEMPLATES_DIR` the
route is misconfigured (500), not the caller's mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sender.alert_group import Notification
from sender.errors import ConfigurationError, InvalidRequestError
from sender.message import TEMPLATE_NAME, parse_request
from sender.templates import PART_FILES

SOURCE = "hook"


def _check_template(name: str, templates_dir: str | None) -> None:
    if not TEMPLATE_NAME.match(name):
        raise InvalidRequestError.one(
            "template", "must be a template name (lower-case letters, digits, - and _)"
        )
    if not templates_dir:  # the operator's to fix: the caller cannot
        raise ConfigurationError(f"/hook/{name} needs TEMPLATES_DIR, which is not set")
    folder = Path(templates_dir) / name
    if not any((folder / part).is_file() for part in PART_FILES):
        raise InvalidRequestError.one(
            "template", f"unknown template {name!r} (no {name}/ folder in TEMPLATES_DIR)"
        )


def notification(
    name: str, payload: Any, recipients: list[str], templates_dir: str | None
) -> Notification:
    """The request that renders `payload` with the user's template `name`."""
    if not recipients:
        raise InvalidRequestError.one("to", "add ?to=address to the webhook URL")
    _check_template(name, templates_dir)
    if not isinstance(payload, dict):
        raise InvalidRequestError.one("body", "must be a JSON object")
    request = parse_request({"to": recipients, "template": name, "data": {"payload": payload}})
    return Notification(request=request, source=SOURCE)
