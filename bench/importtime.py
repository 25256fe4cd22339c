"""What a cold instance pays to import ``main``: ``python -X importtime -c "import main"``, read
back as the total, the modules whose own code took longest (self time: the module's body, not
what it imported) and the same added up per top-level package (rows that do not overlap)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass

from tests.support.ff_process import PROJECT_ROOT
from tests.support.loopback import OFFLINE_ENV

# "import time:       702 |        702 |         jinja2.sandbox"
_PREFIX = "import time:"


@dataclass(frozen=True)
class ImportProfile:
    """Total import time of the module; its heaviest modules and packages by self time (ms)."""

    total_ms: float
    modules: list[tuple[str, float]]
    packages: list[tuple[str, float]]


def _rows(stderr: str) -> list[tuple[int, float, float, str]]:
    """(depth, self ms, cumulative ms, module) per line, in the order Python printed them."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith(_PREFIX):
            continue
        self_us, cumulative_us, name = line[len(_PREFIX) :].split("|")
        if not self_us.strip().isdigit():  # the header line
            continue
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, int(self_us) / 1000, int(cumulative_us) / 1000, name.strip()))
    return rows


def parse(stderr: str, module: str, top: int = 10) -> ImportProfile:
    """The profile of *module* from ``-X importtime`` output: its line closes the block of the
    modules it pulled in (everything after the previous top-level line)."""
    rows = _rows(stderr)
    end = max(i for i, row in enumerate(rows) if row[0] == 0 and row[3] == module)
    start = end
    while start > 0 and rows[start - 1][0] > 0:
        start -= 1
    modules: dict[str, float] = defaultdict(float)
    packages: dict[str, float] = defaultdict(float)
    for _depth, self_ms, _cumulative, name in rows[start : end + 1]:
        modules[name] += self_ms
        packages[name.split(".")[0]] += self_ms
    return ImportProfile(rows[end][2], _heaviest(modules, top), _heaviest(packages, top))


def _heaviest(times: dict[str, float], top: int) -> list[tuple[str, float]]:
    return sorted(times.items(), key=lambda item: item[1], reverse=True)[:top]


def measure(module: str = "main", runs: int = 3) -> ImportProfile:
    """The median run (by total) of *runs* fresh interpreters importing *module*."""
    profiles = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            cwd=PROJECT_ROOT,
            env={"PATH": "/usr/bin:/bin", **OFFLINE_ENV},
            capture_output=True,
            text=True,
            check=True,
        )
        profiles.append(parse(done.stderr, module))
    profiles.sort(key=lambda p: p.total_ms)
    return profiles[len(profiles) // 2]
