"""What a send attempt came to: the recipients accepted, and those refused with their replies.

Failures are exceptions (`sender.errors`); this module holds the values a successful or partly
successful attempt produces and the one rule that splits refusals into final and deferred.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Refusal:
    """One recipient the server refused, with its reply."""

    code: int
    message: str

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(slots=True)
class SendResult:
    """A message the server accepted for at least one recipient."""

    message_id: str
    accepted: list[str]
    refused: dict[str, Refusal] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "partial" if self.refused else "sent"

    def refused_json(self) -> dict[str, dict[str, Any]]:
        return refused_json(self.refused)


def refused_json(refused: Mapping[str, Refusal]) -> dict[str, dict[str, Any]]:
    """Refused recipients as every answer, log line, event and stored record shows them."""
    return {addr: refusal.as_json() for addr, refusal in refused.items()}


def reply_text(raw: bytes | str | None) -> str:
    """An SMTP reply's text on one line (multi-line replies joined), decoded leniently."""
    if raw is None:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def split_refusals(
    refused: Mapping[str, Refusal],
) -> tuple[dict[str, Refusal], dict[str, Refusal]]:
    """(final: 5xx, reported and never retried; deferred: 4xx, owed a later attempt)."""
    final = {addr: r for addr, r in refused.items() if not r.transient}
    deferred = {addr: r for addr, r in refused.items() if r.transient}
    return final, deferred


def refusals_from(recipients: dict[str, tuple[int, bytes]]) -> dict[str, Refusal]:
    """smtplib's `{addr: (code, b"text")}` -> `{addr: Refusal}`."""
    return {addr: Refusal(code, reply_text(text)) for addr, (code, text) in recipients.items()}
