"""Small assertions shared by the behaviour tests.

*resp* below is a Flask test-client response (``http_client.post(...)``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from email.message import Message
from typing import Any

from sender import sasl
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.ff_process import parse_json_lines
from tests.support.smtp_server import SmtpTestServer

__all__ = [
    "assert_misconfigured",
    "assert_no_secret",
    "assert_nothing_sent",
    "assert_one_conversation",
    "assert_retryable",
    "log_records",
    "oauth2_canaries",
    "parse_json_lines",
    "records_at",
]


def log_records(text: str) -> list[dict[str, Any]]:
    """The function's JSON log lines in captured stdout text."""
    return parse_json_lines(text)


def records_at(records: Iterable[dict[str, Any]], severity: str) -> list[dict[str, Any]]:
    """Records of exactly *severity* (``ERROR``, ``WARNING``...)."""
    return [r for r in records if r.get("severity") == severity]


def assert_nothing_sent(server: SmtpTestServer) -> None:
    """No message arrived and no connection got as far as MAIL FROM."""
    assert server.messages == []
    for session in server.sessions:
        assert "MAIL" not in session.commands, session
        assert "DATA" not in session.commands, session


def assert_misconfigured(resp: Any) -> None:
    """500 ``misconfigured`` with a detail: the operator must fix something, retrying won't."""
    assert resp.status_code == 500, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "misconfigured"
    assert isinstance(body.get("detail"), str)


def assert_retryable(resp: Any) -> None:
    """503 ``unavailable``, marked retryable, with a positive whole-second Retry-After."""
    assert resp.status_code == 503, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "unavailable"
    assert body["retryable"] is True
    retry_after = resp.headers.get("Retry-After")
    assert retry_after is not None
    assert retry_after.isdigit()
    assert int(retry_after) > 0


def _leak_forms(secret: str) -> list[str]:
    """The ways a secret could appear in text: as is, repr-escaped, JSON-escaped, UTF-8 read as
    Latin-1, base64, and base64 of the AUTH PLAIN blob carrying it."""
    forms = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        secret.encode("utf-8").decode("latin-1"),
        base64.b64encode(secret.encode("utf-8")).decode(),
        base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode(),
    }
    return sorted(forms)


def assert_no_secret(*texts: str, secrets: Iterable[str] = (CANARY_PASSWORD,)) -> None:
    """None of *secrets* shows up in any of *texts* (responses, logs, tracebacks) in any form."""
    blob = "\n".join(texts)
    for secret in secrets:
        for form in _leak_forms(secret):
            assert form not in blob, f"leaked {secret!r} as {form!r}"


def oauth2_canaries(
    oauth2: Mapping[str, Any], tokens: Iterable[str] = (), username: str | None = None
) -> list[str]:
    """What must never show from an ``oauth2`` profile: its client secret, refresh token and
    private key (each line of the PEM body, and its id), the access *tokens* issued for it, and —
    with *username* — the XOAUTH2/OAUTHBEARER blobs that carried them (base64 on the wire)."""
    found = [str(oauth2[k]) for k in ("client_secret", "refresh_token") if oauth2.get(k)]
    key = oauth2.get("key")
    if isinstance(key, Mapping):
        pem = str(key.get("private_key", ""))
        found += [line for line in pem.splitlines() if line and not line.startswith("-----")]
        if key.get("private_key_id"):
            found.append(str(key["private_key_id"]))
    for token in tokens:
        found.append(token)
        found.append(token[-40:])  # a truncated token in a log is a leak too
        if username:
            found += [sasl.initial_response(m, username, token) for m in ("XOAUTH2", "OAUTHBEARER")]
    return found


def assert_one_conversation(*messages: Message) -> str:
    """The delivered *messages* are one conversation as Thunderbird, Gmail and Outlook see it:
    each has its own Message-ID; all reply to (In-Reply-To, References) one root that is none of
    them; one Thread-Topic; one conversation GUID in Thread-Index. Returns the root."""
    ids = [str(m["Message-ID"]) for m in messages]
    assert len(set(ids)) == len(ids), ids
    roots = {str(m["In-Reply-To"]) for m in messages} | {str(m["References"]) for m in messages}
    assert len(roots) == 1, roots
    [root] = roots
    assert root.startswith("<")
    assert root.endswith(">")
    assert root not in ids
    assert len({str(m["Thread-Topic"]) for m in messages}) == 1
    guids = {base64.b64decode(str(m["Thread-Index"]))[6:] for m in messages}
    assert len(guids) == 1
    return root
