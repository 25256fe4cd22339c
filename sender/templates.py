"""Named templates: render subject, text and html from `template` + `data`.

A template named `alert` is the files `alert/subject.txt`, `alert/text.txt` and `alert/html.html`
(each optional, at least one present) in `TEMPLATES_DIR` (your own, looked up first) or in the
package's `sender/templates/` (built-ins). Rendering is sandboxed (callers supply `data`; a
template must not reach Python internals), html is autoescaped, and an undefined variable is a
400 naming it rather than a silently empty alert. A template that is not valid Jinja is a
`ConfigurationError` naming its file and line: the operator must fix it, not the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from sender.errors import ConfigurationError, FieldProblem, InvalidRequestError
from sender.header_safety import one_line

BUILTIN_DIR = Path(__file__).with_name("templates")
_PARTS = {"subject": "subject.txt", "text": "text.txt", "html": "html.html"}
PART_FILES = tuple(_PARTS.values())


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    text: str | None
    html: str | None


def http_url(value: object) -> str:
    """The value when it is an http(s) URL, else "": links in an email are never `javascript:`
    or `data:` URLs, whatever a webhook payload carries."""
    text = str(value).strip() if value is not None else ""
    return text if text.lower().startswith(("https://", "http://")) else ""


def new_environment(user_dir: str | None) -> SandboxedEnvironment:
    """The sandboxed Jinja2 environment for `TEMPLATES_DIR` (`sender.instance` keeps one).

    Filters besides Jinja's own: `one_line` (a label value made fit for the subject, see
    `header_safety.one_line`) and `http_url` (a link only if it is http or https)."""
    search_path = [user_dir, str(BUILTIN_DIR)] if user_dir else [str(BUILTIN_DIR)]
    environment = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(search_path),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the deploy; no stat() per render
    )
    environment.filters["one_line"] = one_line
    environment.filters["http_url"] = http_url
    return environment


def _broken(exc: jinja2.TemplateSyntaxError) -> ConfigurationError:
    """A template that does not compile is the operator's to fix, not the caller's: named by its
    file and line only (Jinja's message quotes the template's text)."""
    where = exc.name or exc.filename or "a template"
    return ConfigurationError(
        f"template {where} is not valid Jinja (line {exc.lineno}); fix it in TEMPLATES_DIR"
    )


def _render_part(env: SandboxedEnvironment, name: str, data: dict[str, Any]) -> str | None:
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        return None
    except jinja2.TemplateSyntaxError as exc:
        raise _broken(exc) from None
    try:
        # One positional dict, not **data: a key named `self` must not collide with render().
        return template.render(data)
    except jinja2.TemplateSyntaxError as exc:  # an included or extended template's
        raise _broken(exc) from None
    except jinja2.UndefinedError as exc:
        raise InvalidRequestError.one("data", f"template variable missing: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise InvalidRequestError.one(
            "template", f"template failed to render: {exc.message}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - see below
        # Data of the wrong shape (a string where a dict was expected) fails inside filters. It is
        # the caller's data, so a 400, naming only the exception type (its text may quote data).
        template_name = name.split("/", 1)[0]
        raise InvalidRequestError.one(
            "data", f"does not fit template {template_name!r} ({type(exc).__name__})"
        ) from None


def render(env: SandboxedEnvironment, name: str, data: dict[str, Any]) -> Rendered:
    """Render template `name` with `data`; a 400 naming the template or variable on failure."""
    parts = {key: _render_part(env, f"{name}/{file}", data) for key, file in _PARTS.items()}
    if all(value is None for value in parts.values()):
        raise InvalidRequestError([FieldProblem("template", f"unknown template {name!r}")])
    subject = parts["subject"]
    # A subject is one header line, whatever the template's whitespace.
    subject = " ".join(subject.split()) if subject is not None else None
    return Rendered(subject=subject, text=parts["text"], html=parts["html"])
