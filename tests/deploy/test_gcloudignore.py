""".gcloudignore: the upload holds what the function runs, and no tests, tools or credentials.

`gcloud meta list-files-for-upload` applies .gcloudignore exactly as `functions deploy` does,
without an account or the network.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.deploy import GCLOUD, REPO, base_env, require_tool


def _upload_list(gcloud: str, source: Path, config: Path) -> set[str]:
    proc = subprocess.run(
        [gcloud, "meta", "list-files-for-upload", str(source)],
        env=base_env(CLOUDSDK_CONFIG=str(config), HOME=str(config)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {line.strip() for line in proc.stdout.splitlines() if line.strip()}


def test_upload_keeps_the_function_and_drops_tests_tools_and_secrets(tmp_path: Path) -> None:
    gcloud = require_tool("gcloud", GCLOUD)
    # A stand-in checkout with the real ignore files and the kinds of files a checkout holds.
    src = tmp_path / "src"
    src.mkdir()
    for name in (".gcloudignore", ".gitignore"):
        shutil.copy(REPO / name, src / name)
    wanted = {
        "main.py",
        "requirements.txt",
        "sender/__init__.py",
        "sender/secrets.py",
        "sender/templates/alert/subject.txt",
    }
    unwanted = {
        "tests/deploy/test_x.py",
        "tests/conftest.py",
        ".ci/run",
        "devstack/web.py",
        "deploy.sh",
        "Makefile",
        "README.md",
        "pyproject.toml",
        "requirements-dev.txt",
        ".venv/lib/site.py",
        "sender/__pycache__/x.cpython-311.pyc",
        ".env",
        "profile.json",
        "smtp-profile.local.json",
        "client.pem",
        "token.txt",  # a webhook token written for `deploy.sh WEBHOOK_SECRET_FILE=...`
        "webhook-token",
        "notes.md",
        ".git/config",
    }
    for rel in wanted | unwanted:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n", encoding="utf-8")
    (tmp_path / "cfg").mkdir()

    uploaded = _upload_list(gcloud, src, tmp_path / "cfg")

    assert wanted <= uploaded
    assert not (unwanted & uploaded), sorted(unwanted & uploaded)


def test_real_checkout_uploads_main_requirements_and_the_package(tmp_path: Path) -> None:
    gcloud = require_tool("gcloud", GCLOUD)
    uploaded = _upload_list(gcloud, REPO, tmp_path)
    assert {"main.py", "requirements.txt"} <= uploaded
    assert any(p.startswith("sender/") and p.endswith(".py") for p in uploaded)
    dev_dirs = ("tests/", "devstack/", ".ci/", ".venv/", ".git/", "outbox/", ".state/")
    assert not [p for p in uploaded if p.startswith(dev_dirs)]
    assert not uploaded & {"deploy.sh", "Makefile", "pyproject.toml", "requirements-dev.txt"}
