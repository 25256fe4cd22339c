"""Headers that put every notification of one alert group into one conversation.

Each notification keeps its own Message-ID (derived from its idempotency key): mailboxes such as
Gmail drop a message whose Message-ID they already hold, so a group id used as the Message-ID of
"the first" notification would make a later re-fire vanish, and a stateless function cannot know
which notification is the first anyway. Instead every notification of the group names the same
*synthetic root* — a Message-ID derived from the group and never sent — as its parent:

- `In-Reply-To` and `References`: Thunderbird (and every client threading by RFC 5322 /
  RFC 5256 REFERENCES, JWZ's algorithm) gathers messages under a missing parent into one thread;
  Gmail threads messages that reference each other *and* share a subject once bracketed prefixes
  (`[FIRING:2]`, `[RESOLVED]`) and `Re:` are ignored — the alert subjects differ only there.
- `Thread-Topic` (the subject without its bracketed status) and `Thread-Index` (a conversation
  index whose GUID is derived from the group): Outlook/Exchange group a conversation by the GUID
  of the index, or by an MD5 of the topic when there is none (MS-OXOMSG 2.2.1.2, MS-OXCMAIL
  2.2.3.2.7); both are the same for firing and resolved.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime

# One or more leading `[...]` tags: `[FIRING:2] DiskFull` -> `DiskFull`.
_BRACKETED_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*)+")
# FILETIME counts 100 ns ticks since 1601-01-01; the Unix epoch is this many ticks later.
_FILETIME_UNIX_EPOCH = 116_444_736_000_000_000


def _digest(thread: str) -> bytes:
    return hashlib.sha256(b"smtp-sender thread\0" + thread.encode("utf-8")).digest()


def root_message_id(thread: str, domain: str) -> str:
    """The synthetic parent every notification of `thread` replies to."""
    return f"<thread.{_digest(thread)[:20].hex()}@{domain}>"


def conversation_topic(subject: str) -> str:
    """The subject without its bracketed status prefix (what firing and resolved share)."""
    return _BRACKETED_PREFIX.sub("", subject).strip() or subject


def thread_index(thread: str, now: datetime) -> str:
    """An Outlook conversation index: 6 bytes of the current FILETIME (big-endian; its first
    byte is the reserved 0x01 for any date this century) and the 16-byte GUID of the group."""
    ticks = int(now.timestamp() * 10_000_000) + _FILETIME_UNIX_EPOCH
    header = ticks.to_bytes(8, "big")[:6] + _digest(thread)[:16]
    return base64.b64encode(header).decode("ascii")


def thread_headers(thread: str, *, domain: str, subject: str, now: datetime) -> dict[str, str]:
    """The four headers that file this message into the conversation `thread`."""
    root = root_message_id(thread, domain)
    return {
        "In-Reply-To": root,
        "References": root,
        "Thread-Topic": conversation_topic(subject),
        "Thread-Index": thread_index(thread, now),
    }
