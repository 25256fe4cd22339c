"""Where things live: the rules ARCHITECTURE.md states, checked on the source (Python's `ast`).

These fail when a change puts state, an error class or an import where a new owner would not look
for it: the import graph has no cycle, building a message never reaches the network layer, only
`sender/instance.py` keeps warm-instance state, every exception is in `sender/errors.py`, no
function is longer than a screen, and README's Configuration and Layout tables say what the code
says.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from sender.config import markdown_table

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sender"
README = ROOT / "README.md"

# Building a message (validation, templates, MIME) must not import the network or cloud layers.
MESSAGE_LAYER = {
    "addresses", "header_safety", "message", "mime", "templates", "content_type", "thread_headers",
    "alert_group", "alertmanager", "grafana", "cloud_monitoring", "hook", "webhook_routes",
}  # fmt: skip
NETWORK_LAYER = {
    "transport", "smtp_client", "smtp_auth", "secrets", "instance", "ledger_firestore", "send",
    "exactly_once",
}  # fmt: skip


def modules() -> dict[str, ast.Module]:
    """Every module of the package by its name below `sender` (`send`, `oauth2.cache`)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name or "__init__"] = ast.parse(path.read_text())
    return found


@cache
def import_graph() -> dict[str, set[str]]:
    """module -> the sender modules it imports anywhere (also inside functions)."""
    graph: dict[str, set[str]] = {}
    for name, tree in modules().items():
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "sender":
                    deps.update(alias.name for alias in node.names)
                elif node.module.startswith("sender."):
                    deps.add(node.module.removeprefix("sender."))
            elif isinstance(node, ast.Import):
                deps.update(
                    a.name.removeprefix("sender.")
                    for a in node.names
                    if a.name.startswith("sender.")
                )
        graph[name] = deps
    return graph


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for dep in import_graph().get(stack.pop(), set()):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


# A function longer than a screen does more than one thing; name its steps instead.
MAX_FUNCTION_LINES = 56


def test_no_function_of_the_package_is_longer_than_a_screen() -> None:
    too_long = sorted(
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    )
    assert too_long == []


def test_no_module_of_the_package_imports_itself_back() -> None:
    cycles = sorted(name for name in import_graph() if name in reachable(name))
    assert cycles == []


def test_building_a_message_never_imports_the_network_layer() -> None:
    for name in MESSAGE_LAYER:
        assert not reachable(name) & NETWORK_LAYER, name


def _module_level_state(tree: ast.Module) -> list[str]:
    """Names bound at module level to a mutable container, a lock, or a cached function."""
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            mutable = isinstance(value, ast.Dict | ast.List | ast.Set) or (
                isinstance(value, ast.Call)
                and ast.unparse(value.func).split(".")[-1]
                in {"dict", "list", "set", "OrderedDict", "Lock", "RLock", "defaultdict"}
            )
            # An UPPER_CASE table is a constant by convention; state has lower-case names.
            names = [ast.unparse(t) for t in targets if ast.unparse(t) != "__all__"]
            if mutable:
                found += [n for n in names if not n.lstrip("_").isupper()]
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if re.search(r"\b(lru_cache|cache)\b", ast.unparse(decorator)):
                    found.append(node.name)
    return found


def test_warm_instance_state_lives_only_in_instance_py() -> None:
    # logs' lock only keeps two threads' lines from interleaving on stdout: no state kept.
    allowed = {"instance": None, "logs": ["_write_lock"]}
    for name, tree in modules().items():
        state = _module_level_state(tree)
        if name in allowed:
            expected = allowed[name]
            assert expected is None or state == expected, (name, state)
        else:
            assert state == [], (name, state)


def test_every_exception_is_in_errors_py_and_named_error() -> None:
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(b) for b in node.bases}
            is_exception = node.name.endswith("Error") or any(
                b.endswith(("Error", "Exception")) for b in bases
            )
            if is_exception:
                assert name == "errors", f"{name}.{node.name} belongs in sender/errors.py"
    errors = modules()["errors"]
    classes = [n.name for n in errors.body if isinstance(n, ast.ClassDef)]
    non_errors = {"Disposition", "FieldProblem"}  # values the errors carry
    assert all(c.endswith("Error") for c in classes if c not in non_errors), classes


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_readme_configuration_table_is_the_settings_table() -> None:
    assert markdown_table() in _section("Configuration (environment)")


def test_readme_layout_names_every_module_and_only_existing_files() -> None:
    layout = _section("Layout")
    named = set(re.findall(r"`([\w/.*-]+(?:\.(?:py|md|sh)|/))`", layout))
    for path in named:
        assert list(ROOT.glob(path)), f"README's Layout names {path}, which does not exist"
    # A folder (`sender/oauth2/`) covers every module in it.
    covered = {
        p
        for pattern in named
        for p in ROOT.glob(pattern + ("**/*.py" if pattern.endswith("/") else ""))
    }
    missing = [p.name for p in PACKAGE.rglob("*.py") if p not in covered and p.stem != "__init__"]
    assert missing == [], f"README's Layout does not mention {missing}"


def test_tests_import_helpers_from_tests_support_never_from_a_conftest_or_another_test() -> None:
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                if "conftest" in module or module.split(".")[-1].startswith("test_"):
                    offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []
