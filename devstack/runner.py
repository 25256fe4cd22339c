"""`python -m devstack`: start everything, print where it is, stop it all on Ctrl-C/SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from devstack import samples, tls
from devstack.chaos import Chaos
from devstack.outbox import Envelope, Outbox
from devstack.processes import FunctionProcess, StartupError, port_in_use
from devstack.settings import HOST, DevSettings, SettingsError
from devstack.smtp_server import DevSmtpServer
from devstack.web import OutboxWebServer

REPO = Path(__file__).resolve().parent.parent
DEV_USERNAME = "dev"
DEV_FROM = "Dev Alerts <alerts@dev.localhost>"
#: How long the function processes get to import and bind (a cold 2-core machine is slow).
STARTUP_TIMEOUT_S = 60.0

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one line whole, whichever thread (child output, SMTP) it comes from."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def prefixed(name: str) -> Callable[[str], None]:
    return lambda line: say(f"{name:<7}| {line}")


def write_profile(state_dir: Path, smtp_port: int, password: str) -> Path:
    """The SMTP profile the function reads through SMTP_SECRET_FILE (mode 0600)."""
    path = state_dir / "smtp-profile.json"
    profile = {
        "host": HOST,
        "port": smtp_port,
        "security": "starttls",
        "username": DEV_USERNAME,
        "password": password,
        "from": DEV_FROM,
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(profile, handle, indent=2)
    os.replace(tmp, path)
    return path


def function_env(settings: DevSettings, profile: Path, ca_file: Path) -> dict[str, str]:
    """The children's environment: ours plus `.env`, with the local profile as the default.

    A `.env` that names its own SMTP_SECRET or SMTP_SECRET_FILE (to try a real provider)
    keeps it; otherwise the function sends through the embedded server.
    """
    env = dict(settings.environ)
    if not env.get("SMTP_SECRET") and not env.get("SMTP_SECRET_FILE"):
        env["SMTP_SECRET_FILE"] = str(profile)
    env.setdefault("SMTP_CA_FILE", str(ca_file))
    env["PYTHONUNBUFFERED"] = "1"  # log lines appear as they are written
    return env


def banner(settings: DevSettings, profile: Path) -> str:
    outbox = settings.outbox_dir
    with contextlib.suppress(ValueError):
        outbox = outbox.relative_to(Path.cwd())
    with contextlib.suppress(ValueError):
        profile = profile.relative_to(Path.cwd())
    return "\n".join(
        [
            "",
            "smtp-sender dev stack is running",
            f"  HTTP function        {settings.http_url}",
            f"  CloudEvent function  {settings.event_url}   (Pub/Sub push / Eventarc)",
            f"  Outbox page          {settings.outbox_url}   (files in {outbox}/)",
            f"  SMTP (STARTTLS+AUTH) {HOST}:{settings.smtp_port}   (profile {profile})",
            "",
            "Send a sample alert:",
            f"  {samples.curl_command(settings.http_url)}",
            "or run `make send-example`. Ctrl-C stops everything.",
            "",
            *_chaos_lines(settings),
        ]
    )


def _chaos_lines(settings: DevSettings) -> list[str]:
    if settings.chaos is None:
        return []
    return [
        "Chaos mode is on (DEV_SMTP_CHAOS): the SMTP server misbehaves by recipient",
        *settings.chaos.describe(),
        "Watch a partial send, then its retry (same key) reach the deferred recipient alone:",
        f"  {samples.curl_command(settings.http_url, samples.CHAOS_ALERT)}",
        "",
    ]


def run(settings: DevSettings, stop: threading.Event) -> int:
    """Start the stack, block until `stop` is set (or a child dies), then tear it all down."""
    busy = [f"{name}={port}" for name, port in settings.ports.items() if port_in_use(port)]
    if busy:
        say(f"devstack: port already in use: {', '.join(busy)} (another `make dev`?)")
        say("devstack: stop it, or choose other ports in .env (see .env.example)")
        return 1

    tls_files = tls.ensure(settings.state_dir)
    password = secrets.token_urlsafe(18)  # new each run: only the function needs it
    profile = write_profile(settings.state_dir, settings.smtp_port, password)
    outbox = Outbox(settings.outbox_dir)
    settings.outbox_dir.mkdir(parents=True, exist_ok=True)

    def on_message(message_id: str, envelope: Envelope) -> None:
        recipients = ", ".join(envelope.rcpt_tos)
        say(f"outbox | {message_id}.eml  from {envelope.mail_from} to {recipients}")

    env = function_env(settings, profile, tls_files.ca_cert)
    functions = [
        FunctionProcess(
            name=name,
            target=target,
            signature_type=signature,
            port=port,
            source=REPO / "main.py",
            env=env,
            echo=prefixed(name),
        )
        for name, target, signature, port in (
            ("http", "send_http", "http", settings.http_port),
            ("pubsub", "send_pubsub", "cloudevent", settings.event_port),
        )
    ]
    with contextlib.ExitStack() as running:
        # Servers first, so they stop last: a function keeps pooled SMTP sessions open, and the
        # SMTP server's shutdown waits for its clients (asyncio, Python 3.12 and later).
        smtp = DevSmtpServer(
            host=HOST,
            port=settings.smtp_port,
            tls=tls_files,
            outbox=outbox,
            username=DEV_USERNAME,
            password=password,
            on_message=on_message,
            chaos=Chaos(settings.chaos) if settings.chaos is not None else None,
            on_chaos=prefixed("chaos"),
        )
        smtp.start()
        running.callback(smtp.stop)
        web = OutboxWebServer(HOST, settings.outbox_port, outbox)
        web.start()
        running.callback(web.stop)
        for function in functions:
            function.start()
            running.callback(function.stop)

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            for function in functions:
                function.wait_ready(deadline, stop)
        except StartupError as exc:
            say(f"devstack: {exc}; stopping")
            return 1
        if stop.is_set():
            say("devstack: stopping")
            return 0
        say(banner(settings, profile))

        while not stop.wait(0.5):
            for function in functions:
                code = function.exit_code()
                if code is not None:
                    say(f"devstack: the {function.name} function exited ({code}); stopping")
                    return 1
        say("devstack: stopping")
    return 0


def main() -> int:
    try:
        settings = DevSettings.load()
    except SettingsError as exc:
        say(f"devstack: {exc}")
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGHUP, request_stop)  # the terminal was closed
    code = run(settings, stop)
    say("devstack: stopped" if code == 0 else "devstack: stopped (failed)")
    return code
