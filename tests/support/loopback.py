"""What keeps test processes on this machine: offline gcloud settings and free loopback ports."""

from __future__ import annotations

import contextlib
import socket

# Environment for any process that may load gcloud or google-auth: no usage reports, no update
# checks, no prompts, and a metadata server address where nothing answers (no GCE probing).
OFFLINE_ENV: dict[str, str] = {
    "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
    "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
    "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    # gcloud itself only honours these two for its metadata probe.
    "GCE_METADATA_ROOT": "127.0.0.1:9",
    "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
}


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free a moment ago: held open together while they are picked, since
    a port released by one pick can be handed out again by the next."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                   for _ in range(count)]  # fmt: skip
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for servers that cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
