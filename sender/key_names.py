"""Naming the keys of a JSON configuration object that are not known, without echoing a secret.

A mistyped key must be named (a typo must not pass silently), but a "key" may be a password or a
token pasted in the wrong place, and the error text ends in responses and logs: only short
identifiers are shown, anything else as "?".
"""

from __future__ import annotations

from collections.abc import Container, Iterable

_LONGEST_SHOWN = 40


def _shown(key: str) -> str:
    return key if key.isidentifier() and len(key) <= _LONGEST_SHOWN else "?"


def unknown_keys(given: Iterable[str], known: Container[str]) -> str | None:
    """``"unknown keys: a, b, ?"`` for the keys of *given* not in *known*; None when none is."""
    unknown = sorted(_shown(k) for k in given if k not in known)
    return f"unknown keys: {', '.join(unknown)}" if unknown else None
