"""deploy.sh is shellcheck clean (Debian's shellcheck package; required under CI=true)."""

from __future__ import annotations

import subprocess

from tests.support.deploy import DEPLOY_SH, require_tool


def test_deploy_sh_is_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    proc = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", str(DEPLOY_SH)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deploy_sh_is_strict_bash() -> None:
    head = DEPLOY_SH.read_text(encoding="utf-8").splitlines()[:10]
    assert head[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in head
