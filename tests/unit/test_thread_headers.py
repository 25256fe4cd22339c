"""Threading headers: one conversation per alert group, whatever the status."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from sender.thread_headers import conversation_topic, root_message_id, thread_headers

NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("subject", "topic"),
    [
        ("[FIRING:2] DiskFull instance=db-1", "DiskFull instance=db-1"),
        ("[RESOLVED] DiskFull instance=db-1", "DiskFull instance=db-1"),
        ("[OPEN] CPU: VM Instance [MAX]", "CPU: VM Instance [MAX]"),  # only leading tags go
        ("[a] [b]  c", "c"),
        ("[FIRING:1]", "[FIRING:1]"),  # nothing left: keep the subject
        ("no tag", "no tag"),
    ],
)
def test_topic_is_the_subject_without_its_status(subject: str, topic: str) -> None:
    assert conversation_topic(subject) == topic


def test_same_group_same_root_index_guid_and_topic() -> None:
    firing = thread_headers("g1", domain="example.com", subject="[FIRING:1] X", now=NOW)
    resolved = thread_headers(
        "g1", domain="example.com", subject="[RESOLVED] X", now=NOW.replace(hour=18)
    )
    assert firing["In-Reply-To"] == firing["References"] == resolved["References"]
    assert firing["Thread-Topic"] == resolved["Thread-Topic"] == "X"
    first, second = (base64.b64decode(h["Thread-Index"]) for h in (firing, resolved))
    assert len(first) == len(second) == 22
    assert first[0] == second[0] == 0x01  # the reserved byte Outlook expects
    assert first[6:] == second[6:]  # the conversation GUID
    assert first[:6] != second[:6]  # each carries its own time


def test_other_groups_and_domains_are_other_roots() -> None:
    assert root_message_id("g1", "example.com") != root_message_id("g2", "example.com")
    root = root_message_id("g1", "example.com")
    assert root.startswith("<thread.")
    assert root.endswith("@example.com>")
    assert root_message_id("g1", "example.org").endswith("@example.org>")
