"""A tiny `.env` reader: enough of the dotenv format for local settings, no dependency.

Supported: `KEY=value`, `export KEY=value`, blank lines, `#` comments (whole-line, or after
whitespace following a value), single quotes (literal) and double quotes (with `\\n`, `\\t`,
`\\"` and `\\\\` escapes). No variable interpolation: values are taken as written, which is
what keeps a password containing `$` intact.
"""

from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


class DotenvError(ValueError):
    """A line of the file is not `KEY=value`; the message names the file and line."""


def _after_quote(rest: str, where: str) -> None:
    """After a closing quote only whitespace and a comment may follow: `A="x" y` is a typo,
    and silently dropping `y` would hide it. (The message never echoes the value.)"""
    if rest.strip() and not re.match(r"\s+#", rest):
        raise DotenvError(f"{where}: unexpected text after the closing quote")


def _unquote(raw: str, where: str) -> str:
    if raw.startswith("'"):
        end = raw.find("'", 1)
        if end < 0:
            raise DotenvError(f"{where}: unterminated single quote")
        _after_quote(raw[end + 1 :], where)
        return raw[1:end]
    if raw.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
                continue
            if ch == '"':
                _after_quote(raw[i + 1 :], where)
                return "".join(out)
            out.append(ch)
            i += 1
        raise DotenvError(f"{where}: unterminated double quote")
    # Unquoted: an inline comment starts at " #"; surrounding whitespace is not part of it.
    comment = re.search(r"\s#", raw)
    if comment:
        raw = raw[: comment.start()]
    return raw.strip()


def parse(text: str, source: str = ".env") -> dict[str, str]:
    """Parse dotenv text into a dict; later keys win, like a shell sourcing the file."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DotenvError(f"{source}:{number}: expected KEY=value")
        values[match["key"]] = _unquote(match["value"].strip(), f"{source}:{number}")
    return values


def load(path: Path) -> dict[str, str]:
    """Read `path` if it exists; a missing file is an empty configuration, an unreadable one
    (a directory, no permission, not UTF-8) a `DotenvError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise DotenvError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DotenvError(f"{path}: not UTF-8 text") from None
    return parse(text, str(path))
