"""The hints table: every condition the code can raise has a sentence of its own, and the rows
pick the right sentence for what a user would see (replies, providers, flows, ports)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from sender.errors import (
    AuthenticationError,
    IdentityProviderRefusedError,
    IdentityProviderUnavailableError,
    InvalidRequestError,
    RejectedError,
    SendError,
    TlsError,
    TransientError,
)
from sender.hints import HINTS, Situation, annotate, hint_for, situation
from sender.outcome import Refusal
from sender.profile import SmtpProfile, parse_profile

PACKAGE = Path(__file__).resolve().parents[2] / "sender"
# The OAuth2 error codes an identity provider answers (RFC 6749 5.2) that get a 500.
RFC_6749_REFUSALS = {"invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"}


def conditions_in_code() -> set[str]:
    """Every condition string the package sets: ``condition="..."`` keywords, the certificate
    table in classify, and the codes IdentityProviderRefusedError is raised with."""
    found: set[str] = set(RFC_6749_REFUSALS)
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "condition":
                # A literal, either branch of `a if c else b`, or a `.get(key, default)` default.
                value = node.value
                candidates = (
                    [value.body, value.orelse] if isinstance(value, ast.IfExp)
                    else value.args[1:] if isinstance(value, ast.Call)
                    else [value]
                )  # fmt: skip
                found |= {
                    c.value
                    for c in candidates
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func).endswith("IdentityProviderRefusedError")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                found.add(str(node.args[1].value))
            if isinstance(node, ast.Assign) and any(
                ast.unparse(t) == "_CERTIFICATE_CONDITIONS" for t in node.targets
            ):
                found |= {
                    n.value
                    for n in ast.walk(node.value)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                }
    found.discard("unknown_error")  # the IdP answered something unknown: the generic IdP row
    return found


def rows_for(condition: str) -> list[str]:
    rows = []
    for row in HINTS:
        names = (row.condition,) if isinstance(row.condition, str) else row.condition or ()
        if condition in names and not row.generic:
            rows.append(row.text)
    return rows


def test_the_scan_finds_the_conditions() -> None:
    found = conditions_in_code()
    for expected in (
        "tls_wrong_version",
        "certificate_untrusted",
        "no_greeting",
        "auth_refused",
        "starttls_missing",
        "iam_permission_denied",
        "idp_unavailable",
        "pool_busy",
    ):
        assert expected in found  # fmt: skip


@pytest.mark.parametrize("condition", sorted(conditions_in_code()))
def test_every_condition_the_code_raises_has_its_own_hint(condition: str) -> None:
    assert rows_for(condition), f"no hint row for condition {condition!r}"


def test_rows_are_single_sentences_and_end_with_generic_ones() -> None:
    for row in HINTS:
        assert "\n" not in row.text
        assert not row.text.endswith(".")
        assert 40 < len(row.text) < 400, row.text
    assert [row.generic for row in HINTS[-3:]] == [True, True, True]
    assert not any(row.generic for row in HINTS[:-3])


def profile(**values: object) -> SmtpProfile:
    return parse_profile(json.dumps({"username": "a@contoso.com", **values}).encode())


PASSWORD = {"password": "pw"}
MS = {"provider": "microsoft365", **PASSWORD}
MS_OAUTH = {
    "provider": "microsoft365",
    "oauth2": {"flow": "microsoft", "tenant": "t", "client_id": "c", "client_secret": "s"},
}


def auth_error(code: int, text: str) -> SendError:
    return AuthenticationError(
        "refused", smtp_code=code, smtp_message=text, condition="auth_refused"
    )


def test_microsofts_host_without_provider_still_gets_microsofts_hints() -> None:
    bare = profile(host="smtp.office365.com", port=587, **PASSWORD)
    error = auth_error(535, "5.7.3 Authentication unsuccessful [X.prod.outlook.com]")
    assert "Microsoft 365" in (hint_for(error, bare) or "")
    assert situation(error, bare).provider == "microsoft365"


def test_5_7_3_reads_differently_after_xoauth2_and_after_a_password() -> None:
    error = auth_error(535, "5.7.3 Authentication unsuccessful")
    assert "New-ServicePrincipal" in (hint_for(error, profile(**MS_OAUTH)) or "")
    assert "Add-MailboxPermission" in (hint_for(error, profile(**MS_OAUTH)) or "")
    assert "New-ServicePrincipal" not in (hint_for(error, profile(**MS)) or "")


def test_the_enhanced_status_is_read_from_a_multi_line_reply() -> None:
    google = profile(provider="gmail", **PASSWORD)
    error = auth_error(534, "5.7.9 Application-specific password required. 5.7.9 https://x")
    assert situation(error, google).status == "5.7.9"
    assert "app password" in (hint_for(error, google) or "")


def test_every_recipient_refused_is_looked_up_by_the_refusal() -> None:
    error = TransientError(
        "every recipient was refused",
        refused={"a@x.com": Refusal(432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit")},
        condition="recipients_refused",
    )
    assert "3 concurrent" in (hint_for(error, profile(**MS)) or "")


def test_tls_mode_hints_name_the_port() -> None:
    on_587 = profile(host="smtp.example.com", port=587, security="ssl", **PASSWORD)
    wrong = TlsError("TLS handshake failed: WRONG_VERSION_NUMBER", condition="tls_wrong_version")
    assert "port 587 answered in plaintext" in (hint_for(wrong, on_587) or "")
    on_465 = profile(host="smtp.example.com", port=465, security="starttls", **PASSWORD)
    silent = TransientError("no greeting", condition="no_greeting")
    assert "Port 465 expects TLS from the first byte" in (hint_for(silent, on_465) or "")
    timeout = TransientError("timed out", condition="timeout")
    assert "Port 465" in (hint_for(timeout, on_465) or "")


@pytest.mark.parametrize(
    ("flow", "code", "words"),
    [
        ("microsoft", "invalid_client", "Certificates & secrets"),
        ("refresh_token", "invalid_client", "client_id or client_secret"),
        ("google_service_account", "unauthorized_client", "Domain-wide delegation"),
        ("microsoft", "unauthorized_client", "client_id and tenant"),
        ("refresh_token", "invalid_grant", "revoked"),
        ("google_service_account", "invalid_grant", "Workspace domain"),
        ("microsoft", "invalid_scope", "outlook.office365.com/.default"),
        ("google_service_account", "iam_permission_denied", "serviceAccountTokenCreator"),
        ("microsoft", "something_new", "the detail names its error code"),
    ],
)
def test_identity_provider_refusals(flow: str, code: str, words: str) -> None:
    hint = hint_for(IdentityProviderRefusedError(flow, code), profile(**MS_OAUTH))
    assert hint is not None
    assert words in hint


def test_an_unavailable_identity_provider_says_pubsub_retries() -> None:
    hint = hint_for(IdentityProviderUnavailableError("microsoft", "timeout"), None)
    assert "Pub/Sub retries" in (hint or "")


def test_without_a_specific_row_the_hint_points_at_check() -> None:
    odd = RejectedError("refused", smtp_code=559, smtp_message="5.9.9 odd", condition="x")
    assert "python -m sender check" in (hint_for(odd, None) or "")
    assert hint_for(odd, None, generic=False) is None


def test_the_hint_is_in_the_body_and_the_log_fields_and_annotate_keeps_one() -> None:
    error = annotate(auth_error(550, "5.7.30 Basic authentication is not supported"), None)
    assert error.hint is not None
    assert error.response_body()["hint"] == error.hint
    assert error.log_fields()["hint"] == error.hint
    error.hint = "kept"
    assert annotate(error, None).hint == "kept"
    invalid = annotate(InvalidRequestError.one("to", "bad"), None)
    assert invalid.hint is None
    assert "hint" not in invalid.response_body()


def test_a_situation_without_a_profile() -> None:
    assert situation(TlsError("x", condition="certificate_untrusted"), None) == Situation(
        condition="certificate_untrusted"
    )
