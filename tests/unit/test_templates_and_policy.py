"""Templates render safely; policy keeps the function from being an open relay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sender.config import Settings
from sender.errors import ConfigurationError, InvalidRequestError
from sender.message import parse_request
from sender.policy import check_recipients, resolve_from_address
from sender.profile import parse_profile
from sender.send import resolve_content
from sender.templates import Rendered, new_environment, render


def render_named(name: str, data: dict[str, Any], user_dir: str | None) -> Rendered:
    """Render as the function does: `TEMPLATES_DIR` (or none) first, then the built-ins."""
    return render(new_environment(user_dir), name, data)


def test_builtin_alert_template_escapes_html() -> None:
    rendered = render_named(
        "alert",
        {"title": "<script>x</script> disk", "severity": "critical", "details": {"host": "db-1"}},
        None,
    )
    assert rendered.subject == "[CRITICAL] <script>x</script> disk"  # subject is text, not html
    assert rendered.html is not None
    assert "&lt;script&gt;" in rendered.html
    assert rendered.text is not None
    assert "host: db-1" in rendered.text


def test_unknown_template_and_missing_variable_are_400() -> None:
    with pytest.raises(InvalidRequestError) as unknown:
        render_named("no-such-template", {}, None)
    assert unknown.value.problems[0].field == "template"
    with pytest.raises(InvalidRequestError) as missing:
        render_named("alert", {}, None)
    assert missing.value.problems[0].field == "data"


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "text.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InvalidRequestError):
        render_named("evil", {}, str(tmp_path))


def test_user_templates_override_builtins(tmp_path: Path) -> None:
    (tmp_path / "alert").mkdir()
    (tmp_path / "alert" / "subject.txt").write_text("Custom: {{ title }}\n")
    assert render_named("alert", {"title": "x"}, str(tmp_path)).subject == "Custom: x"


def test_request_fields_win_over_the_template() -> None:
    request = parse_request(
        {"to": "a@example.com", "template": "alert", "subject": "Mine", "data": {"title": "t"}}
    )
    content = resolve_content(request, Settings.defaults())
    assert content.subject == "Mine"
    assert content.text is not None
    assert "t" in content.text


PROFILE = parse_profile(b'{"host": "smtp.example.com", "from": "Alerts <alerts@example.com>"}')


def from_address_for(data: dict[str, Any], settings: Settings) -> str:
    request = parse_request({"to": "a@example.com", "subject": "s", "text": "t", **data})
    return resolve_from_address(request, PROFILE, settings).addr_spec


def test_sender_defaults_to_the_profile() -> None:
    assert from_address_for({}, Settings.defaults()) == "alerts@example.com"
    assert from_address_for({"from": "Other Name <ALERTS@example.com>"}, Settings.defaults()) == (
        "ALERTS@example.com"
    )


def test_other_senders_need_the_allow_list() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        from_address_for({"from": "ceo@example.com"}, Settings.defaults())
    assert caught.value.problems[0].field == "from"
    allowed = Settings.defaults(allowed_senders=("ceo@example.com",))
    assert from_address_for({"from": "ceo@example.com"}, allowed) == "ceo@example.com"


def test_profile_without_any_sender_is_misconfigured() -> None:
    bare = parse_profile(b'{"host": "smtp.example.com", "username": "apikey", "password": "p"}')
    request = parse_request({"to": "a@example.com", "subject": "s", "text": "t"})
    with pytest.raises(ConfigurationError):
        resolve_from_address(request, bare, Settings.defaults())


def test_recipient_allow_list_and_limit() -> None:
    request = parse_request(
        {
            "to": ["a@example.com", "b@elsewhere.org"],
            "bcc": "c@example.com",
            "subject": "s",
            "text": "t",
        }
    )
    check_recipients(
        request, Settings.defaults(allowed_recipients=("example.com", "b@elsewhere.org"))
    )
    with pytest.raises(InvalidRequestError) as caught:
        check_recipients(
            request, Settings.defaults(allowed_recipients=("example.com",), max_recipients=2)
        )
    fields = {p.field for p in caught.value.problems}
    assert fields == {"to", "to[1]"}


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {"ALLOWED_RECIPIENTS": " Example.com, ops@x.org ,", "MAX_RECIPIENTS": "3"}
    )
    assert settings.allowed_recipients == ("example.com", "ops@x.org")
    assert settings.max_recipients == 3
    with pytest.raises(ConfigurationError):
        Settings.from_env({"SMTP_TIMEOUT_S": "soon"})
    with pytest.raises(ConfigurationError):
        Settings.from_env({"IDEMPOTENCY_STORE": "redis"})
