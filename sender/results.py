"""Outcome events: one JSON message per finished delivery on `RESULTS_TOPIC` (never a body).

Each attempt that reached an outcome — sent, partial, rejected or failed — publishes one event,
after the ledger recorded it: `key` (the caller's, without the trigger's namespace; null for an
HTTP request without one), `trigger`, `message_id`, `state`, `accepted_count`, `refused` (final
refusals), `owed` (4xx recipients a later attempt sends to), `attempt`, `time` (RFC 3339), and for
`rejected`/`failed` the `last_error`. The Pub/Sub message also carries `state` and `trigger` as
attributes, so a subscription can filter (`attributes.state = "failed"`).

Why the publish is synchronous, before the answer: Cloud Run gives an instance CPU only while it
handles a request (the default for functions). Work left in a background thread after the answer
— the client library's batching publisher — may be starved until the next request arrives, or
lost when the instance is stopped. So the event is published with one unary `Publish` call
(the generated client, no batching thread), bounded by `RESULTS_TIMEOUT_S` including retries of
transient errors; Pub/Sub answers in milliseconds when healthy, so the bound only matters during
an outage, and the function's timeout (`SEND_DEADLINE_S` + 60 s as deployed) leaves room for it.
Whatever goes wrong — a malformed topic, a missing one, no permission, a timeout — is one WARNING
line; the send's answer and its Pub/Sub ack are never changed by it.

`google-cloud-pubsub` is imported only here, and only when a topic is set (the client is built on
the first publish and kept by `sender.instance`), so deployments without `RESULTS_TOPIC` never
load it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from sender import logs
from sender.deadline import Deadline
from sender.errors import ConfigurationError, SmtpSenderError, TransientError
from sender.ledger import Status
from sender.outcome import refused_json
from sender.status import failure_json, rfc3339

# A topic id: 3-255 characters, a letter first (Pub/Sub's resource name rules).
_TOPIC_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$")
_TOPIC_PATH = re.compile(r"^projects/([^/]+)/topics/([^/]+)$")
_BACKOFF_INITIAL_S = 0.05
_BACKOFF_MAX_S = 0.5


def topic_path(name: str, project: str | None) -> str:
    """`projects/P/topics/T` or a bare `T` (in `GOOGLE_CLOUD_PROJECT`) -> the full topic name."""
    name = name.strip()
    match = _TOPIC_PATH.match(name)
    if match is None and "/" not in name:
        if not project:
            raise ConfigurationError(
                "RESULTS_TOPIC is a bare topic name, but GOOGLE_CLOUD_PROJECT is not set"
            )
        match = _TOPIC_PATH.match(f"projects/{project}/topics/{name}")
    if match is None or not match.group(1) or not _TOPIC_ID.match(match.group(2)):
        raise ConfigurationError("RESULTS_TOPIC must be projects/P/topics/T or a bare topic name")
    return match.group(0)


def event(status: Status, *, key: str | None, trigger: str, now: float) -> dict[str, Any]:
    """The outcome event's JSON for one finished attempt."""
    body: dict[str, Any] = {
        "key": key,
        "trigger": trigger,
        "message_id": status.message_id,
        "state": status.state,
        "accepted_count": len(status.accepted),
        "refused": refused_json(status.refused),
        "owed": list(status.owed),
        "attempt": status.attempts,
        "time": rfc3339(now),
    }
    if status.failure is not None:
        body["last_error"] = failure_json(status.failure)
    return body


def new_publisher_client(emulator_host: str | None) -> Any:
    """The generated Pub/Sub publisher client: plaintext gRPC to `emulator_host` (tests, the
    `PUBSUB_EMULATOR_HOST` the library itself honours), else the real API with the function's
    credentials. Imported here, so nothing loads google-cloud-pubsub without `RESULTS_TOPIC`."""
    from google.pubsub_v1.services.publisher import PublisherClient  # noqa: PLC0415

    if not emulator_host:
        return PublisherClient()
    import grpc  # noqa: PLC0415
    from google.pubsub_v1.services.publisher.transports import (  # noqa: PLC0415
        PublisherGrpcTransport,
    )

    return PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    )


def _why(exc: Exception) -> str:
    """A failure's description for the log: our own reason, or a library error's type and gRPC
    code (never its text, which could echo what was being published)."""
    if isinstance(exc, SmtpSenderError):
        return str(exc)
    code = getattr(exc, "code", None)
    name = getattr(code, "name", None)
    return f"{type(exc).__name__} ({name})" if isinstance(name, str) else type(exc).__name__


class ResultsPublisher:
    """Publishes outcome events to one topic within a time bound; never raises."""

    def __init__(
        self,
        *,
        topic: str,
        project: str | None,
        timeout_s: float,
        client: Callable[[], Any],
    ) -> None:
        self._topic = topic
        self._project = project
        self._timeout_s = timeout_s
        self._client = client  # the instance's shared client, created on first use

    def publish(self, outcome: Mapping[str, Any]) -> None:
        """Publish `outcome`; a failure or a timeout is one WARNING line, never an exception."""
        deadline = Deadline(
            self._timeout_s,
            expired=lambda: TransientError(
                f"Pub/Sub did not confirm within RESULTS_TIMEOUT_S={self._timeout_s:g} s"
            ),
        )
        try:
            self._publish(outcome, deadline)
        except Exception as exc:  # noqa: BLE001 - an event must never fail or change the send
            logs.outcome_event_not_published(
                topic=self._topic, reason=_why(exc), state=outcome.get("state")
            )

    def _publish(self, outcome: Mapping[str, Any], deadline: Deadline) -> None:
        from google.api_core import retry as api_retry  # noqa: PLC0415
        from google.pubsub_v1.types import PubsubMessage  # noqa: PLC0415

        topic = topic_path(self._topic, self._project)
        client = self._client()
        message = PubsubMessage(
            data=json.dumps(outcome, ensure_ascii=False).encode("utf-8"),
            attributes={"state": str(outcome.get("state")), "trigger": str(outcome["trigger"])},
        )
        deadline.retry(
            lambda timeout: client.publish(
                topic=topic, messages=[message], retry=None, timeout=timeout
            ),
            transient=api_retry.if_transient_error,
            first_delay_s=_BACKOFF_INITIAL_S,
            max_delay_s=_BACKOFF_MAX_S,
        )
