"""Ledger keys: every trigger's records in a namespace of their own, `<namespace>:<key>`.

One function per trigger builds its keys, and the status route (`GET /messages/<key>?trigger=`)
and the outcome events (`key`, `trigger`) read them back from the same table, so no module
re-derives the format. The caller's key is any printable text, `:` included, so two kinds of
record may share a namespace only if no key of one can be spelled as a key of the other: a
Pub/Sub batch's item `i` of key `K` (`K:i`) would be the single message keyed `K:i`, so batch
items have their own namespace.
"""

from __future__ import annotations

HTTP = "http"  # an HTTP caller's key (body, header), also for each message of `POST /batch`
PUBSUB = "pubsub"  # a Pub/Sub event's id, or its `idempotency_key` attribute
PUBSUB_BATCH = "pubsub-batch"  # item i of a Pub/Sub batch: `<event's key>:<i>`
# Namespaces `GET /messages/<key>?trigger=` looks in (the webhooks' windowed keys are hashes no
# caller knows; their caller's own `Idempotency-Key` is an HTTP key).
LOOKUP = (HTTP, PUBSUB, PUBSUB_BATCH)


def http(key: str) -> str:
    return f"{HTTP}:{key}"


def pubsub(key: str) -> str:
    return f"{PUBSUB}:{key}"


def pubsub_batch_item(key: str, index: int) -> str:
    return f"{PUBSUB_BATCH}:{key}:{index}"


def in_namespace(namespace: str, key: str) -> str:
    """The ledger key of `key` as `GET /messages/<key>?trigger=<namespace>` names it."""
    return f"{namespace}:{key}"


def split(ledger_key: str | None) -> tuple[str, str | None]:
    """`pubsub-batch:K:0` -> (`pubsub-batch`, `K:0`); None (an HTTP request without a key) ->
    (`http`, None): the `trigger` and `key` of an outcome event."""
    namespace, _, key = (ledger_key or f"{HTTP}:").partition(":")
    return namespace, key or None
