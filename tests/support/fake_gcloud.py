"""A recording stand-in for gcloud, for real (non-dry) runs of deploy.sh. No cloud, no network.

It logs every argv as one JSON line, answers describe/lookup calls from its state files, stores
what `secrets versions add` received, and plays a small Pub/Sub subscription for
`replay-dead-letters`: `pull` leases held messages, `ack` removes them, an ack deadline of 0
hands them back, and `topics publish --flags-file` records the file (content and mode) unless
the message is marked to fail.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.deploy import base_env

FAKE_GCLOUD = """#!{python}
import json, os, stat, sys
args = sys.argv[1:]
state = os.environ["FAKE_STATE"]
def path(name):
    return os.path.join(state, name)
def load(name, default):
    try:
        with open(path(name), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
def save(name, value):
    with open(path(name), "w", encoding="utf-8") as f:
        json.dump(value, f)
def flag(name):
    return next((a.split("=", 1)[1] for a in args if a.startswith(name + "=")), None)
with open(path("calls.jsonl"), "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
exists = os.path.exists(path("exists"))
fmt = flag("--format") or ""
answers = {{
    "value(eventTrigger.trigger)": "projects/p/locations/r/triggers/smtp-sender-pubsub-123",
    "value(transport.pubsub.subscription)": "projects/p/subscriptions/eventarc-r-sub-123",
    "value(projectNumber)": "123456789012",
    "value(serviceConfig.uri)": "https://smtp-sender-http-abc-ew.a.run.app",
    "value(address)": "203.0.113.7",
}}
if args[:2] == ["services", "enable"] and os.path.exists(path("fail_enable")):
    sys.exit(1)
if args[:2] == ["functions", "deploy"] and "--help" in args:
    print("--network --subnet --direct-vpc-egress")
    sys.exit(0)
if fmt in answers:
    print(answers[fmt])
    sys.exit(0)
if args[:3] == ["secrets", "versions", "access"]:
    if not os.path.exists(path("latest")):
        sys.exit(1)
    sys.stdout.buffer.write(open(path("latest"), "rb").read())
    sys.exit(0)
if args[:3] == ["secrets", "versions", "add"]:
    src = flag("--data-file")
    data = sys.stdin.buffer.read() if src == "-" else open(src, "rb").read()
    open(path("added"), "ab").write(data)
    sys.exit(0)
if args[:3] == ["logging", "metrics", "create"] or args[:3] == ["logging", "metrics", "update"]:
    configs = load("metric_configs.json", {{}})
    configs[args[3]] = json.loads(sys.stdin.read())
    save("metric_configs.json", configs)
    sys.exit(0)
if args[:4] == ["beta", "monitoring", "channels", "create"]:
    print("projects/p/notificationChannels/42")
    sys.exit(0)
if args[:3] == ["pubsub", "subscriptions", "pull"]:
    held, acked, leased = load("dlq.json", []), load("acked.json", []), load("leased.json", [])
    limit = int(flag("--limit") or 1)
    out = [m for m in held if m["ackId"] not in acked and m["ackId"] not in leased][:limit]
    save("leased.json", leased + [m["ackId"] for m in out])
    print(json.dumps(out))
    sys.exit(0)
if args[:3] == ["pubsub", "subscriptions", "ack"]:
    save("acked.json", load("acked.json", []) + flag("--ack-ids").split(","))
    sys.exit(0)
if args[:3] == ["pubsub", "subscriptions", "modify-message-ack-deadline"]:
    if flag("--ack-deadline") == "0":
        back = set(flag("--ack-ids").split(","))
        save("leased.json", [a for a in load("leased.json", []) if a not in back])
    sys.exit(0)
if args[:3] == ["pubsub", "topics", "publish"] and flag("--flags-file"):
    src = flag("--flags-file")
    with open(src, encoding="utf-8") as f:
        flags = json.load(f)
    if any(marker in flags["--message"] for marker in load("fail_publish.json", [])):
        sys.exit(1)
    record = {{"topic": args[3], "file": src, "mode": stat.S_IMODE(os.stat(src).st_mode),
              "flags": flags}}
    with open(path("published.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\\n")
    sys.exit(0)
if "describe" in args:
    sys.exit(0 if exists else 1)
sys.exit(0)
"""


@dataclass
class FakeCloud:
    state: Path
    bin_dir: Path
    project: str

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    def reset_log(self) -> None:
        (self.state / "calls.jsonl").unlink(missing_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(
            PATH=f"{self.bin_dir}:/usr/bin:/bin",
            FAKE_STATE=str(self.state),
            PROJECT=self.project,
            **extra,
        )

    @property
    def added(self) -> bytes:
        path = self.state / "added"
        return path.read_bytes() if path.exists() else b""

    def _json(self, name: str, default: Any) -> Any:
        path = self.state / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else default

    # --- the dead-letter subscription -------------------------------------------------------

    def hold(self, messages: list[dict[str, Any]]) -> None:
        """Messages held in the dead-letter subscription, as `pull --format=json` shows them."""
        (self.state / "dlq.json").write_text(json.dumps(messages), encoding="utf-8")

    def fail_publish_of(self, marker: str) -> None:
        """Make `topics publish` fail for a message whose body contains *marker*."""
        markers = self._json("fail_publish.json", [])
        (self.state / "fail_publish.json").write_text(json.dumps([*markers, marker]), "utf-8")

    @property
    def acked(self) -> list[str]:
        return list(self._json("acked.json", []))

    @property
    def leased(self) -> list[str]:
        return list(self._json("leased.json", []))

    @property
    def published(self) -> list[dict[str, Any]]:
        path = self.state / "published.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    @property
    def metric_configs(self) -> dict[str, Any]:
        return dict(self._json("metric_configs.json", {}))


def make_fake_cloud(tmp_path: Path, project: str) -> FakeCloud:
    bin_dir = tmp_path / "bin"
    state = tmp_path / "state"
    bin_dir.mkdir(parents=True)
    state.mkdir(parents=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable), encoding="utf-8")
    gcloud.chmod(0o755)
    return FakeCloud(state, bin_dir, project)
