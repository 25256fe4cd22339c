"""The whole dev stack, started as a user starts it: `python -m devstack` in a subprocess.

One message goes in over HTTP and one as a binary-mode Pub/Sub CloudEvent; both must land
in ./outbox/ as .eml and be listed on the outbox page; Ctrl-C (SIGINT) must stop everything
and free every port.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from devstack import samples
from devstack.settings import HOST
from tests.support.loopback import OFFLINE_ENV, free_ports

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "Ctrl-C stops everything"
STARTUP_S = 90.0  # two functions-framework processes importing google-cloud on 2 busy cores


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (a stray child would still carry its port)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _port_free(port: int) -> bool:
    """Written out, not devstack.processes.port_in_use: the product's probe does not vouch
    for the product."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


class Stack:
    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        names = ("HTTP", "EVENT", "OUTBOX", "SMTP")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.log = workdir / "devstack.log"
        self.env = env = {
            **os.environ,
            **OFFLINE_ENV,
            "PYTHONPATH": str(REPO),
            **{f"DEV_{name}_PORT": str(port) for name, port in self.ports.items()},
            **(extra_env or {}),
        }
        with open(self.log, "wb") as out:
            # cwd is a scratch directory: no .env of the developer's, and ./outbox lands here.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack"],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while READY_LINE not in self.output():
            if self.process.poll() is not None:
                pytest.fail(f"devstack exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"devstack not ready after {STARTUP_S}s:\n{self.output()}")
            time.sleep(0.2)

    def kill_leftovers(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for port in self.ports.values():
            for pid in _processes_mentioning(f"--port={port}"):
                os.kill(pid, signal.SIGKILL)


def _running(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    if not (REPO / "main.py").is_file():
        pytest.skip("main.py (the function) is not in the tree yet")
    running = Stack(workdir, extra_env)
    try:
        running.wait_ready()
        yield running
    finally:
        running.kill_leftovers()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _running(tmp_path)


@pytest.fixture
def chaos_stack(tmp_path: Path) -> Iterator[Stack]:
    """`make dev` with chaos mode switched on in `.env`, as README tells a user to."""
    (tmp_path / ".env").write_text("DEV_SMTP_CHAOS=1\n", encoding="utf-8")
    yield from _running(tmp_path)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def test_http_and_cloudevent_mail_lands_in_the_outbox(stack: Stack) -> None:
    http_message = {"to": "ops@example.com", "subject": "via http", "text": "sent over HTTP"}
    status, body = _post(
        stack.url("HTTP"),
        json.dumps(http_message).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    assert json.loads(body)["status"] == "sent"

    event_message = {
        "to": "team@example.com",
        "subject": "via pubsub · 알림",
        "text": "from a topic",
    }
    event_body = {
        "message": {
            "data": base64.b64encode(json.dumps(event_message).encode()).decode(),
            "messageId": "dev-stack-test-1",
            "publishTime": "2030-01-01T00:00:00Z",
        },
        "subscription": "projects/dev/subscriptions/mail-sub",
    }
    status, body = _post(
        stack.url("EVENT"),
        json.dumps(event_body).encode(),
        {
            "Content-Type": "application/json",
            "ce-id": "dev-stack-test-1",
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-source": "//pubsub.googleapis.com/projects/dev/topics/mail",
            "ce-time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    assert status == 200, body

    # Both functions answer only after the SMTP server accepted the message.
    emls = sorted((stack.workdir / "outbox").glob("*.eml"))
    received = {}
    for path in emls:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        received[str(message["Subject"])] = message
    assert set(received) == {"via http", "via pubsub · 알림"}, stack.output()
    assert str(received["via http"]["To"]) == "ops@example.com"
    assert str(received["via pubsub · 알림"]["To"]) == "team@example.com"
    assert "alerts@dev.localhost" in str(received["via http"]["From"])

    with urllib.request.urlopen(stack.url("OUTBOX") + "/", timeout=10) as response:
        page = response.read().decode()
    assert "via http" in page
    assert "via pubsub · 알림" in page

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=30) == 0, stack.output()
    assert "devstack: stopped" in stack.output()
    for name, port in stack.ports.items():
        assert _port_free(port), f"{name} port {port} still in use after Ctrl-C"
        assert _processes_mentioning(f"--port={port}") == [], f"stray process on {name}"


def test_send_example_sends_an_alert_an_alertmanager_webhook_and_an_event(stack: Stack) -> None:
    """`make send-example` against the running stack: three messages, all in the outbox."""
    finished = subprocess.run(
        [sys.executable, "-m", "devstack.send_example"],
        cwd=stack.workdir,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    subjects = set()
    for path in (stack.workdir / "outbox").glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        subjects.add(str(message["Subject"]))
    assert "[FIRING] Disk 91% on db-1" in subjects, stack.output()
    assert "[FIRING:2] HighLatency" in subjects
    assert any("야간 백업 완료" in subject for subject in subjects)


def test_no_function_server_outlives_a_killed_stack(stack: Stack) -> None:
    """A closed terminal or `kill -9` gives devstack no chance to clean up: the function servers
    must go by themselves, or the next `make dev` finds its ports taken."""
    stack.process.kill()
    stack.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    for name in ("HTTP", "EVENT"):
        while _processes_mentioning(f"--port={stack.ports[name]}"):
            assert time.monotonic() < deadline, f"the {name} function outlived devstack"
            time.sleep(0.2)
        assert _port_free(stack.ports[name])


def test_chaos_mode_from_dotenv_shows_a_partial_send_and_its_retry(chaos_stack: Stack) -> None:
    """README's chaos walk-through: the banner's curl twice, then the outbox."""
    assert "Chaos mode is on" in chaos_stack.output()
    request = json.dumps(samples.CHAOS_ALERT).encode()
    headers = {"Content-Type": "application/json"}
    first_status, first = _post(chaos_stack.url("HTTP"), request, headers)
    second_status, _ = _post(chaos_stack.url("HTTP"), request, headers)

    assert first_status == 200
    refused = json.loads(first)["refused"]
    assert refused["reject-1@example.com"]["code"] == 550
    assert refused["defer-1@example.com"]["code"] == 450
    assert second_status == 200
    envelopes = sorted((chaos_stack.workdir / "outbox").glob("*.envelope.json"))
    delivered = [json.loads(path.read_text())["rcpt_tos"] for path in envelopes]
    assert delivered == [["ops@example.com"], ["defer-1@example.com"]], chaos_stack.output()
    assert "chaos  | reject-1@example.com refused: 550" in chaos_stack.output()
