"""Kubernetes state is awaited by watching: no sleep in the handlers or the Kubernetes layer.

The one sleep allowed is between HTTP attempts of the health check (k8s/health.py), which asks
Odoo, not the API server. A new sleep anywhere else in these packages fails this test.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
ALLOWED = {("k8s/health.py", "check_health")}


def _sleeps(path: Path) -> list[tuple[str, int]]:
    """(enclosing function, line) of every call to something named `sleep`."""
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call):
                callee = node.func
                name = (
                    callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
                )
                if name == "sleep":
                    found.append((function.name, node.lineno))
    return found


def test_no_sleep_waits_for_kubernetes_state() -> None:
    offenders = []
    allowed_seen = set()
    for package in ("handlers", "k8s"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            for function, line in _sleeps(path):
                if (relative, function) in ALLOWED:
                    allowed_seen.add((relative, function))
                else:
                    offenders.append(f"{relative}:{line} in {function}")
    assert offenders == []
    assert allowed_seen == ALLOWED  # the scan does find sleeps: it found the allowed one
