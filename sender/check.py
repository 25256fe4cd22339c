"""`python -m sender check`: the send path, step by step, for a person fixing a broken setup.

It reads the same profile the function would (``--profile-file F``, ``--secret NAME``, or what
``SMTP_SECRET_FILE``/``SMTP_SECRET`` name), resolves its preset, and opens a session exactly as a
send does — the same transport, TLS context, token source and error classification — with a
`Trace` that prints one line per step::

    ok profile: provider microsoft365 -> smtp.office365.com port 587 starttls, ...
    ok dns: smtp.office365.com -> 52.97.x.x
    ...
    FAILED auth: the SMTP server refused the credentials (535 5.7.139 Authentication ...)
    hint: Microsoft 365 refused the password sign-in ...

``--send-to ADDR`` then sends one test message over that session. The exit status is 0 when every
step passed, 1 otherwise. Nothing printed ever holds a password, token, client secret or key: the
lines are built from the profile's host, port, user and flow, the server's replies and our errors.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import TextIO

from sender import hints, instance, transport
from sender.classify import classify
from sender.config import Settings
from sender.deadline import Deadline
from sender.errors import SendError
from sender.mime import build_message
from sender.policy import resolve_from_address
from sender.profile import SmtpProfile, parse_profile
from sender.secrets import (
    FileSecretSource,
    LoadedProfile,
    SecretSource,
    secret_manager_source,
    source_for,
)
from sender.sign_in import TokenSource, token_source
from sender.smtp_client import Trace

# What to look at when a step fails and the hints table has nothing more specific to say.
STEP_HINTS = {
    "profile": 'fix the profile (README "The SMTP profile"); for a secret, grant the account '
    "running this roles/secretmanager.secretAccessor and check the name",
    "dns": "check the profile's host (or its provider and region) and this machine's DNS",
    "connect": "check host and port, and that this network lets the connection out",
    "greeting": "check that security fits the port (465 ssl, 587 starttls)",
    "tls": "check that security fits the port (465 ssl, 587 starttls), and SMTP_CA_FILE for a "
    "private CA",
    "ehlo": "the server refused to talk to this client; check host is the provider's "
    "submission server",
    "token": "check the profile's oauth2 settings against the app registration",
    "auth": "check the username and the password (or oauth2 settings)",
    "send": "the server's reply names the cause; check the from address and the recipient",
}


class _Printer(Trace):
    """Prints ``ok <step>: <detail>`` per step; remembers the step a failure belongs to."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = "profile"
        self.failed = False

    def begin(self, step: str) -> None:
        self.step = step

    def ok(self, step: str, detail: str) -> None:
        print(f"ok {step}: {detail}", file=self.out, flush=True)

    def fail(self, reason: str, hint: str) -> None:
        self.failed = True
        print(f"FAILED {self.step}: {reason}", file=self.out)
        print(f"hint: {hint}", file=self.out, flush=True)

    def fail_with(self, error: SendError, profile: SmtpProfile | None) -> None:
        reason = error.reason
        if error.smtp_code is not None:
            reason += f" ({error.smtp_code} {error.smtp_message or ''})".replace(" )", ")")
        elif error.refused:
            reason += ": " + "; ".join(
                f"{addr} {r.code} {r.message}" for addr, r in error.refused.items()
            )
        hint = hints.hint_for(error, profile, generic=False) if profile else None
        self.fail(reason, hint or STEP_HINTS.get(self.step, hints.CHECK))


class _TracedTokens:
    """The send path's token source, traced as its own step (never showing the token)."""

    def __init__(self, source: TokenSource, trace: _Printer) -> None:
        self._source = source
        self._trace = trace

    def __call__(self) -> str:
        self._trace.begin("token")
        value = self._source()
        used = self._source.used
        lifetime = f", valid for {int(used.expires_in_s)} s" if used is not None else ""
        self._trace.ok("token", f"oauth2 flow {self._source.flow}: access token issued{lifetime}")
        return value


def _source(args: argparse.Namespace, settings: Settings) -> SecretSource:
    factory = functools.partial(
        instance.secret_manager_client, settings.secret_manager_emulator_host
    )
    if args.profile_file:
        return FileSecretSource(args.profile_file, "--profile-file")
    if args.secret:
        return secret_manager_source(args.secret, settings, "--secret", factory)
    return source_for(settings, factory)


def describe(profile: SmtpProfile) -> str:
    """The profile as one line: where, how, who, and the preset's limits (no secret)."""
    where = f"{profile.host} port {profile.port} {profile.security}"
    parts = [f"provider {profile.provider} -> {where}" if profile.provider else where]
    if profile.username is None:
        parts.append("no username (no AUTH)")
    elif profile.oauth2 is not None:
        parts.append(f"user {profile.username}, oauth2 flow {profile.oauth2.flow}")
    else:
        parts.append(f"user {profile.username}, password")
    sender = profile.default_sender()
    parts.append(f"from {sender.addr_spec}" if sender else "no from")
    if profile.provider:
        parts.append(f"limits: {profile.limits.describe()}")
    return ", ".join(parts)


def _load(args: argparse.Namespace, settings: Settings, deadline: Deadline) -> LoadedProfile:
    source = _source(args, settings)
    payload = source.read(deadline)
    profile = parse_profile(payload.data, settings.bare_password_profile())
    return LoadedProfile(profile, payload.fingerprint)


def _send_test(
    address: str, loaded: LoadedProfile, settings: Settings, session: transport.Session,
    deadline: Deadline,
) -> str:  # fmt: skip
    from sender.message import parse_request  # noqa: PLC0415 - only with --send-to
    from sender.send import resolve_content  # noqa: PLC0415

    request = parse_request(
        {
            "to": address,
            "subject": "smtp-sender check",
            "text": "A test message from `python -m sender check`: this profile can send.\n",
        }
    )
    built = build_message(
        request,
        resolve_content(request, settings),
        resolve_from_address(request, loaded.profile, settings),
        seed=None,
        max_bytes=settings.max_message_bytes,
    )
    # One recipient: refused, it raises as every send's "every recipient was refused" does.
    session.send(built.envelope, built.data, deadline=deadline)
    return f"message {built.message_id} accepted for {address}"


def run(args: argparse.Namespace, out: TextIO) -> int:
    """The steps; 0 when all passed, 1 at the first failure."""
    printer = _Printer(out)
    try:
        settings = Settings.from_env()
    except SendError as problem:
        printer.fail_with(problem, None)
        return 1
    deadline = Deadline(
        settings.send_deadline_s,
        expired=transport.session_deadline_error,
        step_s=settings.smtp_timeout_s,
    )
    profile: SmtpProfile | None = None
    try:
        printer.begin("profile")
        loaded = _load(args, settings, deadline)
        profile = loaded.profile
        printer.ok("profile", describe(profile))
        tokens = token_source(loaded, settings, deadline)
        context = instance.tls_context(settings.smtp_ca_file)
        session = transport.open_session(
            profile,
            context=context,
            deadline=deadline,
            access_token=_TracedTokens(tokens, printer) if tokens else None,
            trace=printer,
        )
        if profile.username is None:
            printer.ok("auth", "none: the profile has no username")
        if args.send_to:
            printer.begin("send")
            detail = _send_test(args.send_to, loaded, settings, session, deadline)
            printer.ok("send", detail)
        session.quit()
    except Exception as exc:  # noqa: BLE001 - every failure is reported as its step's
        try:
            failure = classify(exc)
        except Exception:  # noqa: BLE001 - a bug: its text could hold anything, show the type
            printer.fail(f"internal error ({type(exc).__name__})", hints.CHECK)
            return 1
        printer.fail_with(failure, profile if printer.step != "profile" else None)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m sender check",
        description="Run the send path step by step against an SMTP profile and say which "
        "step fails and what to do. Reads SMTP_CA_FILE, OAUTH_CA_FILE, SMTP_TIMEOUT_S and "
        "the other settings from the environment, as the function does.",
    )
    source = result.add_mutually_exclusive_group()
    source.add_argument("--profile-file", metavar="F", help="a local profile JSON")
    source.add_argument(
        "--secret",
        metavar="NAME",
        help="a Secret Manager secret (projects/P/secrets/S[/versions/V] or bare S)",
    )
    result.add_argument("--send-to", metavar="ADDR", help="also send one test message to ADDR")
    return result


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    return run(args, out or sys.stdout)
