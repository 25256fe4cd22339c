"""Speed and memory numbers for smtp-sender. Prints numbers; asserts nothing.

    .venv/bin/python bench/bench.py [--sends 200]

Measures, on loopback only:
- cold start: seconds to import `main` in a fresh interpreter (what a cold instance pays);
- MIME build: messages per second for a typical alert, and for one with a 1 MiB attachment;
- end to end: latency of POST -> 200 through the in-process HTTP trigger, each send a full
  STARTTLS + AUTH session with a local aiosmtpd server (p50 / p95 / max);
- memory: peak RSS growth while sending one message at the 10 MiB limit.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class CountingHandler:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received += 1
        return "250 2.0.0 queued"


def _accept_bench_user(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and data.password == "bench-pässword".encode()
    return AuthResult(success=ok)


def cold_start(runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import main"], cwd=ROOT, check=True)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def mime_rate(attachment_bytes: int, seconds: float = 1.0) -> float:
    from sender.addresses import parse_mailbox
    from sender.message import parse_request
    from sender.mime import Content, build_message

    data: dict[str, Any] = {
        "to": ["ops@example.com", "김철수 <kim@example.com>"],
        "subject": "디스크 91% on db-1",
        "text": "Disk usage crossed 91% on db-1.\n" * 20,
        "html": "<p>Disk usage crossed <b>91%</b> on db-1.</p>" * 20,
    }
    if attachment_bytes:
        blob = os.urandom(attachment_bytes)
        data["attachments"] = [{"filename": "dump.bin", "content": base64.b64encode(blob).decode()}]
    request = parse_request(data)
    content = Content(request.subject or "", request.text, request.html)
    sender = parse_mailbox("Alerts <alerts@example.com>")
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        build_message(request, content, sender, seed=None, max_bytes=20 * 2**20)
        count += 1
    return count / (time.perf_counter() - started)


def end_to_end(sends: int) -> dict[str, float]:
    import functions_framework

    from tests.support.loopback import free_port

    ca = trustme.CA()
    # Holds the bench profile (with its password) and the CA: removed when the run ends.
    scratch = tempfile.TemporaryDirectory(prefix="bench-")
    workdir = Path(scratch.name)
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    handler = CountingHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=server_context,
        require_starttls=True, authenticator=_accept_bench_user, auth_require_tls=True,
        data_size_limit=32 * 2**20,
    )  # fmt: skip
    controller.start()
    profile = {
        "host": "127.0.0.1", "port": port, "security": "starttls",
        "username": "bench@example.com", "password": "bench-pässword",
        "from": "Bench <bench@example.com>",
    }  # fmt: skip
    (workdir / "profile.json").write_text(json.dumps(profile))
    os.environ.update(
        SMTP_SECRET_FILE=str(workdir / "profile.json"), SMTP_CA_FILE=str(workdir / "ca.pem")
    )
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the function's JSON log lines
    try:
        client = functions_framework.create_app("send_http", str(ROOT / "main.py")).test_client()
        body = {"to": "ops@example.com", "subject": "bench", "text": "hello " * 50}
        latencies = []
        for _ in range(sends):
            started = time.perf_counter()
            response = client.post("/", json=body)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.get_data(as_text=True)

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        big = os.urandom(7 * 2**20)  # ~9.5 MiB once base64-encoded in the message
        response = client.post(
            "/",
            json={
                "to": "ops@example.com",
                "subject": "big",
                "text": "see attachment",
                "attachments": [{"filename": "big.bin", "content": base64.b64encode(big).decode()}],
            },
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        sys.stdout.close()
        sys.stdout = sys.__stdout__
        controller.stop()
        scratch.cleanup()
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "max_ms": 1000 * latencies[-1],
        "big_message_peak_rss_growth_mib": (after - before) / 1024,
        "peak_rss_mib": after / 1024,
        "received": handler.received,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=200)
    args = parser.parse_args()
    print(f"cold import of main (median of 5):  {cold_start():.3f} s")
    print(f"MIME build, alert text+html:        {mime_rate(0):,.0f} msg/s")
    print(f"MIME build, 1 MiB attachment:       {mime_rate(2**20):,.1f} msg/s")
    results = end_to_end(args.sends)
    print(f"end to end over STARTTLS+AUTH ({args.sends} sends, one session each):")
    print(f"  p50 {results['p50_ms']:.1f} ms   p95 {results['p95_ms']:.1f} ms   "
          f"max {results['max_ms']:.1f} ms")  # fmt: skip
    growth = results["big_message_peak_rss_growth_mib"]
    print(f"  ~10 MiB message: peak RSS growth {growth:.0f} MiB, "
          f"peak RSS {results['peak_rss_mib']:.0f} MiB")  # fmt: skip
    print(f"  messages received by the server: {results['received']}")


if __name__ == "__main__":
    main()
